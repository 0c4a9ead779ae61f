"""Controllers that propose actuator commands: the baseline (conventional proportional rules, of the kind a
Mycodo user or GreenLight's own climate computer runs; the supervisor's fallback) and an adversarial random one
that proposes random and extreme values, unknown actuators and non-numbers, to prove the supervisor.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from tango2_ros.sdf.actuators import (ACTUATORS, CO2_DOSING, FAN, HEATING, IRRIGATION, LIGHTS, SHADE_SCREEN,
                                      THERMAL_SCREEN, VENT)
from tango2_ros.sdf.crops import CropPreset


@dataclass(frozen=True)
class Observation:
    """What a controller sees at one instant (the GreenhouseState, in plain numbers)."""

    hour: float  # local time of day
    air_temperature_c: float
    relative_humidity_pct: float
    co2_ppm: float
    outside_temperature_c: float
    global_radiation_w_m2: float
    substrate_water_pct: float
    is_day: bool
    vent_pct: float = 0.0
    lights_on: bool = False


# The baseline's limits on the sun outside (global radiation, W/m2) and the outside temperature under which the
# thermal screen closes. The action model's prompt names the same limits (sdf.lam), so a model reads what the rule
# decides by instead of guessing thresholds from examples.
SCREEN_SUN_BELOW_W_M2 = 50.0
LAMPS_SUN_BELOW_W_M2 = 200.0
SHADE_SUN_ABOVE_W_M2 = 500.0


def screen_cold_c(is_day: bool) -> float:
    """Outside temperature under which the thermal screen closes in the dark (a night loses more heat)."""
    return 5.0 if is_day else 10.0


def lamps_wanted(preset: CropPreset, o: Observation) -> bool:
    """The lamps extend the photoperiod: in the crop's lamp hours, with a weak sun, while the greenhouse is below
    the vents' start (lamps heat)."""
    vents_from = preset.heating_setpoint(o.is_day or o.lights_on) + preset.vent_offset_c
    return preset.in_lamp_hours(o.hour) and o.global_radiation_w_m2 < LAMPS_SUN_BELOW_W_M2 \
        and o.air_temperature_c < vents_from


def _ramp(value: float, start: float, full: float) -> float:
    """0 % at `start`, 100 % at `full` (either direction), linear between."""
    if full == start:
        return 100.0 if value >= full else 0.0
    return 100.0 * min(1.0, max(0.0, (value - start) / (full - start)))


class BaselineController:
    """Proportional heating and ventilation around the crop's set-points, CO2 in the light period, screens by
    outside temperature and sun, lamps in the crop's lamp hours when the sun is weak, irrigation by slab water content."""

    name = "baseline"

    def __init__(self, preset: CropPreset) -> None:
        self.preset = preset
        self._irrigating = False

    def propose(self, o: Observation) -> dict[str, float]:
        p = self.preset
        light_period = o.is_day or o.lights_on
        heating_sp = p.heating_setpoint(light_period)
        vent_sp = heating_sp + p.vent_offset_c
        heating = _ramp(o.air_temperature_c, heating_sp + 0.5, heating_sp - 1.5)
        vent = max(_ramp(o.air_temperature_c, vent_sp, vent_sp + 4.0),
                   _ramp(o.relative_humidity_pct, p.rh_max_pct, p.rh_max_pct + 8.0) * 0.3)
        if heating > 0:
            vent = min(vent, 10.0)  # a humidity gap while heating, never more
        if o.air_temperature_c < heating_sp - 0.5:
            vent = 0.0
        cold_outside = o.outside_temperature_c < screen_cold_c(o.is_day)
        thermal = 100.0 if cold_outside and o.global_radiation_w_m2 < SCREEN_SUN_BELOW_W_M2 else 0.0
        shade = 50.0 if o.global_radiation_w_m2 > SHADE_SUN_ABOVE_W_M2 else 0.0
        lights = 100.0 if lamps_wanted(p, o) else 0.0
        co2 = 0.0
        if (o.is_day or lights) and vent <= 10.0:
            co2 = _ramp(o.co2_ppm, p.co2_day_ppm, p.co2_day_ppm - 200.0)
        if o.substrate_water_pct < 65.0:
            self._irrigating = True
        elif o.substrate_water_pct > 85.0:
            self._irrigating = False
        fan = 30.0 if o.relative_humidity_pct > p.rh_max_pct else 0.0
        return {HEATING: heating, VENT: vent, THERMAL_SCREEN: thermal, SHADE_SCREEN: shade, CO2_DOSING: co2,
                FAN: fan, IRRIGATION: 100.0 if self._irrigating else 0.0, LIGHTS: lights}


class RandomController:
    """Adversarial: random values, and now and then extremes, negatives, NaN, infinities and unknown actuators."""

    name = "random"
    HOSTILE = (-50.0, 150.0, 1e9, math.nan, math.inf, -math.inf)

    def __init__(self, seed: int = 0) -> None:
        self.random = random.Random(seed)

    def propose(self, _observation: Observation) -> dict:
        pick = self.random.random()
        proposal: dict = {name: self.random.choice((0.0, 100.0, self.random.uniform(0.0, 100.0)))
                          for name in ACTUATORS if self.random.random() < 0.7}
        if pick < 0.1:
            proposal[self.random.choice(list(ACTUATORS))] = self.random.choice(self.HOSTILE)
        elif pick < 0.15:
            proposal["self_destruct"] = 100.0
        return proposal
