"""A PNG of a simulated greenhouse run, from its decision log: climate against the crop's bands, and actuators."""
from __future__ import annotations

from pathlib import Path

from tango2_ros.sdf.crops import CropPreset


def plot_run(records: list[dict], preset: CropPreset, report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [r["t_s"] / 3600.0 for r in records]
    outcome = [r["outcome"] for r in records]
    figure, (temp, humidity, co2, actuators) = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    temp.plot(hours, [o["air_temperature_c"] for o in outcome], label="inside")
    temp.plot(hours, [o["outside_temperature_c"] for o in outcome], label="outside", alpha=0.6)
    temp.axhline(preset.heating_day_c, color="tab:red", linestyle=":", label="heating set-point (day)")
    temp.axhline(preset.heating_day_c + preset.vent_offset_c, color="tab:green", linestyle=":", label="vent above")
    temp.set_ylabel("C")
    temp.legend(fontsize=7, loc="upper right")
    humidity.plot(hours, [o["relative_humidity_pct"] for o in outcome])
    humidity.axhspan(*preset.rh_band_pct, alpha=0.15, color="tab:green")
    humidity.set_ylabel("RH %")
    co2.plot(hours, [o["co2_ppm"] for o in outcome])
    co2.axhspan(*preset.co2_band_ppm, alpha=0.15, color="tab:green")
    co2.set_ylabel("CO2 ppm")
    for name in records[0]["command"] if records else []:
        actuators.plot(hours, [r["command"][name] for r in records], label=name, linewidth=1)
    actuators.set_ylabel("%")
    actuators.set_xlabel("hours")
    actuators.legend(fontsize=7, ncol=4, loc="upper right")
    figure.suptitle(f"{report['crop']}, {report['controller']}, {report['days']:g} day(s) from {report['start']}: "
                    f"temperature in band {report['temp_in_band_pct']} %, interlock violations "
                    f"{report['interlock_violations']}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
