"""The farm's teacher without a simulation: the split by day, the taught answer, and the check against the
baseline (tango2_ros.sdf.teaching)."""
import json
import random

from tango2_ros.builder.teachers import HELD_OUT_SEED_OFFSET, TEACHERS
from tango2_ros.sdf.controllers import BaselineController, Observation
from tango2_ros.sdf.crops import PRESETS
from tango2_ros.sdf.teaching import (HELD_OUT_DAYS, PERIODS_PER_DAY, check_lam, lam_row, scenario,
                                     training_days)

TOMATO = PRESETS["tomato"]


def _state(**changes) -> Observation:
    values = dict(hour=10.0, air_temperature_c=17.0, relative_humidity_pct=80.0, co2_ppm=700.0,
                  outside_temperature_c=2.0, global_radiation_w_m2=120.0, substrate_water_pct=70.0, is_day=True)
    return Observation(**{**values, **changes})


def test_training_and_held_out_seeds_never_share_a_day():
    held_out = set(HELD_OUT_DAYS.values())
    assert not held_out & set(training_days())
    taught = {scenario(seed)[0] for seed in range(0, 40 * PERIODS_PER_DAY, 7)}
    judged = [scenario(HELD_OUT_SEED_OFFSET + i) for i in range(30)]
    assert len(taught) == 40 and not taught & held_out
    assert {day for day, _ in judged} == held_out  # every held-out day, periods spread over each
    assert len(set(judged)) == 30 and len({period for _, period in judged}) == 10


def test_the_teachers_answer_passes_its_check_and_departures_are_named():
    seen = _state()
    wanted = BaselineController(TOMATO).propose(seen)
    row = lam_row(TOMATO, seen, [], [(2.0, 100.0)], {"heating": 0.0}, wanted, "case")
    answer = row["messages"][1]["content"]
    assert check_lam(answer, row["check"]) == []
    assert "in lamp hours 02-18" in row["messages"][0]["content"]
    calls = json.loads(answer)
    calls["calls"] = [c for c in calls["calls"] if c["tool"] != "irrigate"]
    for call in calls["calls"]:
        if call["tool"] == "set_heating":
            call["value"] = (call["value"] + 50) % 100
        if call["tool"] == "set_lamps":
            call["value"] = 100 - call["value"]
    found = check_lam(json.dumps(calls), row["check"])
    assert {f.split()[0] for f in found} == {"set_heating", "set_lamps", "irrigate"}, found
    assert check_lam("no JSON here", row["check"])[0].startswith("unusable")


def _rationale_and_prompt(seen: Observation) -> tuple[str, str]:
    row = lam_row(TOMATO, seen, [], [], {}, BaselineController(TOMATO).propose(seen), "case")
    return json.loads(row["messages"][1]["content"])["rationale"], row["messages"][0]["content"]


def test_the_rationale_gives_the_reason_of_each_conditional_decision_and_the_prompt_the_limits():
    rationale, text = _rationale_and_prompt(_state(hour=1.0, is_day=False, global_radiation_w_m2=0.0))
    assert "lamps off, outside lamp hours; CO2 not dosed in the dark; thermal screen shut" in rationale
    assert "outside lamp hours 02-18" in text and "(under the screen's 10 C)" in text and "(dark, under 50)" in text
    # in the lamp hours of a dark morning the lamps go on, and so CO2 is dosed by the lamps' light
    rationale, text = _rationale_and_prompt(_state(hour=3.0, is_day=False, global_radiation_w_m2=0.0))
    assert "lamps on; CO2 300 ppm below target" in rationale
    rationale, text = _rationale_and_prompt(_state(global_radiation_w_m2=600.0, outside_temperature_c=8.0))
    assert "lamps off, sun too bright;" in rationale and "thermal screen open" in rationale
    assert "(not under the screen's 5 C)" in text and "(strong, over 500)" in text
    rationale, _ = _rationale_and_prompt(_state(air_temperature_c=30.0))
    assert "lamps off, above vents' start; CO2 not dosed, vents open" in rationale


def test_both_crops_have_a_teacher_and_share_the_check():
    assert {"sdf-lam-tomato", "sdf-lam-lettuce"} <= set(TEACHERS)
    assert TEACHERS["sdf-lam-tomato"].checks == TEACHERS["sdf-lam-lettuce"].checks


def test_a_counterfactual_keeps_the_days_irrigation(monkeypatch):
    """The slab water is not moved, so irrigation stays what the day's baseline said (its hysteresis)."""
    from tango2_ros.sdf import teaching

    seen = _state()
    wanted = {**BaselineController(TOMATO).propose(seen), "irrigation": 100.0}
    monkeypatch.setattr(teaching, "teaching_day", lambda crop, day: [(seen, [], [], {"irrigation": 100.0}, wanted)])
    rows = teaching.lam_rows("tomato", [0], ("en",), random.Random(1))
    assert len(rows) == 2 and rows[1]["check"]["case"].endswith("-counterfactual")
    assert rows[1]["check"]["baseline"]["irrigation"] == 100.0
    assert check_lam(rows[1]["messages"][1]["content"], rows[1]["check"]) == []
