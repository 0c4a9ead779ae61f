"""The greenhouse sensor gateway's MQTT payloads, both ways: what the gateway (or the simulator) publishes, and the
checked readings the greenhouse_bridge makes of it.

A state payload is a JSON object of readings named as in GreenhouseState plus `time` (UTC seconds of the
measurement). Each reading is checked against a plausible range: a missing, non-numeric, non-finite or
out-of-range reading (a 999 C air temperature) becomes NaN and is named in `invalid`; the rest still counts.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from tango2_ros.core.json_payload import json_object
from tango2_ros.sdf.actuators import ACTUATORS, IRRIGATION, LIGHTS, Command
from tango2_ros.sdf.greenhouse import Climate

# reading -> plausible range; anything outside is a sensor fault, not weather
RANGES = {
    "air_temperature_c": (-30.0, 60.0), "relative_humidity_pct": (0.0, 100.0), "co2_ppm": (0.0, 5000.0),
    "par_umol_m2_s": (0.0, 3000.0), "outside_temperature_c": (-50.0, 60.0),
    "outside_relative_humidity_pct": (0.0, 100.0), "wind_speed_m_s": (0.0, 60.0),
    "global_radiation_w_m2": (0.0, 1500.0), "ec_ds_m": (0.0, 20.0), "ph": (0.0, 14.0),
    "substrate_water_pct": (0.0, 150.0), "vent_pct": (0.0, 100.0), "heating_pct": (0.0, 100.0),
    "thermal_screen_pct": (0.0, 100.0), "shade_screen_pct": (0.0, 100.0), "co2_dosing_pct": (0.0, 100.0),
    "fan_pct": (0.0, 100.0),
}
FLAGS = ("irrigation_on", "lights_on", "is_day")
CLIMATE_READINGS = ("air_temperature_c", "relative_humidity_pct", "co2_ppm", "par_umol_m2_s", "outside_temperature_c",
                    "outside_relative_humidity_pct", "wind_speed_m_s", "global_radiation_w_m2", "ec_ds_m", "ph",
                    "substrate_water_pct")


@dataclass
class Readings:
    values: dict[str, float]  # every reading of RANGES; NaN where invalid
    flags: dict[str, bool]
    invalid: list[str]
    time_s: float | None  # when it was measured; None: not given (the bridge stamps the arrival)


@dataclass
class Forecast:
    hours_ahead: list[float]
    outside_temperature_c: list[float]
    global_radiation_w_m2: list[float]
    time_s: float | None


def _time(data: dict) -> float | None:
    moment = data.get("time")
    valid = isinstance(moment, (int, float)) and not isinstance(moment, bool) and math.isfinite(moment) \
        and 0 < moment < 2**31
    return float(moment) if valid else None


def readings_from_payload(payload: bytes) -> Readings:
    """ValueError when the payload is not a JSON object; bad readings become NaN and are listed."""
    data = json_object(payload)
    values, invalid = {}, []
    for name, (low, high) in RANGES.items():
        value = data.get(name)
        good = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and low <= value <= high
        values[name] = float(value) if good else math.nan
        if not good:
            invalid.append(name)
    return Readings(values, {name: data.get(name) is True for name in FLAGS}, invalid, _time(data))


def forecast_from_payload(payload: bytes) -> Forecast:
    """ValueError unless it holds three series of equal length and finite numbers."""
    data = json_object(payload)
    try:
        series = [[float(v) for v in data[key]] for key in
                  ("hours_ahead", "outside_temperature_c", "global_radiation_w_m2")]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"forecast is not {{hours_ahead, outside_temperature_c, global_radiation_w_m2}}: {exc}") \
            from None
    if len({len(s) for s in series}) != 1 or not all(math.isfinite(v) for s in series for v in s):
        raise ValueError("forecast series differ in length or hold non-numbers")
    return Forecast(*series, _time(data))


def sensor_payload(climate: Climate, actuators: Command, utc_s: float) -> bytes:
    """What the greenhouse's sensor gateway publishes over MQTT."""
    data = {name: round(getattr(climate, name), 3) for name in CLIMATE_READINGS}
    data.update({f"{name}_pct": actuators[name] for name in ACTUATORS if name not in (IRRIGATION, LIGHTS)})
    data.update(irrigation_on=actuators[IRRIGATION] >= 50.0, lights_on=actuators[LIGHTS] >= 50.0,
                is_day=climate.is_day, time=utc_s)
    return json.dumps(data).encode()
