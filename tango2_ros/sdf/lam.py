"""The large action model's interface: tools (one per actuator, with a typed value), the prompt (state, recent
history, weather forecast, crop stage) and the strict reading of its answer.

The answer is a JSON object `{"rationale": ..., "calls": [{"tool": ..., "value": ...}]}`, constrained by a JSON
Schema through the LLM runtime. The rationale comes first: a small model that has just written "2.1 C below the
set-point" gives the heating value next to the words that decide it. The prompt states the set-points of the
moment and how far temperature and humidity are from them, as well as the readings, as a climate computer's display
does.

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
from tango2_ros.sdf.controllers import (LAMPS_SUN_BELOW_W_M2, SCREEN_SUN_BELOW_W_M2, SHADE_SUN_ABOVE_W_M2,
                                        Observation, lamps_wanted, screen_cold_c)
from tango2_ros.sdf.crops import CropPreset


@dataclass(frozen=True)
class Tool:
    """One tool per actuator; the value is a position in % (on/off tools: 100 = on, anything from 50 counts)."""

    name: str
    actuator: str
    on_off: bool = False


TOOLS = {tool.name: tool for tool in (  # in the order a taught answer sets them: what holds the bands first
    Tool("set_heating", HEATING), Tool("set_vents", VENT), Tool("set_lamps", LIGHTS, on_off=True),
    Tool("dose_co2", CO2_DOSING), Tool("set_thermal_screen", THERMAL_SCREEN),
    Tool("set_shade_screen", SHADE_SCREEN), Tool("set_fans", FAN), Tool("irrigate", IRRIGATION, on_off=True),
)}
MAX_CALLS = len(TOOLS)  # one per actuator; an actuator left out keeps its present position


RATIONALE_CHARS = 200
ANSWER_TOKENS = 384  # a taught answer (the rationale and eight calls) is about 190 tokens; the untrained model's
# ran past 256 in 40 of 96 periods of a held-out day (an unterminated string)


class LamError(ValueError):
    """The model's answer cannot be used."""


def function_tools() -> list[dict]:
    """The actuator tools in the function-calling form of the OpenAI-style API, for an agent outside the farm
    controller (llm_api, LangChain, ...): one function per actuator taking {"value": 0-100}. An agent's calls are
    read by `proposal_of_calls` with the checks the farm controller's own model gets, and only proposed."""
    return [{"type": "function", "function": {
        "name": tool.name,
        "description": f"propose the {tool.actuator.replace('_', ' ')} "
                       + ("on (100) or off (0)" if tool.on_off else "position in %")
                       + "; the greenhouse's safety supervisor decides what the actuator gets",
        "parameters": {"type": "object", "properties": {"value": {"type": "integer", "minimum": 0, "maximum": 100}},
                       "required": ["value"], "additionalProperties": False}}} for tool in TOOLS.values()]


def proposal_of_calls(calls: list[tuple[str, object]]) -> dict[str, float]:
    """An agent's (tool name, arguments) calls as a proposal (actuator -> value); LamError as parse_answer."""
    answer = {"calls": [{"tool": name, "value": arguments.get("value") if isinstance(arguments, dict) else None}
                        for name, arguments in calls]}
    return parse_answer(json.dumps(answer))[0]


def answer_schema() -> dict:
    return {
        "type": "object",
        "properties": {  # generated in this order
            "rationale": {"type": "string", "maxLength": RATIONALE_CHARS},
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
    """The situation for the model; `forecast` is (outside C, sun W/m2) for the next hours.

    Compact on purpose: every number is several tokens (digits are tokenised one by one), and the prompt's length
    sets both the decision time on the device and the cost of each fine-tuning step (with the chat template, 514
    tokens became 299 for the same facts). The set-points are those of this moment, resolved for day or night, and
    whether the lamps' hours have begun is said, not left to be worked out from the clock (the first learned
    model kept the lamps on through the night). Likewise the outside temperature and the sun are named against the
    limits the screens and lamps go by (the teacher's first candidate, taught without them, missed CO2 dosing in 7,
    the lamps in 5 and the thermal screen in 4 of 30 held-out periods)."""
    light_period = now.is_day or now.lights_on
    heating = preset.heating_setpoint(light_period)
    vent_from = heating + preset.vent_offset_c
    lines = [
        f"{preset.name.capitalize()} greenhouse, {preset.stage}, {'day' if now.is_day else 'night'} "
        f"{int(now.hour):02d}:{int(round(now.hour % 1 * 60)) % 60:02d}, "
        f"{'in' if preset.in_lamp_hours(now.hour) else 'outside'} lamp hours "
        f"{preset.lamp_hours[0]:02.0f}-{preset.lamp_hours[1]:02.0f}"
        + (", lamps on" if now.lights_on and not now.is_day else "") + ".",
        f"Set-points: heating {heating:g} C, vents from {vent_from:g} C, RH at most {preset.rh_max_pct:g} %, "
        f"CO2 {preset.co2_day_ppm:g} ppm by day or under lamps.",
        f"Inside {now.air_temperature_c:.1f} C ({temperature_errors(preset, now)}), RH "
        f"{now.relative_humidity_pct:.0f} % ({humidity_error(preset, now)}), CO2 {now.co2_ppm:.0f} ppm "
        f"({co2_error(preset, now)}), slab water {now.substrate_water_pct:.0f} %.",
        f"Outside {now.outside_temperature_c:.1f} C ({outside_facts(now)}), sun {now.global_radiation_w_m2:.0f} "
        f"W/m2 ({sun_facts(now.global_radiation_w_m2)})"
        + ("; next hours " + " ".join(f"{t:.0f}C/{sun:.0f}" for t, sun in forecast[::2]) if forecast else "") + ".",
    ]
    if history:
        lines.append("Inside before: " + " ".join(f"{o.air_temperature_c:.1f}" for o in history) + ".")
    # before the supervisor's first command the controller does not know the positions
    lines.append("Actuators: " + (", ".join(f"{name} {value:.0f}" for name, value in actuators.items())
                                  or "not known yet") + ".")
    lines.append("Tools, value 0-100: " + ", ".join(t.name + (" (on/off)" if t.on_off else "")
                                                   for t in TOOLS.values()) + ".")
    lines.append("Answer JSON: a short rationale, then the tool calls.")
    return "\n".join(lines)


def outside_facts(now: Observation) -> str:
    limit = screen_cold_c(now.is_day)
    return f"{'under' if now.outside_temperature_c < limit else 'not under'} the screen's {limit:g} C"


def sun_facts(sun_w_m2: float) -> str:
    """The sun against the screen's, the lamps' and the shade's limits, in words."""
    if sun_w_m2 < SCREEN_SUN_BELOW_W_M2:
        return f"dark, under {SCREEN_SUN_BELOW_W_M2:g}"
    if sun_w_m2 < LAMPS_SUN_BELOW_W_M2:
        return f"weak, under {LAMPS_SUN_BELOW_W_M2:g}"
    if sun_w_m2 <= SHADE_SUN_ABOVE_W_M2:
        return f"bright, {LAMPS_SUN_BELOW_W_M2:g}-{SHADE_SUN_ABOVE_W_M2:g}"
    return f"strong, over {SHADE_SUN_ABOVE_W_M2:g}"


def taught_rationale(preset: CropPreset, now: Observation, target: dict[str, float]) -> str:
    """What a taught answer's rationale says before the calls, in their order: the errors that decide heating and
    vents, then the decisions that hang on conditions (lamps, CO2 after the lamps, the thermal screen) with the
    reason, so that each call's value follows the words that decide it. In the dark there is no CO2 target (the
    first learned model dosed 20 % in 86 of 96 periods, night or day)."""
    parts = [temperature_errors(preset, now), f"RH {humidity_error(preset, now)}"]
    lamps_on = target[LIGHTS] >= 50.0
    parts.append("lamps on" if lamps_on else f"lamps off{_lamps_off_reason(preset, now)}")
    if not (now.is_day or lamps_on):
        parts.append("CO2 not dosed in the dark")
    elif target[VENT] > 10.0:
        parts.append("CO2 not dosed, vents open")
    else:
        parts.append(f"CO2 {co2_error(preset, now)}")
    parts.append("thermal screen " + ("shut" if target[THERMAL_SCREEN] >= 50.0 else "open"))
    return "; ".join(parts)


def _lamps_off_reason(preset: CropPreset, now: Observation) -> str:
    if not preset.in_lamp_hours(now.hour):
        return ", outside lamp hours"
    if now.global_radiation_w_m2 >= LAMPS_SUN_BELOW_W_M2:
        return ", sun too bright"
    if not lamps_wanted(preset, now):
        return ", above vents' start"
    return ""  # a field decision taught as approved may differ from the rule


def temperature_errors(preset: CropPreset, now: Observation) -> str:
    """How far inside is from the heating set-point and from the vents' start temperature of this moment (the
    lamps' light period counts as day)."""
    setpoint = preset.heating_setpoint(now.is_day or now.lights_on)
    inside = now.air_temperature_c
    return (f"{_offset(inside - setpoint, 'C')} heating set-point, "
            f"{_offset(inside - setpoint - preset.vent_offset_c, 'C')} vents' start")


def humidity_error(preset: CropPreset, now: Observation) -> str:
    return f"{_offset(now.relative_humidity_pct - preset.rh_max_pct, '%')} max"


def co2_error(preset: CropPreset, now: Observation) -> str:
    return f"{_offset(now.co2_ppm - preset.co2_day_ppm, 'ppm')} target"


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
    return proposal, rationale.strip()[:RATIONALE_CHARS] if isinstance(rationale, str) else ""
