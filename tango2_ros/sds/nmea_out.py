"""Writing NMEA 0183 and AIS sentences, as a ship's sensors would send them (for demos, simulators and tests).

`utc_s` arguments are seconds since 1970; None writes the wall clock's time.
"""
from __future__ import annotations

import math
import time


def sentence(body: str) -> str:
    """`$` + body + `*` + checksum."""
    checksum = 0
    for char in body:
        checksum ^= ord(char)
    return f"${body}*{checksum:02X}"


def _ddmm(value: float, digits: int) -> str:
    degrees = int(abs(value))
    return f"{degrees:0{digits}d}{(abs(value) - degrees) * 60:07.4f}"


def _utc(utc_s: float | None) -> float:
    return round(time.time() if utc_s is None else utc_s, 2)  # NMEA writes hundredths


def _hhmmss(utc_s: float) -> str:
    whole = math.floor(utc_s)
    return time.strftime("%H%M%S", time.gmtime(whole)) + f"{utc_s - whole:.2f}"[1:]


def rmc(lat: float, lon: float, course: float, speed: float, status: str = "A", utc_s: float | None = None) -> str:
    utc_s = _utc(utc_s)
    return sentence(f"GPRMC,{_hhmmss(utc_s)},{status},{_ddmm(lat, 2)},{'N' if lat >= 0 else 'S'},{_ddmm(lon, 3)},"
                    f"{'E' if lon >= 0 else 'W'},{speed:.1f},{course:.1f},{time.strftime('%d%m%y', time.gmtime(utc_s))},,,A")


def hdt(heading: float) -> str:
    return sentence(f"HEHDT,{heading:.1f},T")


def ttm(number: int, range_nm: float, bearing_deg: float, speed_kn: float, course_deg: float,
        utc_s: float | None = None) -> str:
    """A radar (ARPA) target, true bearing and course, nautical miles."""
    return sentence(f"RATTM,{number:02d},{range_nm:.3f},{bearing_deg % 360.0:.1f},T,{speed_kn:.1f},{course_deg % 360.0:.1f},"
                    f"T,,,N,,T,,{_hhmmss(_utc(utc_s))},A")


def ais_position(mmsi: int, lat: float, lon: float, course: float, speed: float, status: int = 0) -> str:
    """An AIS class A position report (type 1) from another ship, encoded by pyais."""
    import pyais

    return pyais.encode_dict({"msg_type": 1, "mmsi": mmsi, "lat": lat, "lon": lon, "course": course, "speed": speed,
                              "heading": 511, "status": status}, talker_id="AI", sentence_type="VDM")[0]
