"""The safety supervisor: the only path from any controller's proposal to the actuators. Deterministic.

Each review takes the proposal (some or all actuators), the present climate and the time, and returns the full
command to send with a verdict and reasons. In order: emergency stop (every output off); stale or invalid sensor
data (the safe state); malformed proposals (unknown actuator, not a number: rejected, the present command is
kept); hard limits (clamped to 0-100 %, on/off snapped); rate limits; minimum on/off and maximum on durations;
interlocks. Interlocks come last and win over everything before them: equipment wear is worth less than the crop.

The interlocks (`broken_interlocks`) are also what the simulator checks at the actuators, independently of the
supervisor's bookkeeping.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from tango2_ros.core.settings import setting
from tango2_ros.sdf.actuators import (ACTUATORS, CO2_DOSING, HEATING, LIGHTS, VENT, Command, all_off)
from tango2_ros.sdf.crops import CropPreset

ACCEPTED, CLAMPED, REJECTED = "accepted", "clamped", "rejected"


@dataclass(frozen=True)
class SupervisorLimits:
    co2_max_vent_pct: float = setting(20.0, "No CO2 dosing with vents open beyond this (it would blow out).", 0.0, 100.0)
    vent_close_below_heating_c: float = 1.0  # vents closed below heating set-point minus this
    max_vent_while_heating_pct: float = setting(10.0, "Vent opening allowed while heating (wider is heating and "
                                                "cooling at once).", 0.0, 100.0)
    lamps_off_above_w_m2: float = setting(400.0, "Lamps off in sunlight above this.", 0.0, 2000.0)
    stale_after_s: float = 900.0  # sensor data older than this puts the greenhouse in the safe state
    safe_heating_pct: float = setting(30.0, "Heating in the safe state (frost protection while blind).", 0.0, 100.0)
    # readings reach the supervisor rounded (the gateway's 3 decimals, float32 messages): it keeps the thresholds
    # on measured values this much inside, so that the true state keeps them too
    sensor_margin_c: float = 0.05
    sensor_margin_w_m2: float = 2.0

    def guarded(self) -> "SupervisorLimits":
        """The limits the supervisor enforces: the measured thresholds moved inside by the sensor margins."""
        return replace(self, vent_close_below_heating_c=self.vent_close_below_heating_c - self.sensor_margin_c,
                       lamps_off_above_w_m2=self.lamps_off_above_w_m2 - self.sensor_margin_w_m2)


@dataclass(frozen=True)
class Conditions:
    """What the interlocks depend on."""

    air_temperature_c: float
    is_day: bool
    global_radiation_w_m2: float


@dataclass
class Verdict:
    command: Command
    verdict: str
    reasons: list[str] = field(default_factory=list)
    clamps: int = 0


def is_night(command: Command, conditions: Conditions) -> bool:
    """Night for the crop: the sun is down and the lamps are off."""
    return not conditions.is_day and command[LIGHTS] < 50.0


@dataclass(frozen=True)
class Interlock:
    """A broken interlock: `code` says which (what the supervisor acts on), `message` says it to people."""

    code: str
    message: str

    def __str__(self) -> str:
        return self.message


CO2_AT_NIGHT, CO2_WITH_VENTS = "co2-at-night", "co2-with-vents"
VENTS_WHEN_COLD, HEATING_AND_COOLING, LAMPS_IN_SUN = "vents-when-cold", "heating-and-cooling", "lamps-in-sunlight"


def broken_interlocks(command: Command, conditions: Conditions, preset: CropPreset,
                      limits: SupervisorLimits = SupervisorLimits()) -> list[Interlock]:
    broken = []
    if command[CO2_DOSING] > 0 and is_night(command, conditions):
        broken.append(Interlock(CO2_AT_NIGHT, "CO2 dosing at night"))
    if command[CO2_DOSING] > 0 and command[VENT] > limits.co2_max_vent_pct:
        broken.append(Interlock(CO2_WITH_VENTS, f"CO2 dosing with vents open beyond {limits.co2_max_vent_pct:g} %"))
    heating_setpoint = preset.heating_setpoint(conditions.is_day or command[LIGHTS] >= 50.0)
    if command[VENT] > 0 and conditions.air_temperature_c < heating_setpoint - limits.vent_close_below_heating_c:
        broken.append(Interlock(VENTS_WHEN_COLD, "vents open below the heating set-point minus "
                                                 f"{limits.vent_close_below_heating_c:g} C"))
    if command[HEATING] > 0 and command[VENT] > limits.max_vent_while_heating_pct:
        broken.append(Interlock(HEATING_AND_COOLING, "heating and cooling (vents open) at once"))
    if command[LIGHTS] > 0 and conditions.global_radiation_w_m2 > limits.lamps_off_above_w_m2:
        broken.append(Interlock(LAMPS_IN_SUN, f"lamps on in sunlight above {limits.lamps_off_above_w_m2:g} W/m2"))
    return broken


class SafetySupervisor:
    def __init__(self, preset: CropPreset, limits: SupervisorLimits = SupervisorLimits()) -> None:
        self.preset, self.limits = preset, limits
        self.current: Command = all_off()
        self.switched_at = {name: -math.inf for name in ACTUATORS}
        self.last_review_s: float | None = None
        self.emergency_stop = False

    def review(self, proposal: dict | None, conditions: Conditions | None, now_s: float) -> Verdict:
        """Decide the command for now. `proposal` None: nobody proposed; `conditions` None: no valid sensor data."""
        elapsed = None if self.last_review_s is None else max(0.0, now_s - self.last_review_s)
        self.last_review_s = now_s
        if self.emergency_stop:
            return self._commit(all_off(), REJECTED, ["emergency stop: every output off until it is released"], now_s)
        if conditions is None:
            safe = {**all_off(), HEATING: self.limits.safe_heating_pct}
            safe.update({name: self.current[name] for name in ("thermal_screen", "shade_screen")})
            return self._commit(safe, REJECTED, ["sensor data stale or invalid: safe state (vents closed, dosing, "
                                                 "irrigation and lamps off, frost-protection heating)"], now_s)
        reasons, verdict = [], ACCEPTED
        candidate = dict(self.current)
        problem = _malformed(proposal)
        if problem:
            reasons.append(f"proposal rejected: {problem}; the present command stays")
            verdict = REJECTED
        elif proposal:
            candidate.update({name: float(value) for name, value in proposal.items()})
        clamps = self._hard_limits(candidate, reasons)
        clamps += self._rate_limits(candidate, elapsed, reasons)
        clamps += self._switching_limits(candidate, now_s, reasons)
        clamps += self._enforce_interlocks(candidate, conditions, reasons)
        if clamps and verdict == ACCEPTED:
            verdict = CLAMPED
        return self._commit(candidate, verdict, reasons, now_s, clamps)

    def _commit(self, command: Command, verdict: str, reasons: list[str], now_s: float, clamps: int = 0) -> Verdict:
        for name in ACTUATORS:
            if (command[name] > 0) != (self.current[name] > 0):
                self.switched_at[name] = now_s
        self.current = dict(command)
        return Verdict(dict(command), verdict, reasons, clamps)

    @staticmethod
    def _hard_limits(candidate: Command, reasons: list[str]) -> int:
        clamps = 0
        for name, spec in ACTUATORS.items():
            value = candidate[name]
            limited = (100.0 if value >= 50.0 else 0.0) if spec.binary else min(100.0, max(0.0, value))
            if limited != value:
                reasons.append(f"{name} {value:g} -> {limited:g} (range {'0 or 100' if spec.binary else '0-100'} %)")
                candidate[name] = limited
                clamps += 1
        return clamps

    def _rate_limits(self, candidate: Command, elapsed: float | None, reasons: list[str]) -> int:
        if elapsed is None:
            return 0  # the first command: nothing to move from
        clamps = 0
        for name, spec in ACTUATORS.items():
            if not spec.max_rate_pct_min:
                continue
            step = spec.max_rate_pct_min * elapsed / 60.0
            change = candidate[name] - self.current[name]
            if abs(change) > step + 1e-9:
                candidate[name] = self.current[name] + math.copysign(step, change)
                reasons.append(f"{name} moves {step:.0f} % of the {change:+.0f} % asked (rate limit "
                               f"{spec.max_rate_pct_min:g} %/min)")
                clamps += 1
        return clamps

    def _switching_limits(self, candidate: Command, now_s: float, reasons: list[str]) -> int:
        clamps = 0
        for name, spec in ACTUATORS.items():
            on_now, on_next = self.current[name] > 0, candidate[name] > 0
            since = now_s - self.switched_at[name]
            if on_now and not on_next and since < spec.min_on_s:
                candidate[name] = self.current[name]
                reasons.append(f"{name} stays on: on for {since:.0f} s of its minimum {spec.min_on_s:.0f} s")
                clamps += 1
            elif not on_now and on_next and since < spec.min_off_s:
                candidate[name] = 0.0
                reasons.append(f"{name} stays off: off for {since:.0f} s of its minimum {spec.min_off_s:.0f} s")
                clamps += 1
            elif on_now and on_next and spec.max_on_s and since >= spec.max_on_s:
                candidate[name] = 0.0
                reasons.append(f"{name} switched off: on for {since:.0f} s, its maximum is {spec.max_on_s:.0f} s")
                clamps += 1
        return clamps

    def _enforce_interlocks(self, candidate: Command, conditions: Conditions, reasons: list[str]) -> int:
        """Make every interlock hold, one at a time, changing the output that the situation says should yield
        (CO2 dosing last: whether it may dose depends on the vents and lamps)."""
        limits, clamps = self.limits.guarded(), 0
        for _ in range(2 * len(ACTUATORS)):
            broken = broken_interlocks(candidate, conditions, self.preset, limits)
            if not broken:
                return clamps
            first = next((b for b in broken if b.code not in (CO2_AT_NIGHT, CO2_WITH_VENTS)), broken[0])
            if first.code == LAMPS_IN_SUN:
                candidate[LIGHTS] = 0.0
            elif first.code == VENTS_WHEN_COLD:
                candidate[VENT] = 0.0
            elif first.code == HEATING_AND_COOLING:
                heating_setpoint = self.preset.heating_setpoint(conditions.is_day or candidate[LIGHTS] >= 50.0)
                if conditions.air_temperature_c < heating_setpoint:
                    candidate[VENT] = limits.max_vent_while_heating_pct  # cold: heat, keep only a humidity gap
                else:
                    candidate[HEATING] = 0.0  # warm enough: ventilate, do not heat
            else:
                candidate[CO2_DOSING] = 0.0
            reasons.append(f"interlock: {first}")
            clamps += 1
        # the rules above settle in a few rounds; never send a command that breaks an interlock
        left = broken_interlocks(candidate, conditions, self.preset, limits)
        raise AssertionError(f"supervisor left interlocks broken: {left}")


def _malformed(proposal: dict | None) -> str:
    if not proposal:
        return ""
    unknown = sorted(set(proposal) - set(ACTUATORS))
    if unknown:
        return f"unknown actuator(s) {', '.join(map(str, unknown))}"
    for name, value in proposal.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{name} = {value!r} is not a finite number"
    return ""
