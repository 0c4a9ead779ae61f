"""The greenhouse plant: GreenLight (Katzin 2021 tomato greenhouse, Vanthoor climate) stepped in closed loop, on the
Bleiswijk weather that the `greenlight` package ships.

GreenLight has no step API. Its loader turns the model's JSON into Python statements (`mdl.commands`) over the
state vector `y`, the inputs `d` and the auxiliaries `a`; compiled once into a right-hand side, they are integrated
over each control period with the actuator inputs held constant (scipy BDF, GreenLight's own solver and
tolerances). The actuators become model inputs by giving the weather table a column with each one's name, which
replaces GreenLight's built-in climate controller.

Mapping: heating -> `uBoil` (boiler to the pipe rail, 300 W/m2), vent -> `uRoof`, thermal_screen -> `uThScr`,
shade_screen -> `uBlScr` (GreenLight's second screen), co2_dosing -> `uExtCo2`, lights -> `uLamp` (HPS,
66.7 W/m2 electric). Not in GreenLight, and modelled here: circulation fans (electricity only, 2 W/m2 at 100 %)
and the root zone (a slab water balance: drip irrigation at 5 l/m2/h, transpiration from the radiation reaching
the crop and the vapour-pressure deficit, drainage above field capacity; drain EC from the salt balance).
"""
from __future__ import annotations

import contextlib
import csv
import datetime
import functools
import io
import math
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tango2_ros.errors import UserError
from tango2_ros.sdf.actuators import (CO2_DOSING, FAN, HEATING, IRRIGATION, LIGHTS, SHADE_SCREEN, THERMAL_SCREEN,
                                      VENT, Command, all_off)
from tango2_ros.sdf.crops import CropPreset

WEATHER_FILE = "models/katzin_2021/input_data/test_data/Bleiswijk_from_20091020.csv"
WEATHER_START = datetime.datetime(2009, 10, 20)
WEATHER_STEP_S = 300
GREENLIGHT_INPUTS = {HEATING: "uBoil", VENT: "uRoof", THERMAL_SCREEN: "uThScr", SHADE_SCREEN: "uBlScr",
                     CO2_DOSING: "uExtCo2", LIGHTS: "uLamp"}
EXTRA_INPUTS = ("uBoilGro", "uIntLamp")  # present in the model, held at 0
BOILER_W_M2 = 300.0  # pBoil / aFlr
LAMP_W_M2 = 200.0 / 3.0  # thetaLampMax
FAN_W_M2 = 2.0
CO2_MG_M2_S = 20.56e4 / 4e4  # phiExtCo2 / aFlr at full dosing
DRIP_L_M2_S = 5.0 / 3600.0
SLAB_CAPACITY_L_M2 = 8.0
PAR_PER_GLOBAL = 2.1  # umol/J of global radiation (about 45 % PAR at 4.6 umol/J)
COVER_TRANSMISSION = 0.7


@dataclass(frozen=True)
class Weather:
    """One weather row (every 300 s)."""

    t_out_c: float
    vp_out_pa: float
    wind_m_s: float
    global_w_m2: float
    is_day: bool


@dataclass(frozen=True)
class Climate:
    """What the greenhouse's sensors measure."""

    air_temperature_c: float
    relative_humidity_pct: float
    co2_ppm: float
    par_umol_m2_s: float
    outside_temperature_c: float
    outside_relative_humidity_pct: float
    wind_speed_m_s: float
    global_radiation_w_m2: float
    ec_ds_m: float
    ph: float
    substrate_water_pct: float
    is_day: bool


def saturation_vp_pa(t_c: float) -> float:
    """Tetens (as GreenLight's satVp): saturated vapour pressure over water."""
    return 610.78 * math.exp(17.2694 * t_c / (t_c + 238.3))


def co2_ppm(t_c: float, mg_m3: float) -> float:
    return 1e6 * 8.3144598 * (t_c + 273.15) * (mg_m3 * 1e-6) / (101325.0 * 0.044)


@functools.lru_cache(maxsize=1)
def weather_table() -> np.ndarray:
    """Columns in GreenLight's order (tOut, vpOut, co2Out, wind, tSky, tSoOut, iGlob, dayRadSum, isDay,
    isDaySmooth, hElevation), one row per 300 s from 2009-10-20 00:00."""
    path = resources.files("greenlight") / WEATHER_FILE
    with path.open(encoding="latin-1") as stream:
        rows = list(csv.reader(stream))[3:]
    return np.array([[float(v) for v in row[1:]] for row in rows if row])


def weather_days() -> float:
    return len(weather_table()) * WEATHER_STEP_S / 86400.0


def _write_weather(path: Path, rows: int, command: Command) -> Path:
    """The package's weather file, its first `rows` rows, plus a column per actuator input held at `command`."""
    names = list(GREENLIGHT_INPUTS.values()) + list(EXTRA_INPUTS)
    values = [f"{command.get(actuator, 0.0) / 100.0:g}" for actuator in GREENLIGHT_INPUTS] + ["0"] * len(EXTRA_INPUTS)
    with (resources.files("greenlight") / WEATHER_FILE).open(encoding="latin-1") as stream:
        lines = stream.read().splitlines()[:3 + rows]
    table = [lines[0] + "," + ",".join(names), lines[1] + "," + ",".join(names),
             lines[2] + "," + ",".join("-" * len(names))] + [line + "," + ",".join(values) for line in lines[3:]]
    path.write_text("\n".join(table) + "\n", encoding="latin-1")
    return path


def _greenlight(weather: Path, t_end_s: float, **options):
    from greenlight import GreenLight

    main = str(resources.files("greenlight") / "models/katzin_2021/definition/main_katzin_2021.json")
    model = GreenLight(input_prompt=[main, str(weather), {"options": {"t_end": t_end_s, **options}}])
    with contextlib.redirect_stdout(io.StringIO()):  # GreenLight prints its progress; stdout is for results
        model.load()
    return model


def greenlight_reference(hours: float, command: Command) -> np.ndarray:
    """Air temperature every 300 s from GreenLight's own whole-run solver, actuators held at `command` from the
    start of the weather file: what the stepped plant must reproduce."""
    folder = Path(tempfile.mkdtemp(prefix="tango2-greenlight-"))
    rows = int(hours * 3600 / WEATHER_STEP_S) + 2
    model = _greenlight(_write_weather(folder / "weather.csv", rows, command), hours * 3600, output_step=WEATHER_STEP_S,
                        t_eval="True")
    with contextlib.redirect_stdout(io.StringIO()):
        model.solve()
    return model.full_sol["tAir"].to_numpy()


@functools.lru_cache(maxsize=1)
def _compiled_model():
    """GreenLight's model with the actuators as inputs, compiled once per process (loading takes seconds)."""
    folder = Path(tempfile.mkdtemp(prefix="tango2-greenlight-"))
    # the inputs come from the file's header; an hour of rows is enough to load the model
    model = _greenlight(_write_weather(folder / "weather.csv", 12, all_off()), 3600)
    inputs = [k for k in model.inputs if k != "Time"]
    body = ["def rhs(t, y, d_matrix):", "    dy = np.zeros(y.shape)",
            "    j = min(max(int(np.searchsorted(d_matrix[:, 0], t)) - 1, 0), d_matrix.shape[0] - 2)",
            "    w = (t - d_matrix[j, 0]) / (d_matrix[j + 1, 0] - d_matrix[j, 0])",
            "    d = np.concatenate(([t], (1 - w) * d_matrix[j, 1:] + w * d_matrix[j + 1, 1:]))",
            f"    a = np.zeros({len(model.solving_order)})"]
    body += [f"    {command}" for command in model.commands] + ["    return dy"]
    space = {"np": np}
    exec("\n".join(body), space)  # noqa: S102 - GreenLight's own model statements, as its solver runs them
    states = list(model.states)
    return space["rhs"], states, np.array([float(model.init[k]) for k in states]), inputs


class ReusedJacobian:
    """The Jacobian for BDF's Newton iterations, carried from one control period to the next.

    Each period is a new solve_ivp call, which by default starts with a fresh finite-difference Jacobian: 29
    right-hand-side calls, 44 % of a simulated day. Newton only needs an approximate one, so a period starts with
    the previous period's; when the solver asks again within the period (its Newton iteration did not converge),
    a fresh one is computed. Measured over a 24 h spin-up: 42 fresh Jacobians instead of 329, 41 % less time, end
    states within 4e-6 (relative) of the default."""

    def __init__(self, rhs) -> None:
        self.rhs, self.last = rhs, None

    def for_period(self):
        """solve_ivp's `jac` callable for one period."""
        first_call = True

        def jacobian(t: float, y: np.ndarray, d: np.ndarray) -> np.ndarray:
            nonlocal first_call
            if not (first_call and self.last is not None):
                self.last = self.finite_differences(t, y, d)
            first_call = False
            return self.last
        return jacobian

    def finite_differences(self, t: float, y: np.ndarray, d: np.ndarray) -> np.ndarray:
        f = self.rhs(t, y, d)
        steps = np.sqrt(np.finfo(float).eps) * np.maximum(np.abs(y), 1.0)
        columns = []
        for i, step in enumerate(steps):
            moved = y.copy()
            moved[i] += step
            columns.append((self.rhs(t, moved, d) - f) / (moved[i] - y[i]))
        return np.stack(columns, axis=1)


class Greenhouse:
    """One compartment, stepped by the control period; `apply` sets the actuators, `advance` integrates."""

    def __init__(self, preset: CropPreset, start: datetime.date | None = None, days: float = 1.0,
                 period_s: float = 300.0, spin_up_h: float = 0.0) -> None:
        """`spin_up_h`: hours simulated before `start` (t_s < 0) so that the measured days begin from a settled
        climate rather than GreenLight's initial state; the caller runs a controller through them."""
        self._spin_up_s = spin_up_h * 3600.0
        start = start or (WEATHER_START + datetime.timedelta(days=math.ceil(spin_up_h / 24.0))).date()
        offset_days = (datetime.datetime.combine(start, datetime.time()) - WEATHER_START).total_seconds() / 86400 \
            - spin_up_h / 24.0
        if offset_days < 0 or offset_days + spin_up_h / 24.0 + days > weather_days() - 1e-9:
            last = WEATHER_START + datetime.timedelta(days=weather_days())
            raise UserError(f"the Bleiswijk weather covers {WEATHER_START:%Y-%m-%d} to {last:%Y-%m-%d}: "
                            f"{days:g} day(s) from {start}" + (f" after {spin_up_h:g} h of spin-up" if spin_up_h else "")
                            + " do not fit")
        if not 60.0 <= period_s <= 3600.0:
            raise UserError(f"control period {period_s} s: use 60 to 3600 s")
        self.preset, self.period_s = preset, period_s
        self._rhs, states, init, inputs = _compiled_model()
        self._index = {name: i for i, name in enumerate(states)}
        first = int(round(offset_days * 86400 / WEATHER_STEP_S))
        rows = weather_table()[first:first + int(math.ceil((days * 86400 + self._spin_up_s) / WEATHER_STEP_S)) + 2]
        self._weather = rows
        self._d = np.zeros((len(rows), 1 + len(inputs)))
        self._d[:, 0] = np.arange(len(rows)) * WEATHER_STEP_S
        self._d[:, 1:12] = rows
        self._column = {name: 1 + inputs.index(name) for name in inputs}
        self._y = init.copy()
        self._jacobian = ReusedJacobian(self._rhs)
        self._tau = 0.0  # GreenLight's time: from the first weather row used
        self.start = start
        self.actuators: Command = all_off()
        self.reset_totals()
        self._water_l_m2, self._salt = 0.75 * SLAB_CAPACITY_L_M2, 0.75 * SLAB_CAPACITY_L_M2 * preset.ec_supply_ds_m
        self.end_s = days * 86400.0

    @property
    def t_s(self) -> float:
        """Seconds since `start` (negative while spinning up)."""
        return self._tau - self._spin_up_s

    def reset_totals(self) -> None:
        self.totals = {"heating_mj_m2": 0.0, "electricity_kwh_m2": 0.0, "water_l_m2": 0.0, "co2_kg_m2": 0.0,
                       "drain_l_m2": 0.0}

    def apply(self, command: Command) -> None:
        """Set the actuators (what the Modbus registers say) for the coming period."""
        self.actuators = {name: min(100.0, max(0.0, float(command.get(name, 0.0)))) for name in all_off()}

    def weather(self, t_s: float | None = None) -> Weather:
        tau = self._tau if t_s is None else t_s + self._spin_up_s
        row = self._weather[min(int(tau // WEATHER_STEP_S), len(self._weather) - 1)]
        return Weather(t_out_c=float(row[0]), vp_out_pa=float(row[1]), wind_m_s=float(row[3]), global_w_m2=float(row[6]),
                       is_day=bool(row[8] > 0.5))

    def forecast(self, hours: int = 6) -> list[tuple[float, float, float]]:
        """(hours ahead, outside C, sun W/m2) for the coming hours: the weather file is the perfect forecast."""
        rows = []
        for ahead in range(1, hours + 1):
            weather = self.weather(self.t_s + ahead * 3600.0)
            rows.append((float(ahead), weather.t_out_c, weather.global_w_m2))
        return rows

    def utc_s(self) -> float:
        """The plant's clock as UTC seconds (the weather's local time taken as UTC)."""
        return self.clock().replace(tzinfo=datetime.timezone.utc).timestamp()

    def advance(self) -> None:
        """Integrate one control period with the present actuators."""
        from scipy.integrate import solve_ivp

        for name, column in GREENLIGHT_INPUTS.items():
            self._d[:, self._column[column]] = self.actuators[name] / 100.0
        end = self._tau + self.period_s
        solution = solve_ivp(self._rhs, (self._tau, end), self._y, "BDF", args=(self._d,), atol=1e-3, rtol=1e-6,
                             max_step=self.period_s, jac=self._jacobian.for_period())
        if not solution.success or not np.all(np.isfinite(solution.y[:, -1])):
            raise RuntimeError(f"GreenLight's integration failed at t = {self.t_s:.0f} s: {solution.message}")
        self._account(self.period_s)
        self._y = solution.y[:, -1]
        self._tau = end

    def _account(self, dt: float) -> None:
        a = self.actuators
        self.totals["heating_mj_m2"] += a[HEATING] / 100.0 * BOILER_W_M2 * dt / 1e6
        self.totals["electricity_kwh_m2"] += (a[LIGHTS] / 100.0 * LAMP_W_M2 + a[FAN] / 100.0 * FAN_W_M2) * dt / 3.6e6
        self.totals["co2_kg_m2"] += a[CO2_DOSING] / 100.0 * CO2_MG_M2_S * dt / 1e6
        irrigation = (a[IRRIGATION] >= 50.0) * DRIP_L_M2_S * dt
        self.totals["water_l_m2"] += irrigation
        self._water_l_m2 += irrigation - self._transpiration_l_m2_s() * dt
        self._salt += irrigation * self.preset.ec_supply_ds_m
        if self._water_l_m2 > SLAB_CAPACITY_L_M2:  # drains at the slab's concentration
            drain = self._water_l_m2 - SLAB_CAPACITY_L_M2
            self._salt -= drain * self._salt / self._water_l_m2
            self._water_l_m2 = SLAB_CAPACITY_L_M2
            self.totals["drain_l_m2"] += drain
        self._water_l_m2 = max(self._water_l_m2, 0.05)

    def _inside_radiation(self) -> float:
        shade = 1.0 - 0.5 * self.actuators[SHADE_SCREEN] / 100.0 - 0.15 * self.actuators[THERMAL_SCREEN] / 100.0
        return self.weather().global_w_m2 * COVER_TRANSMISSION * shade

    def _transpiration_l_m2_s(self) -> float:
        """Radiation-driven (a third of the absorbed energy goes into evaporation) plus a VPD term at night."""
        t_air = self._y[self._index["tAir"]]
        vpd_kpa = max(0.0, saturation_vp_pa(t_air) - self._y[self._index["vpAir"]]) / 1000.0
        lamp = self.actuators[LIGHTS] / 100.0 * LAMP_W_M2 * 0.3
        return (0.33 * (self._inside_radiation() + lamp) / 2.45e6) + 1.5e-5 * vpd_kpa

    def climate(self) -> Climate:
        t_air = float(self._y[self._index["tAir"]])
        weather = self.weather()
        lamp_par = 1.8 * self.actuators[LIGHTS] / 100.0 * LAMP_W_M2 * 0.3  # HPS: about 1.8 umol/J of light
        return Climate(
            air_temperature_c=t_air,
            relative_humidity_pct=min(100.0, 100.0 * float(self._y[self._index["vpAir"]]) / saturation_vp_pa(t_air)),
            co2_ppm=co2_ppm(t_air, float(self._y[self._index["co2Air"]])),
            par_umol_m2_s=self._inside_radiation() * PAR_PER_GLOBAL + lamp_par,
            outside_temperature_c=weather.t_out_c,
            outside_relative_humidity_pct=min(100.0, 100.0 * weather.vp_out_pa / saturation_vp_pa(weather.t_out_c)),
            wind_speed_m_s=weather.wind_m_s, global_radiation_w_m2=weather.global_w_m2,
            ec_ds_m=self._salt / self._water_l_m2, ph=self.preset.ph_supply,
            substrate_water_pct=100.0 * self._water_l_m2 / SLAB_CAPACITY_L_M2, is_day=weather.is_day)

    @property
    def finished(self) -> bool:
        return self.t_s >= self.end_s - 1e-6

    def clock(self) -> datetime.datetime:
        return datetime.datetime.combine(self.start, datetime.time()) + datetime.timedelta(seconds=self.t_s)
