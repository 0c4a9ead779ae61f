"""The closed loop around the greenhouse plant, its metrics and its decision log.

`run` steps the plant one control period at a time: it asks a `decide` function for the command (in process:
controller -> supervisor; through ROS: sensors over MQTT, nodes, commands back over Modbus), applies it, checks
the interlocks at the actuators, integrates, and writes one decision-log record per period.

Decision log (JSON Lines, one object per control period; the continual-learning input):
    t_s, time (ISO local), crop, controller, model,
    state: {air_temperature_c, relative_humidity_pct, co2_ppm, outside_temperature_c, global_radiation_w_m2,
            substrate_water_pct, is_day, hour},
    actuators: {actuator: value} before the decision, forecast: [[outside C, sun W/m2] for the next hours],
    proposal: {actuator: value} or null (nothing valid proposed), rationale,
    verdict: accepted | clamped | rejected | fallback, reasons: [...],
    command: {actuator: value} (what reached the actuators),
    outcome: the state one period later, in_band: {temperature, humidity, co2} for that outcome (co2 null at night)
"""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Callable

from tango2_ros.sdf.actuators import LIGHTS, Command
from tango2_ros.sdf.controllers import Observation
from tango2_ros.sdf.crops import CropPreset
from tango2_ros.sdf.greenhouse import Climate, Greenhouse
from tango2_ros.sdf.supervisor import CLAMPED, REJECTED, Conditions, broken_interlocks


@dataclass
class Step:
    """What the deciding side did for one period."""

    command: Command
    verdict: str  # accepted, clamped, rejected, fallback
    reasons: list[str] = field(default_factory=list)
    clamps: int = 0
    proposal: dict | None = None
    rationale: str = ""
    model: str = ""


Decide = Callable[[float, Climate, Observation], Step]


def observation(greenhouse: Greenhouse, climate: Climate) -> Observation:
    clock = greenhouse.clock()
    return Observation(hour=clock.hour + clock.minute / 60.0, air_temperature_c=climate.air_temperature_c,
                       relative_humidity_pct=climate.relative_humidity_pct, co2_ppm=climate.co2_ppm,
                       outside_temperature_c=climate.outside_temperature_c,
                       global_radiation_w_m2=climate.global_radiation_w_m2,
                       substrate_water_pct=climate.substrate_water_pct, is_day=climate.is_day,
                       vent_pct=greenhouse.actuators["vent"], lights_on=greenhouse.actuators[LIGHTS] >= 50.0)


def in_band(greenhouse: Greenhouse, climate: Climate) -> dict:
    return band_flags(greenhouse.preset, climate, lit=climate.is_day or greenhouse.actuators[LIGHTS] >= 50.0)


def band_flags(preset: CropPreset, reading: Climate | Observation, lit: bool) -> dict:
    """Whether the reading's temperature, humidity and CO2 are in the crop's bands (CO2 None in the dark)."""
    low, high = preset.temp_band(lit)
    co2 = None if not lit else preset.co2_band_ppm[0] <= reading.co2_ppm <= preset.co2_band_ppm[1]
    return {"temperature": low <= reading.air_temperature_c <= high,
            "humidity": preset.rh_band_pct[0] <= reading.relative_humidity_pct <= preset.rh_band_pct[1], "co2": co2}


def run(greenhouse: Greenhouse, decide: Decide, controller: str, *,
        on_record: Callable[[dict], None] | None = None) -> dict:
    """Simulate until the greenhouse's period ends; returns the report (the `--json` object). Each period's
    decision-log record goes to `on_record`."""
    counts: collections.Counter = collections.Counter()
    report = {"proposals": 0, "supervisor_rejections": 0, "supervisor_clamps": 0, "interlock_violations": 0,
              "fallback_s": 0.0}
    violations: dict[str, int] = {}
    while not greenhouse.finished:
        climate = greenhouse.climate()
        seen = observation(greenhouse, climate)
        before = {"actuators": dict(greenhouse.actuators), "forecast": greenhouse.forecast()}
        step = decide(greenhouse.t_s, climate, seen)
        report["proposals"] += step.proposal is not None
        report["supervisor_rejections"] += step.verdict == REJECTED
        report["supervisor_clamps"] += step.clamps if step.verdict == CLAMPED else 0
        report["fallback_s"] += greenhouse.period_s if step.verdict == "fallback" else 0.0
        greenhouse.apply(step.command)
        # the interlocks, judged at the actuators with the plant's true state
        for broken in broken_interlocks(greenhouse.actuators, Conditions(
                climate.air_temperature_c, climate.is_day, climate.global_radiation_w_m2), greenhouse.preset):
            violations[broken.message] = violations.get(broken.message, 0) + 1
        greenhouse.advance()
        outcome = greenhouse.climate()
        band = in_band(greenhouse, outcome)
        counts["steps"] += 1
        counts["co2_steps"] += band["co2"] is not None
        for name, inside in band.items():
            counts[name] += bool(inside)
            counts[f"steered {name}"] += bool(inside) and step.verdict != "fallback"
        if on_record is not None:
            on_record(_record(greenhouse, controller, seen, step, outcome, band, before))
    report["interlock_violations"] = sum(violations.values())

    def pct(name: str) -> float:
        return round(100.0 * counts[name] / max(counts["co2_steps" if name.endswith("co2") else "steps"], 1), 1)

    return {"crop": greenhouse.preset.name, "days": round(greenhouse.end_s / 86400.0, 3), "controller": controller,
            "start": greenhouse.start.isoformat(), "temp_in_band_pct": pct("temperature"),
            "rh_in_band_pct": pct("humidity"), "co2_in_band_pct": pct("co2"),
            # in band after the periods the controller steered itself: the watchdog's periods count as out of band
            "steered_in_band_pct": {name: pct(f"steered {name}") for name in ("temperature", "humidity", "co2")},
            **{k: round(v, 3) for k, v in greenhouse.totals.items()}, **report,
            "violations_by_interlock": violations, "control_period_s": greenhouse.period_s}


def _record(greenhouse: Greenhouse, controller: str, seen: Observation, step: Step, outcome: Climate,
            band: dict, before: dict) -> dict:
    clock = greenhouse.clock()
    return {"t_s": greenhouse.t_s - greenhouse.period_s, "time": clock.isoformat(), "crop": greenhouse.preset.name,
            "controller": controller, "model": step.model, "state": state_record(seen, seen.hour),
            "actuators": {k: round(v, 2) for k, v in before["actuators"].items()},
            "forecast": [[round(t, 1), round(sun)] for _, t, sun in before["forecast"]],
            "proposal": finite_proposal(step.proposal), "rationale": step.rationale, "verdict": step.verdict,
            "reasons": step.reasons, "command": {k: round(v, 2) for k, v in step.command.items()},
            "outcome": state_record(outcome, clock.hour + clock.minute / 60.0), "in_band": band}


def state_record(reading: Climate | Observation, hour: float) -> dict:
    return {"air_temperature_c": round(reading.air_temperature_c, 2),
            "relative_humidity_pct": round(reading.relative_humidity_pct, 1), "co2_ppm": round(reading.co2_ppm),
            "outside_temperature_c": round(reading.outside_temperature_c, 2),
            "global_radiation_w_m2": round(reading.global_radiation_w_m2, 1),
            "substrate_water_pct": round(reading.substrate_water_pct, 1), "is_day": reading.is_day,
            "hour": round(hour, 2)}


def finite_proposal(proposal: dict | None) -> dict | None:
    """JSON has no NaN: hostile values are logged as strings."""
    if proposal is None:
        return None
    return {str(k): (v if isinstance(v, (int, float)) and math.isfinite(v) else repr(v)) for k, v in proposal.items()}
