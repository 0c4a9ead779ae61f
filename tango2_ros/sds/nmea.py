"""NMEA 0183 as own ship's sensors and AIS send it, over UDP (IEC 61162-450 style datagrams).

`split_datagram` strips a 61162-450 `UdPbC` header and `\\...\\` tag blocks and splits lines; `NmeaDecoder.feed`
checks each sentence's form and checksum and turns it into events: own-ship fixes (RMC, GGA), motion (VTG),
heading (HDT), rate of turn (ROT), depth (DPT, DBT), wind (MWV), radar/ARPA targets (TTM), all parsed by
pynmeagps, and other ships' AIS reports (VDM, decoded with pyais, multi-fragment messages reassembled; VDO, own
ship's own report, is ignored). Anything malformed or out of range raises NmeaError with the reason; the caller
counts it and goes on. AIS "not available" values (speed 102.3 kn, course 360, heading 511, lat 91, lon 181)
become NaN.
"""
from __future__ import annotations

import calendar
import datetime
import math
from dataclasses import dataclass, field

MAX_SENTENCE = 82 * 2  # 82 characters by the standard; AIS payloads with tag blocks run longer
AIS_SPEED_NA, AIS_COURSE_NA, AIS_HEADING_NA = 102.3, 360.0, 511


class NmeaError(ValueError):
    """A sentence that cannot be used: bad checksum, truncated, unknown, out of range."""


@dataclass(frozen=True)
class Fix:
    """Position (RMC, GGA); valid False when the receiver says so."""

    latitude_deg: float
    longitude_deg: float
    valid: bool
    source: str
    course_deg: float = math.nan  # RMC carries motion too
    speed_kn: float = math.nan
    utc_s: float = math.nan  # RMC's UTC date and time as seconds since 1970 (NaN without a date)


@dataclass(frozen=True)
class Motion:
    course_deg: float
    speed_kn: float
    source: str


@dataclass(frozen=True)
class Heading:
    heading_deg: float


@dataclass(frozen=True)
class RateOfTurn:
    deg_per_min: float  # positive: turning to starboard


@dataclass(frozen=True)
class Depth:
    depth_m: float  # DPT: below the keel (offset applied when negative) or surface; DBT: below the transducer
    source: str


@dataclass(frozen=True)
class Wind:
    angle_deg: float  # relative to the bow (R) or true (T), the direction it blows from
    relative: bool
    speed_kn: float


@dataclass(frozen=True)
class RadarTarget:
    number: int
    range_nm: float
    bearing_deg: float
    bearing_relative: bool
    speed_kn: float
    course_deg: float
    course_relative: bool
    name: str
    status: str  # L lost, Q acquiring, T tracking


@dataclass(frozen=True)
class AisReport:
    mmsi: int
    latitude_deg: float = math.nan
    longitude_deg: float = math.nan
    course_deg: float = math.nan
    speed_kn: float = math.nan
    heading_deg: float = math.nan
    name: str = ""
    ship_type: int = 0
    message_type: int = 0
    navigation_status: int = 15  # AIS: 15 = not defined


def split_datagram(data: bytes) -> list[str]:
    """The NMEA lines of one UDP datagram."""
    if data.startswith(b"UdPbC\x00"):
        data = data[6:]
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise NmeaError(f"not ASCII text ({exc.reason} at byte {exc.start})") from exc
    lines = []
    for raw in text.replace("\r", "\n").split("\n"):
        line = raw.strip()
        while line.startswith("\\"):  # 61162-450 / NMEA 4 tag block
            end = line.find("\\", 1)
            if end < 0:
                raise NmeaError("unterminated tag block")
            line = line[end + 1:]
        if line:
            lines.append(line)
    return lines


def checked_fields(line: str) -> list[str]:
    """The comma-separated fields of a sentence whose checksum is right (the checksum itself removed)."""
    if len(line) > MAX_SENTENCE:
        raise NmeaError(f"sentence longer than {MAX_SENTENCE} characters")
    if not line or line[0] not in "$!":
        raise NmeaError("a sentence starts with '$' or '!'")
    star = line.rfind("*")
    if star < 0 or len(line) - star != 3:
        raise NmeaError("no checksum (truncated?)")
    body, given = line[1:star], line[star + 1:]
    expected = 0
    for char in body:
        expected ^= ord(char)
    try:
        value = int(given, 16)
    except ValueError as exc:
        raise NmeaError(f"checksum {given!r} is not hexadecimal") from exc
    if value != expected:
        raise NmeaError(f"bad checksum {given}, expected {expected:02X}")
    return body.split(",")


def _float(value: str, name: str) -> float:
    try:
        number = float(value)
    except ValueError as exc:
        raise NmeaError(f"{name} {value!r} is not a number") from exc
    if not math.isfinite(number):
        raise NmeaError(f"{name} is not finite")
    return number


def _number(message, attribute: str, name: str, low: float = -math.inf, high: float = math.inf) -> float:
    """A parsed field as a float: NaN when empty, NmeaError when missing or out of [low, high]."""
    if not hasattr(message, attribute):
        raise NmeaError(f"{message.msgID} sentence has too few fields")
    value = getattr(message, attribute)
    if value == "":
        return math.nan
    number = float(value)
    if not low <= number <= high:
        raise NmeaError(f"{name} {number:.4f} out of range")
    return number


SPEED_UNITS_KN = {"N": 1.0, "K": 1 / 1.852, "M": 3600 / 1852, "S": 0.868976}  # knots, km/h, m/s, statute mph


def _utc(time_field: str, date_field: str) -> float:
    """hhmmss.ss and ddmmyy -> seconds since 1970 (years 00-79 are 20xx, as receivers mean them)."""
    if not time_field or not date_field:
        return math.nan
    if len(date_field) != 6 or not date_field.isdigit() or len(time_field.split(".")[0]) != 6:
        raise NmeaError(f"RMC time {time_field!r} / date {date_field!r} is not hhmmss.ss / ddmmyy")
    day, month, year = int(date_field[:2]), int(date_field[2:4]), int(date_field[4:])
    year += 2000 if year < 80 else 1900
    try:
        midnight = calendar.timegm(datetime.date(year, month, day).timetuple())
    except ValueError as exc:
        raise NmeaError(f"RMC date {date_field!r}: {exc}") from exc
    hours, minutes, seconds = int(time_field[:2]), int(time_field[2:4]), _float(time_field[4:], "RMC time")
    if hours > 23 or minutes > 59 or not 0 <= seconds < 61:
        raise NmeaError(f"RMC time {time_field!r} out of range")
    return midnight + hours * 3600 + minutes * 60 + seconds


@dataclass
class NmeaDecoder:
    fragments: dict[tuple, list[str]] = field(default_factory=dict)

    def feed(self, line: str):
        """One sentence -> an event (Fix, Motion, Heading, RateOfTurn, Depth, Wind, RadarTarget, AisReport) or None
        (an AIS fragment waiting for the rest, or a sentence type nobody needs)."""
        fields = checked_fields(line)
        kind = fields[0][2:] if len(fields[0]) >= 5 else ""
        if kind == "VDM":  # VDO is own ship's own AIS report: not a target
            try:
                return self._ais(line, fields)
            except IndexError as exc:
                raise NmeaError("VDM sentence has too few fields") from exc
        handler = self.HANDLERS.get(kind)
        if handler is None or line[0] != "$":
            return None
        from pynmeagps import NMEAReader, VALNONE
        from pynmeagps.exceptions import NMEAMessageError, NMEAParseError, NMEATypeError

        try:
            message = NMEAReader.parse(line, validate=VALNONE)
        except (NMEAParseError, NMEATypeError, NMEAMessageError, ValueError) as exc:
            raise NmeaError(f"{kind}: a field is not a number or malformed ({exc})") from None
        return handler(message, fields)

    @staticmethod
    def _rmc(m, f: list[str]) -> Fix:
        if len(f) < 10:
            raise NmeaError("RMC sentence has too few fields")
        return Fix(_number(m, "lat", "latitude", -90, 90), _number(m, "lon", "longitude", -180, 180), m.status == "A",
                   "RMC", _number(m, "cog", "RMC course"), _number(m, "spd", "RMC speed", 0), _utc(f[1], f[9]))

    @staticmethod
    def _gga(m, _f) -> Fix:
        quality = getattr(m, "quality", "")
        return Fix(_number(m, "lat", "latitude", -90, 90), _number(m, "lon", "longitude", -180, 180),
                   quality not in ("", 0), "GGA")

    @staticmethod
    def _vtg(m, _f) -> Motion:
        return Motion(_number(m, "cogt", "VTG course"), _number(m, "sogn", "VTG speed", 0), "VTG")

    @staticmethod
    def _hdt(m, _f) -> Heading:
        heading = _number(m, "headingT", "HDT heading")
        if not math.isfinite(heading):
            raise NmeaError("HDT heading '' is not a number")
        return Heading(heading % 360.0)

    @staticmethod
    def _rot(m, _f) -> RateOfTurn | None:
        rate = _number(m, "rot", "ROT rate of turn", -720, 720)
        return RateOfTurn(rate) if getattr(m, "valid", "A") == "A" and math.isfinite(rate) else None

    @staticmethod
    def _dpt(m, _f) -> Depth | None:
        depth, offset = _number(m, "depth", "DPT depth", 0), _number(m, "offset", "DPT offset")
        if not math.isfinite(depth):
            return None
        return Depth(depth + offset if math.isfinite(offset) and offset < 0 else depth, "DPT")

    @staticmethod
    def _dbt(m, _f) -> Depth | None:
        depth = _number(m, "depthm", "DBT depth", 0)
        return Depth(depth, "DBT") if math.isfinite(depth) else None

    @staticmethod
    def _mwv(m, _f) -> Wind | None:
        angle, speed = _number(m, "angle", "MWV angle", 0, 360), _number(m, "speed", "MWV speed", 0)
        scale = SPEED_UNITS_KN.get(getattr(m, "speedu", ""))
        if scale is None:
            raise NmeaError(f"MWV unit {getattr(m, 'speedu', '')!r}")
        if getattr(m, "status", "A") != "A" or not (math.isfinite(angle) and math.isfinite(speed)):
            return None
        return Wind(angle, getattr(m, "reference", "R") == "R", speed * scale)

    @staticmethod
    def _ttm(m, _f) -> RadarTarget:
        unit = getattr(m, "speedu", "") or "N"
        scale = {"N": 1.0, "K": 1 / 1.852, "S": 0.868976}.get(unit)
        if scale is None:
            raise NmeaError(f"TTM unit {unit!r}")
        number, distance = _number(m, "targetnum", "TTM number", 0, 99), _number(m, "targetdist", "TTM range", 0)
        bearing = _number(m, "targetbearing", "TTM bearing")
        if not all(math.isfinite(v) for v in (number, distance, bearing)):
            raise NmeaError("TTM needs a target number, range and bearing")
        return RadarTarget(
            number=int(number), range_nm=distance * scale, bearing_deg=bearing % 360.0,
            bearing_relative=m.targetbearingu == "R", speed_kn=_number(m, "targetspeed", "TTM speed", 0) * scale,
            course_deg=_number(m, "targetcourse", "TTM course") % 360.0, course_relative=m.targetcourseu == "R",
            name=m.targetname, status=m.targetstatus or "T")

    HANDLERS = {"RMC": _rmc, "GGA": _gga, "VTG": _vtg, "HDT": _hdt, "ROT": _rot, "DPT": _dpt, "DBT": _dbt,
                "MWV": _mwv, "TTM": _ttm}

    def _ais(self, line: str, f: list[str]) -> AisReport | None:
        import pyais
        from pyais.exceptions import AISBaseException

        total, number, sequence, channel = int(_float(f[1], "AIS fragment count")), int(_float(f[2], "fragment")), f[3], f[4]
        if not 1 <= number <= total <= 9:
            raise NmeaError(f"AIS fragment {number} of {total}")
        key = (sequence, channel, total)
        if total > 1:
            parts = self.fragments.setdefault(key, [])
            if number != len(parts) + 1:
                self.fragments.pop(key, None)
                raise NmeaError(f"AIS fragment {number} of {total} out of order")
            parts.append(line)
            if number < total:
                return None
            lines = self.fragments.pop(key)
        else:
            lines = [line]
        try:
            message = pyais.decode(*[x.encode() for x in lines]).asdict()
        except (AISBaseException, ValueError, KeyError, IndexError, TypeError) as exc:
            raise NmeaError(f"AIS payload cannot be decoded: {exc}") from exc
        if not 1 <= int(message.get("msg_type") or 0) <= 27 or not message.get("mmsi"):
            raise NmeaError("AIS payload cannot be decoded: no message type or MMSI in it")
        return _ais_report(message)


def _ais_report(m: dict) -> AisReport:
    def value(key, not_available, limit=None):
        v = m.get(key)
        if v is None or v == not_available or (limit is not None and abs(v) > limit):
            return math.nan
        return float(v)

    name = str(m.get("shipname") or "").strip("@ ").strip()
    ship_type = m.get("ship_type") or 0
    return AisReport(
        mmsi=int(m["mmsi"]), latitude_deg=value("lat", 91.0, 90.0), longitude_deg=value("lon", 181.0, 180.0),
        course_deg=value("course", AIS_COURSE_NA), speed_kn=value("speed", AIS_SPEED_NA),
        heading_deg=value("heading", AIS_HEADING_NA), name=name, ship_type=int(ship_type),
        message_type=int(m.get("msg_type", 0)), navigation_status=int(m.get("status") if m.get("status") is not None else 15))
