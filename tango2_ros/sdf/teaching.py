"""The farm's teacher: greenhouse days simulated under the baseline controller, for teaching the large action model
to propose what the baseline would, and judging it by that.

The teacher is the deterministic reference of the farm: the baseline controller (the supervisor's own fallback)
labels every state. A teaching day is a GreenLight day on the Bleiswijk weather, run through the supervisor with
the baseline proposing; in a fifth of the periods random actuator positions are applied instead, so the days hold
the states a learning model drives the greenhouse into, and the baseline's way back from them. Each period gives
the prompt the farm controller would send (the same history, forecast and actuator positions) with the baseline's
answer, and a training period also gives a counterfactual state (readings moved, positions drawn at random; see
`learning.build_dataset`), answered by the baseline too.

Held out by day: three days of different weather (a cold clear night, a bright day, an overcast day) are never
simulated for training, and the learned model is measured on them in the closed loop (`bench/domain_models.py
--domain sdf`). A training seed picks a period of a training day (whole days, in a fixed mixed order, so a set of
a few thousand seeds simulates a few dozen days); a held-out seed picks a period spread over the three days.

The check (`check_lam`) is agreement with the baseline, action by action: the on/off tools must match, the other
values lie within one step (10 points) of the value taught (the baseline's, in steps of 10); an answer that is not
usable counts as one correction.
"""
from __future__ import annotations

import datetime
import functools
import random

from tango2_ros.builder.teachers import HELD_OUT_SEED_OFFSET
from tango2_ros.sdf.actuators import ACTUATORS, IRRIGATION
from tango2_ros.sdf.controllers import BaselineController, Observation
from tango2_ros.sdf.crops import PRESETS, CropPreset
from tango2_ros.sdf.lam import TOOLS, LamError, answer_schema, parse_answer, prompt
from tango2_ros.sdf.learning import VALUE_STEP, counterfactual, random_positions, answer

HELD_OUT_DAYS = {"cold clear night": datetime.date(2010, 1, 26), "bright day": datetime.date(2009, 10, 23),
                 "overcast day": datetime.date(2009, 12, 10)}
PERIOD_S = 900.0
PERIODS_PER_DAY = int(86400 / PERIOD_S)
EXPLORE = 0.2  # the share of periods in which random positions are applied instead of the baseline's command
HISTORY = 6  # observations the farm controller keeps (LamController), every other one in the prompt
SPREAD = 37  # coprime with PERIODS_PER_DAY: held-out seeds visit every period of their day


def training_days() -> list[datetime.date]:
    """Every day of the weather with a day before it (the spin-up) but the held-out ones, in a fixed mixed order."""
    from tango2_ros.sdf.greenhouse import WEATHER_START, weather_days

    first = WEATHER_START.date() + datetime.timedelta(days=1)
    days = [first + datetime.timedelta(days=i) for i in range(int(weather_days()) - 2)]
    days = [day for day in days if day not in HELD_OUT_DAYS.values()]
    random.Random(0).shuffle(days)
    return days


def scenario(seed: int) -> tuple[datetime.date, int]:
    """(day, period) of a seed: training seeds fill whole training days, held-out seeds are spread over the
    held-out days."""
    if seed >= HELD_OUT_SEED_OFFSET:
        index = seed - HELD_OUT_SEED_OFFSET
        days = list(HELD_OUT_DAYS.values())
        return days[index % len(days)], (index // len(days) * SPREAD) % PERIODS_PER_DAY
    days = training_days()
    return days[(seed // PERIODS_PER_DAY) % len(days)], seed % PERIODS_PER_DAY


class _Exploring:
    """The baseline proposing, but in EXPLORE of the periods random positions; remembers the baseline's own
    proposal, the label of the state."""

    name = "baseline"

    def __init__(self, preset: CropPreset, rng: random.Random) -> None:
        self.baseline, self.rng, self.label = BaselineController(preset), rng, {}

    def propose(self, seen: Observation) -> dict[str, float]:
        self.label = self.baseline.propose(seen)
        return random_positions(self.rng) if self.rng.random() < EXPLORE else self.label


@functools.lru_cache(maxsize=4)
def teaching_day(crop: str, day: datetime.date) -> tuple[tuple[Observation, list, list, dict, dict], ...]:
    """Per period of the day: (state, history for the prompt, forecast, actuator positions before, the baseline's
    proposal). One simulation per day, so the seeds of a day share it."""
    from tango2_ros.sdf.deciding import LocalDecider, spin_up
    from tango2_ros.sdf.greenhouse import Greenhouse
    from tango2_ros.sdf.simulation import observation

    preset = PRESETS[crop]
    plant = Greenhouse(preset, day, days=1.0, period_s=PERIOD_S, spin_up_h=24.0)
    spin_up(plant)
    controller = _Exploring(preset, random.Random(day.toordinal()))
    decide = LocalDecider(preset, controller)
    periods, seen_before = [], []
    while not plant.finished:
        climate = plant.climate()
        seen = observation(plant, climate)
        forecast = [(t, sun) for _, t, sun in plant.forecast()]
        positions = dict(plant.actuators)
        step = decide(plant.t_s, climate, seen)
        periods.append((seen, seen_before[-HISTORY:][::2], forecast, positions, dict(controller.label)))
        seen_before.append(seen)
        plant.apply(step.command)
        plant.advance()
    return tuple(periods)


def lam_row(preset: CropPreset, seen: Observation, history: list, forecast: list, positions: dict,
            wanted: dict[str, float], case: str) -> dict:
    """One JSONL line: the farm controller's prompt, the baseline's answer, and what the check needs."""
    return {"messages": [{"role": "user", "content": prompt(preset, seen, history, forecast, positions)},
                         {"role": "assistant", "content": answer(wanted, seen, preset)}],
            "check": {"task": "sdf-lam", "case": case, "language": "en", "crop": preset.name,
                      "baseline": {k: round(v, 1) for k, v in wanted.items()}, "schema": answer_schema()}}


def lam_rows(crop: str, seeds, languages: tuple[str, ...], rng: random.Random) -> list[dict]:
    """A teaching set for the crop's action model: each seed's state with the baseline's answer, and for a
    training seed also a counterfactual state (English: the farm controller asks in English)."""
    preset, rows = PRESETS[crop], []
    for seed in seeds:
        day, period = scenario(seed)
        seen, history, forecast, positions, wanted = teaching_day(crop, day)[period]
        case = f"{crop}-{day.isoformat()}-{period:02d}"
        rows.append(lam_row(preset, seen, history, forecast, positions, wanted, case))
        if seed < HELD_OUT_SEED_OFFSET:
            moved, moved_positions = counterfactual(seen, positions, rng)
            # the slab water is not moved, so irrigation stays what the day's baseline (with its hysteresis) said
            label = {**BaselineController(preset).propose(moved), IRRIGATION: wanted[IRRIGATION]}
            rows.append(lam_row(preset, moved, history, forecast, moved_positions, label, case + "-counterfactual"))
    return rows


tomato_rows = functools.partial(lam_rows, "tomato")
lettuce_rows = functools.partial(lam_rows, "lettuce")


def check_lam(output: str, check: dict) -> list[str]:
    """Where the model's answer departs from the baseline's (empty: it agrees on every actuator)."""
    try:
        proposal, _ = parse_answer(output)
    except LamError as exc:
        return [f"unusable: {exc}"]
    return departures(proposal, check["baseline"])


def departures(proposal: dict[str, float], wanted: dict[str, float]) -> list[str]:
    """Each tool on which `proposal` departs from the baseline's `wanted`: not called, the other side of an on/off,
    or more than one step (10 points) away from the value taught for it (the baseline's, in steps of 10)."""
    found = []
    for tool in TOOLS.values():
        target = VALUE_STEP * round(float(wanted[tool.actuator]) / VALUE_STEP)
        if tool.actuator not in proposal:
            found.append(f"{tool.name} not called")
            continue
        got = float(proposal[tool.actuator])
        same = (got >= 50.0) == (target >= 50.0) if ACTUATORS[tool.actuator].binary else \
            abs(got - target) <= VALUE_STEP
        if not same:
            found.append(f"{tool.name} {got:g} where the baseline proposes {target:g}")
    return found
