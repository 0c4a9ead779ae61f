"""SDF without ROS: the safety supervisor's rules (each interlock, limits, hostile proposals, a fuzz that no output
ever breaks an interlock), the LAM's answer parsing, the GreenLight plant stepped in closed loop (against
GreenLight's own solver), and whole simulated days with the baseline, random and LAM controllers."""
import datetime
import json
import math
import random
import re

import pytest

from tango2_ros.errors import UserError
from tango2_ros.sdf.actuators import (ACTUATORS, CO2_DOSING, HEATING, IRRIGATION, LIGHTS, THERMAL_SCREEN, VENT,
                                      all_off)
from tango2_ros.sdf.controllers import BaselineController, RandomController
from tango2_ros.sdf.crops import PRESETS
from tango2_ros.sdf.deciding import FALLBACK, LamController, LocalDecider
from tango2_ros.sdf.lam import TOOLS, LamError, parse_answer
from tango2_ros.sdf.supervisor import CLAMPED, REJECTED, Conditions, SafetySupervisor, broken_interlocks

TOMATO = PRESETS["tomato"]
WARM_DAY = Conditions(air_temperature_c=24.0, is_day=True, global_radiation_w_m2=200.0)
COLD_NIGHT = Conditions(air_temperature_c=15.0, is_day=False, global_radiation_w_m2=0.0)


def command(**values):
    return {**all_off(), **values}


@pytest.mark.parametrize("proposal, conditions, words", [
    ({CO2_DOSING: 50.0}, COLD_NIGHT, "CO2 dosing at night"),
    ({CO2_DOSING: 50.0, VENT: 60.0}, WARM_DAY, "CO2 dosing with vents open"),
    ({VENT: 30.0}, COLD_NIGHT, "vents open below the heating set-point"),
    ({HEATING: 50.0, VENT: 40.0}, WARM_DAY, "heating and cooling"),
    ({LIGHTS: 100.0}, Conditions(22.0, True, 600.0), "lamps on in sunlight"),
])
def test_each_interlock_is_enforced_with_its_reason(proposal, conditions, words):
    supervisor = SafetySupervisor(TOMATO)
    supervisor.current = command(vent=proposal.get(VENT, 0.0))  # no rate limit in the way
    verdict = supervisor.review(proposal, conditions, now_s=0.0)
    assert verdict.verdict == CLAMPED and any(words in r for r in verdict.reasons), verdict.reasons
    assert broken_interlocks(verdict.command, conditions, TOMATO) == []
    assert broken_interlocks(command(**proposal), conditions, TOMATO)  # the proposal itself broke it


def test_heating_and_cooling_yields_to_what_the_temperature_asks():
    cold = SafetySupervisor(TOMATO).review({HEATING: 80.0, VENT: 40.0}, Conditions(19.0, True, 100.0), 0.0)
    warm = SafetySupervisor(TOMATO).review({HEATING: 80.0, VENT: 40.0}, Conditions(25.0, True, 100.0), 0.0)
    assert (cold.command[HEATING], cold.command[VENT]) == (80.0, 10.0)  # heat, keep a humidity gap
    assert (warm.command[HEATING], warm.command[VENT]) == (0.0, 40.0)  # ventilate, do not heat


@pytest.mark.parametrize("proposal, words", [
    ({"self_destruct": 100.0}, "unknown actuator"), ({VENT: math.nan}, "not a finite number"),
    ({HEATING: math.inf}, "not a finite number"), ({VENT: "open"}, "not a finite number"),
    ({LIGHTS: True}, "not a finite number"),
])
def test_hostile_proposals_are_rejected_and_the_present_command_stays(proposal, words):
    supervisor = SafetySupervisor(TOMATO)
    supervisor.current = command(heating=40.0)
    verdict = supervisor.review(proposal, WARM_DAY, 0.0)
    assert verdict.verdict == REJECTED and words in verdict.reasons[0]
    assert verdict.command == command(heating=40.0)  # warm day: heating 40 % with vents shut is allowed
    assert broken_interlocks(verdict.command, WARM_DAY, TOMATO) == []


def test_limits_rates_and_switching_durations():
    supervisor = SafetySupervisor(TOMATO)
    first = supervisor.review({VENT: 250.0, THERMAL_SCREEN: -5.0, IRRIGATION: 70.0}, WARM_DAY, 0.0)
    assert first.command[VENT] == 100.0 and first.command[THERMAL_SCREEN] == 0.0 and first.command[IRRIGATION] == 100.0
    assert first.verdict == CLAMPED and first.clamps == 3
    closing = supervisor.review({VENT: 0.0}, WARM_DAY, 60.0)  # 10 %/min: one minute later 90 %
    assert closing.command[VENT] == pytest.approx(90.0) and "rate limit" in closing.reasons[0]
    assert supervisor.review({}, WARM_DAY, 1000.0).command[IRRIGATION] == 0.0  # 15 min maximum on
    assert supervisor.review({IRRIGATION: 100.0}, WARM_DAY, 1300.0).command[IRRIGATION] == 0.0  # 10 min off first
    assert supervisor.review({IRRIGATION: 100.0}, WARM_DAY, 1700.0).command[IRRIGATION] == 100.0
    lamps = SafetySupervisor(TOMATO)
    lamps.review({LIGHTS: 100.0}, COLD_NIGHT, 0.0)
    held = lamps.review({LIGHTS: 0.0}, COLD_NIGHT, 600.0)  # HPS lamps: 30 minutes on at least
    assert held.command[LIGHTS] == 100.0 and "minimum" in held.reasons[0]


def test_emergency_stop_and_blind_sensors():
    supervisor = SafetySupervisor(TOMATO)
    supervisor.review({HEATING: 80.0, THERMAL_SCREEN: 100.0}, COLD_NIGHT, 0.0)
    blind = supervisor.review({HEATING: 100.0, VENT: 100.0, LIGHTS: 100.0}, None, 300.0)
    assert blind.verdict == REJECTED and "safe state" in blind.reasons[0]
    assert blind.command == command(heating=30.0, thermal_screen=100.0)
    supervisor.emergency_stop = True
    stopped = supervisor.review({HEATING: 100.0}, COLD_NIGHT, 600.0)
    assert stopped.command == all_off() and "emergency stop" in stopped.reasons[0]


def test_fuzz_no_command_ever_breaks_an_interlock():
    rng = random.Random(7)
    hostile = RandomController(seed=3)
    for crop in PRESETS.values():
        supervisor = SafetySupervisor(crop)
        for step in range(3000):
            conditions = Conditions(rng.uniform(-5.0, 45.0), rng.random() < 0.5, rng.choice((0.0, 300.0, 900.0)))
            proposal = hostile.propose(None) if rng.random() < 0.8 else None
            verdict = supervisor.review(proposal, conditions, step * rng.choice((0.0, 60.0, 300.0)))
            assert broken_interlocks(verdict.command, conditions, crop) == [], (proposal, conditions, verdict)
            assert set(verdict.command) == set(ACTUATORS)
            assert all(0.0 <= v <= 100.0 for v in verdict.command.values())


@pytest.mark.parametrize("text, words", [
    ("not json", "not JSON"), ('{"rationale": "x"}', "no list of tool calls"), ('{"calls": []}', "no list"),
    ('{"calls": [{"tool": "open_airlock", "value": 5}]}', "unknown tool"),
    ('{"calls": [{"tool": "set_vents", "value": 140}]}', "outside 0-100"),
    ('{"calls": [{"tool": "set_vents", "value": "wide"}]}', "not a number"),
    ('{"calls": ["set_vents"]}', "not an object"),
])
def test_lam_answers_that_cannot_be_used_are_refused_with_the_reason(text, words):
    with pytest.raises(LamError, match=words):
        parse_answer(text)


def test_lam_answer_becomes_a_proposal():
    proposal, rationale = parse_answer(json.dumps({"calls": [{"tool": "set_vents", "value": 20},
                                                             {"tool": "set_lamps", "value": 70}], "rationale": " warm "}))
    assert proposal == {VENT: 20.0, LIGHTS: 100.0} and rationale == "warm"


# -- the plant ------------------------------------------------------------------------------------------------
def test_the_weather_period_and_control_period_are_checked():
    from tango2_ros.sdf.greenhouse import Greenhouse

    with pytest.raises(UserError, match="Bleiswijk weather covers 2009-10-20"):
        Greenhouse(TOMATO, datetime.date(2012, 1, 1), days=1)
    with pytest.raises(UserError, match="control period"):
        Greenhouse(TOMATO, None, days=1, period_s=5.0)


def test_stepping_reproduces_greenlights_own_solver_and_energy_is_accounted():
    """Held actuators integrated period by period must match GreenLight's whole-run solve of the same inputs."""
    from tango2_ros.sdf.greenhouse import Greenhouse, greenlight_reference

    hours, held = 6, command(heating=100.0, thermal_screen=100.0)
    plant = Greenhouse(TOMATO, None, days=hours / 24)
    plant.apply(held)
    temperatures = []
    while not plant.finished:
        plant.advance()
        temperatures.append(plant.climate().air_temperature_c)
    assert plant.totals["heating_mj_m2"] == pytest.approx(300.0 * hours * 3600 / 1e6)  # 300 W/m2 for 6 h
    expected = greenlight_reference(hours, held)
    assert len(temperatures) == hours * 12
    assert max(abs(a - b) for a, b in zip(temperatures, expected[1:])) < 0.05
    assert temperatures[-1] > temperatures[0] + 1.0  # the boiler did warm the greenhouse


@pytest.fixture(scope="module")
def one_day():
    return datetime.date(2009, 11, 2)


def _day(controller_name, start, days=1.0, records=None):
    from tango2_ros.sdf.greenhouse import Greenhouse
    from tango2_ros.sdf.simulation import run

    plant = Greenhouse(TOMATO, start, days=days)
    controller = BaselineController(TOMATO) if controller_name == "baseline" else RandomController(seed=11)
    return run(plant, LocalDecider(TOMATO, controller), controller_name,
               on_record=None if records is None else records.append)


def test_a_day_with_the_baseline_keeps_the_climate_in_band(one_day):
    records = []
    report = _day("baseline", one_day, records=records)
    assert report["interlock_violations"] == 0 and report["proposals"] == 288
    assert report["temp_in_band_pct"] > 85 and report["heating_mj_m2"] > 0
    assert report["steered_in_band_pct"] == {"temperature": report["temp_in_band_pct"],  # no watchdog periods
                                             "humidity": report["rh_in_band_pct"], "co2": report["co2_in_band_pct"]}
    records = [json.loads(json.dumps(r)) for r in records]  # the log is JSON
    assert len(records) == 288
    assert set(records[0]) >= {"t_s", "state", "proposal", "verdict", "reasons", "command", "outcome", "in_band"}
    assert records[1]["t_s"] == 300.0 and records[0]["state"]["hour"] == 0.0


def test_a_day_of_the_adversarial_controller_never_breaks_an_interlock_at_the_actuators(one_day):
    report = _day("random", one_day)
    assert report["interlock_violations"] == 0, report["violations_by_interlock"]
    assert report["supervisor_rejections"] > 5 and report["supervisor_clamps"] > 50


def test_the_lam_in_process_proposes_through_the_schema_or_the_watchdog_takes_over(one_day):
    from tango2_ros.core.runtime.default_models import default_llm_path
    from tango2_ros.core.runtime.llm import LlmOptions, LlmRuntime
    from tango2_ros.sdf.greenhouse import Greenhouse
    from tango2_ros.sdf.simulation import observation, run

    runtime = LlmRuntime(default_llm_path(), LlmOptions(n_parallel=1, n_ctx_per_seq=1024))
    try:
        plant = Greenhouse(TOMATO, one_day, days=6 * 300 / 86400)
        lam = LamController(runtime, TOMATO, lambda: [(t, sun) for _, t, sun in plant.forecast()], budget_s=60.0)
        report = run(plant, LocalDecider(TOMATO, lam), "lam")
        assert report["interlock_violations"] == 0
        assert report["proposals"] + report["fallback_s"] / 300 == 6  # each period: a proposal or the fallback
        steered = report["steered_in_band_pct"]
        assert steered["temperature"] <= report["temp_in_band_pct"] and steered["humidity"] <= report["rh_in_band_pct"]
        late = LamController(runtime, TOMATO, lambda: [], budget_s=0.0)  # every answer is late
        step = LocalDecider(TOMATO, late)(0.0, plant.climate(), observation(plant, plant.climate()))
        assert step.verdict == FALLBACK and "late" in step.reasons[0]
    finally:
        runtime.close()


# -- continual learning ---------------------------------------------------------------------------------------
def test_decision_logs_become_a_fine_tuning_set_taught_by_outcome(tmp_path, one_day):
    from tango2_ros.sdf.learning import build_dataset, read_logs

    records = []
    _day("random", one_day, days=0.25, records=records)
    log = tmp_path / "random.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    read = read_logs([log])
    dataset = build_dataset(read, TOMATO)
    # the adversarial controller's commands never teach, its states are taught by the baseline
    assert dataset.from_approved == 0 and dataset.from_teacher == len(read) == 72
    for example in dataset.train:
        answer = json.loads(example["messages"][1]["content"])
        assert list(answer) == ["rationale", "calls"] and [c["tool"] for c in answer["calls"]] == list(TOOLS)
        assert all(c["value"] in range(0, 101, 10) for c in answer["calls"])
        # the rationale restates the prompt's errors, so that each value follows the words that decide it
        assert all(part.removeprefix("RH ").removeprefix("CO2 ") in example["messages"][0]["content"]
                   for part in answer["rationale"].split("; "))
    baseline = []
    _day("baseline", one_day, days=0.25, records=baseline)
    taught = build_dataset(baseline, TOMATO)
    assert taught.from_approved > 36  # the baseline's in-band decisions teach themselves
    # counterfactual states reach where the baseline's own log never goes, each answered by the baseline's rule
    logged = [r["state"]["air_temperature_c"] for r in baseline]
    heating_at = {}
    for example in taught.train:
        inside = float(re.search(r"Inside (-?[\d.]+) C", example["messages"][0]["content"]).group(1))
        heating_at[inside] = json.loads(example["messages"][1]["content"])["calls"][0]["value"]
    assert any(t < min(logged) - 3 and heating == 100 for t, heating in heating_at.items())
    assert any(t > max(logged) + 3 and heating == 0 for t, heating in heating_at.items())
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(records[0]) + "\n{not json\n")
    with pytest.raises(UserError, match="bad.jsonl:2: not JSON"):
        read_logs([bad])
    bad.write_text(json.dumps({"state": {}}) + "\n")
    with pytest.raises(UserError, match="not a decision-log record"):
        read_logs([bad])


def test_the_publication_gate_wants_better_temperature_and_no_regression_below_the_baseline():
    from tango2_ros.sdf.learning import beats

    def run(temp, rh, co2=100.0, fallback_s=0.0, violations=0, steered=None):
        steered = steered or {"temperature": temp, "humidity": rh, "co2": co2}
        return {"temp_in_band_pct": temp, "rh_in_band_pct": rh, "co2_in_band_pct": co2, "fallback_s": fallback_s,
                "interlock_violations": violations, "steered_in_band_pct": steered}

    cold_current, baseline = run(1.0, 100.0), run(99.0, 96.9)
    assert beats(run(95.0, 96.0), cold_current, baseline) == (True, [])  # as good as the baseline
    assert not beats(run(95.0, 96.0), cold_current)[0]  # without the reference, humidity 100 -> 96 regresses
    for candidate, words in ((run(1.0, 100.0), "is not above"), (run(95.0, 90.0), "humidity in band fell to 90.0"),
                             (run(95.0, 96.0, co2=50.0), "co2 in band"), (run(95.0, 96.0, fallback_s=900), "fallback"),
                             (run(95.0, 96.0, violations=1), "interlock")):
        better, reasons = beats(candidate, cold_current, baseline)
        assert not better and any(words in reason for reason in reasons), reasons
    # a current model mostly under the watchdog: the baseline's CO2 in band is not its own and blocks nothing
    silent_current = run(47.0, 46.0, co2=84.0, fallback_s=50400, steered={"temperature": 10, "humidity": 20, "co2": 20})
    assert beats(run(100.0, 100.0, co2=66.7), silent_current, baseline) == (True, [])
    assert not beats(run(100.0, 100.0, co2=15.0), silent_current, baseline)[0]


def test_simulate_and_learn_refuse_bad_arguments_with_the_reason(tmp_path, one_day):
    import subprocess
    import sys

    records = []
    _day("baseline", one_day, days=0.05, records=records)
    log, broken = tmp_path / "field.jsonl", tmp_path / "broken.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    broken.write_text("{not json\n")
    lam = ["simulate", "--controller", "lam", "--in-process", "--spin-up-h", "0", "--days", "0.01", "--model"]
    cases = ((["simulate", "--days", "0"], "--days 0: use more than 0"),
             (["simulate", "--days", "31"], "at most 30"),
             (["simulate", "--start", "2009-13-01"], "'2009-13-01' is not a date"),
             (["simulate", "--start", "2011-01-01"], "the Bleiswijk weather covers"),
             (["simulate", "--spin-up-h", "-1"], "--spin-up-h -1"),
             (["simulate", "--period-s", "5"], "control period 5.0 s"),
             (["simulate", "--log", str(tmp_path / "absent" / "x.jsonl")], "does not exist"),
             (["simulate", "--controller", "baseline", "--model", "lam-tomato@1.0.0"], "--model is for --controller lam"),
             ([*lam, str(tmp_path / "absent.gguf")], "no such file"),
             ([*lam, "lam-nothing@1.0.0"], "model lam-nothing@1.0.0"),
             (["learn", str(tmp_path / "absent.jsonl"), "--held-out", "2009-12-10"], "cannot read"),
             (["learn", str(broken), "--held-out", "2009-12-10"], "broken.jsonl:1: not JSON"),
             (["learn", str(log), "--held-out", "tomorrow"], "'tomorrow' is not a date"),
             (["learn", str(log), "--held-out", "2009-12-10", "--steps", "0"], "--steps 0"),
             (["learn", str(log), "--held-out", "2009-12-10", "--held-out-days", "-1"], "--held-out-days -1"),
             (["learn", str(log), "--held-out", records[0]["time"][:10]], "is in the training logs"),
             (["learn", str(log), "--held-out", "2010-02-07"], "the Bleiswijk weather covers"),
             (["learn", str(log), "--held-out", "2009-12-10", "--period-s", "1"], "control period 1.0 s"))
    for args, words in cases:
        done = subprocess.run([sys.executable, "-m", "tango2_ros.cli", "sdf", *args], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr and words in done.stderr, (args, done.stderr)


@pytest.mark.slow
def test_one_continual_learning_cycle_from_logs_to_a_published_or_refused_model(tmp_path, one_day):
    """Logs of a baseline day -> LoRA fine-tune of SmolLM2 -> both models on a held-out morning -> the gate."""
    import os
    import subprocess
    import sys

    from tango2_ros.core.artifacts.stores import LocalStore
    from tango2_ros.sdf.learning import beats, read_logs

    models = tmp_path / "models"
    env = {**os.environ, "TANGO2_MODELS_DIR": str(models)}
    tango2 = [sys.executable, "-m", "tango2_ros.cli"]
    subprocess.run([*tango2, "models", "import-defaults"], env=env, check=True, capture_output=True, timeout=120)
    log = tmp_path / "field.jsonl"
    subprocess.run([*tango2, "sdf", "simulate", "--in-process", "--days", "0.5", "--start", "2009-11-03",
                    "--spin-up-h", "0", "--log", str(log)], env=env, check=True, capture_output=True, timeout=300)
    done = subprocess.run([*tango2, "sdf", "learn", str(log), "--held-out", "2009-11-25", "--held-out-days", "0.08",
                           "--steps", "10", "--period-s", "3600", "--version", "1.1.0", "--work",
                           str(tmp_path / "work"), "--json"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["dataset"]["train"] > 100 and len(report["losses"]) == 10
    assert report["builder"]["q8_0"]["json_valid"] >= 0.5  # the fine-tuned model answers in the tools' format
    assert report["current"]["proposals"] + report["current"]["fallback_s"] / 3600 == 2
    for run in ("reference", "current", "candidate"):  # each held-out run leaves its decision log
        logged = read_logs([tmp_path / "work" / f"held-out-{run}.jsonl"])
        assert len(logged) == 2 and {r["controller"] for r in logged} == {"baseline" if run == "reference" else "lam"}
    better, _ = beats(report["candidate"], report["current"], report["reference"])
    versions = LocalStore(models / "store").versions("lam-tomato")
    assert (report["published"] == "lam-tomato@1.1.0" and versions == ["1.1.0"]) if better else \
        (report["published"] is None and versions == [] and report["decision"].startswith("kept"))
