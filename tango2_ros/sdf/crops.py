"""Crop presets: the set-point bands a grower would give the climate computer (facts in the project notes:
GreenLight's tomato defaults, Rutgers lettuce)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CropPreset:
    name: str
    stage: str
    heating_day_c: float  # heating set-point in the light period
    heating_night_c: float
    temp_band_day_c: tuple[float, float]  # what counts as "in band" for the report
    temp_band_night_c: tuple[float, float]
    vent_offset_c: float  # ventilate above heating set-point + this
    rh_max_pct: float
    rh_band_pct: tuple[float, float]
    co2_day_ppm: float  # dosing target in the light period (never at night)
    co2_band_ppm: tuple[float, float]  # in band, light period only
    ec_supply_ds_m: float
    ph_supply: float
    lamp_hours: tuple[float, float] = (2.0, 18.0)  # the photoperiod the lamps may extend: [from, to) local hours

    def in_lamp_hours(self, hour: float) -> bool:
        return self.lamp_hours[0] <= hour < self.lamp_hours[1]

    def heating_setpoint(self, is_day: bool) -> float:
        return self.heating_day_c if is_day else self.heating_night_c

    def temp_band(self, is_day: bool) -> tuple[float, float]:
        return self.temp_band_day_c if is_day else self.temp_band_night_c


PRESETS = {
    "tomato": CropPreset("tomato", "fruiting", heating_day_c=19.5, heating_night_c=18.5,
                         temp_band_day_c=(19.0, 27.0), temp_band_night_c=(17.0, 20.0), vent_offset_c=5.0,
                         rh_max_pct=87.0, rh_band_pct=(60.0, 87.0), co2_day_ppm=1000.0, co2_band_ppm=(700.0, 1200.0),
                         ec_supply_ds_m=2.0, ph_supply=5.5),
    "lettuce": CropPreset("lettuce", "vegetative", heating_day_c=22.0, heating_night_c=18.0,
                          temp_band_day_c=(21.0, 26.0), temp_band_night_c=(17.0, 21.0), vent_offset_c=2.0,
                          rh_max_pct=85.0, rh_band_pct=(75.0, 85.0), co2_day_ppm=1000.0, co2_band_ppm=(700.0, 1200.0),
                          ec_supply_ds_m=1.5, ph_supply=5.8),
}
