"""The large action model's interface: tools (one per actuator, with a typed value), the prompt (state, recent
history, weather forecast, crop stage) and the strict reading of its answer.

The answer is a JSON object `{"rationale": ..., "calls": [{"tool": ..., "value": ...}]}`, constrained by a JSON
Schema through the LLM runtime. The rationale comes first: a small model that has just written "2.1 C below the
set-point" gives the heating value next to the words that decide it. The prompt states the control errors (how far
the climate is from each set-point) as well as the readings, as a climate computer's display does.

`parse_answer` still checks everything (a user-supplied model or runtime may not constrain): invalid JSON, unknown
tools and out-of-range values raise LamError with the reason, and the caller proposes nothing (the supervisor then
falls back to the baseline).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from tango2_ros.sdf.actuators import (CO2_DOSING, FAN, HEATING, IRRIGATION, LIGHTS, SHADE_SCREEN, THERMAL_SCREEN,
                                      VENT)
from tango2_ros.sdf.controllers import Observation
from tango2_ros.sdf.crops import CropPreset


@dataclass(frozen=True)
class Tool:
    name: str
    actuator: str
    description: str
    on_off: bool = False


TOOLS = {tool.name: tool for tool in (
    Tool("set_vents", VENT, "roof vent opening, 0-100 %"),
    Tool("set_heating", HEATING, "heating power, 0-100 %"),
    Tool("set_thermal_screen", THERMAL_SCREEN, "energy screen closure, 0-100 %"),
    Tool("set_shade_screen", SHADE_SCREEN, "shade screen closure, 0-100 %"),
    Tool("dose_co2", CO2_DOSING, "CO2 dosing valve, 0-100 %"),
    Tool("set_fans", FAN, "circulation fans, 0-100 %"),
    Tool("irrigate", IRRIGATION, "drip irrigation, 0 = off, 100 = on", on_off=True),
    Tool("set_lamps", LIGHTS, "supplementary lamps, 0 = off, 100 = on", on_off=True),
)}
MAX_CALLS = 4  # the changes that matter now; the other actuators keep their values (and the answer stays short)


class LamError(ValueError):
    """The model's answer cannot be used."""


def answer_schema() -> dict:
    return {
        "type": "object",
        "properties": {  # generated in this order
            "rationale": {"type": "string", "maxLength": 100},
            "calls": {"type": "array", "minItems": 1, "maxItems": MAX_CALLS, "items": {
                "type": "object",
                "properties": {"tool": {"type": "string", "enum": list(TOOLS)},
                               "value": {"type": "integer", "minimum": 0, "maximum": 100}},
                "required": ["tool", "value"]}},
        },
        "required": ["rationale", "calls"],
    }


def prompt(preset: CropPreset, now: Observation, history: list[Observation], forecast: list[tuple[float, float]],
           actuators: dict[str, float]) -> str:
    """The situation for the model; `forecast` is (outside C, sun W/m2) for the next hours."""
    night_or_day = "day" if now.is_day else "night"
    lines = [
        f"You control the climate of a {preset.name} greenhouse ({preset.stage}). Choose tool calls.",
        f"Targets: heating set-point {preset.heating_day_c:g} C by day, {preset.heating_night_c:g} C at night; "
        f"ventilate above set-point + {preset.vent_offset_c:g} C; relative humidity at most {preset.rh_max_pct:g} %; "
        f"CO2 {preset.co2_day_ppm:g} ppm by day only.",
        "Tools (value 0-100): " + "; ".join(f"{t.name}: {t.description}" for t in TOOLS.values()),
        f"Now ({night_or_day}, {now.hour:04.1f} h): inside {now.air_temperature_c:.1f} C, RH "
        f"{now.relative_humidity_pct:.0f} %, CO2 {now.co2_ppm:.0f} ppm, slab water {now.substrate_water_pct:.0f} %; "
        f"outside {now.outside_temperature_c:.1f} C, sun {now.global_radiation_w_m2:.0f} W/m2.",
        control_errors(preset, now),
        # before the supervisor's first command the controller does not know the positions ("all off" was untrue)
        "Actuators now: " + (", ".join(f"{name} {value:.0f}" for name, value in actuators.items()) or "not known yet")
        + ".",
    ]
    if history:
        lines.append("Last hours, inside C: " + ", ".join(f"{o.air_temperature_c:.1f}" for o in history) + ".")
    if forecast:
        lines.append("Forecast, next hours (outside C / sun W/m2): " +
                     ", ".join(f"{t:.0f}/{sun:.0f}" for t, sun in forecast) + ".")
    lines.append(f"Answer with JSON: a short rationale and up to {MAX_CALLS} tool calls (what must change now).")
    return "\n".join(lines)


def temperature_error(preset: CropPreset, now: Observation) -> str:
    """How far inside is from the heating set-point of this moment (the lamps' light period counts as day)."""
    setpoint = preset.heating_setpoint(now.is_day or now.lights_on)
    inside = now.air_temperature_c
    return f"inside {inside:.1f} C is {_offset(inside - setpoint, 'C')} the {setpoint:g} C set-point"


def control_errors(preset: CropPreset, now: Observation) -> str:
    light_period = now.is_day or now.lights_on
    vent_from = preset.heating_setpoint(light_period) + preset.vent_offset_c
    co2 = (f"CO2 {_offset(now.co2_ppm - preset.co2_day_ppm, 'ppm')} the {preset.co2_day_ppm:g} ppm target"
           if light_period else "no CO2 dosing now")
    return (f"Errors: {temperature_error(preset, now)}, {_offset(now.air_temperature_c - vent_from, 'C')} the "
            f"{vent_from:g} C vent temperature; RH {_offset(now.relative_humidity_pct - preset.rh_max_pct, '%')} the "
            f"{preset.rh_max_pct:g} % limit; {co2}.")


def _offset(difference: float, unit: str) -> str:
    amount = f"{abs(difference):.1f}" if unit == "C" else f"{abs(difference):.0f}"
    return f"{amount} {unit} {'above' if difference >= 0 else 'below'}"


def parse_answer(text: str) -> tuple[dict[str, float], str]:
    """-> (proposal: actuator -> value, rationale); raises LamError."""
    try:
        answer = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise LamError(f"the answer is not JSON: {exc}") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("calls"), list) or not answer["calls"]:
        raise LamError("the answer has no list of tool calls")
    proposal: dict[str, float] = {}
    for call in answer["calls"][:MAX_CALLS]:
        if not isinstance(call, dict):
            raise LamError(f"a tool call is not an object: {call!r}")
        tool = TOOLS.get(call.get("tool"))
        if tool is None:
            raise LamError(f"unknown tool {call.get('tool')!r}")
        value = call.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise LamError(f"{tool.name}: value {value!r} is not a number")
        if not 0 <= value <= 100:
            raise LamError(f"{tool.name}: value {value} outside 0-100")
        proposal[tool.actuator] = (100.0 if value >= 50 else 0.0) if tool.on_off else float(value)
    rationale = answer.get("rationale")
    return proposal, rationale.strip()[:100] if isinstance(rationale, str) else ""
