"""SDF without ROS, over simulated time: the GreenLight plant stepped in closed loop (against GreenLight's own
solver), whole days with the baseline, random and LAM controllers, the CLI's refusals, and the learning cycle."""
import datetime
import json
import re

import pytest

from tango2_ros.errors import UserError
from tango2_ros.sdf.actuators import all_off
from tango2_ros.sdf.controllers import BaselineController, RandomController
from tango2_ros.sdf.deciding import FALLBACK, LamController, LocalDecider
from tango2_ros.sdf.crops import PRESETS
from tango2_ros.sdf.lam import TOOLS

TOMATO = PRESETS["tomato"]


def command(**values):
    return {**all_off(), **values}

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
        # the rationale restates the prompt's errors, then the conditional decisions in the calls' order, so that
        # each value follows the words that decide it
        errors, decisions = answer["rationale"].split("; lamps ")
        assert all(part.removeprefix("RH ") in example["messages"][0]["content"] for part in errors.split("; "))
        lamps, co2, screen = decisions.split("; ")
        calls = {c["tool"]: c["value"] for c in answer["calls"]}
        assert lamps.startswith("on") == (calls["set_lamps"] == 100)
        assert co2.startswith("CO2 not dosed") <= (calls["dose_co2"] == 0)
        assert co2.startswith("CO2 not dosed") or co2.removeprefix("CO2 ") in example["messages"][0]["content"]
        assert screen == "thermal screen " + ("shut" if calls["set_thermal_screen"] == 100 else "open")
    baseline = []
    _day("baseline", one_day, days=0.25, records=baseline)
    taught = build_dataset(baseline, TOMATO)
    assert taught.from_approved > 36  # the baseline's in-band decisions teach themselves
    # but not a command that kept the climate in band by heating more than the rule (energy counts too)
    judged = [r for r in baseline if r["in_band"]["temperature"] and r["in_band"]["humidity"]][:10]
    wasteful = [{**r, "command": {**r["command"], "heating": 100.0}} for r in judged
                if r["command"]["heating"] < 80]
    assert wasteful and build_dataset(wasteful, TOMATO).from_approved == 0
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
    bad.write_text(json.dumps({**records[0], "crop": "lettuce"}) + "\n")
    with pytest.raises(UserError, match="bad.jsonl:1: a decision of a lettuce greenhouse cannot teach the tomato"):
        read_logs([bad], "tomato")


def test_simulate_and_learn_refuse_bad_arguments_with_the_reason(tmp_path, one_day, capsys):
    """Each refusal is exit 2 with the reason (run in this process: 21 interpreters would take a minute)."""
    from tango2_ros.cli import main

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
             (["simulate", "--controller", "baseline", "--shadow", "lam-tomato@1.0.0"], "--shadow is for --controller lam"),
             ([*lam[:-1], "--shadow", "x@1", "--shadow-decisions", "0"], "--shadow-decisions 0: use 1 to 100000"),
             ([*lam[:-1], "--shadow", "lam-nothing@2.0.0"], "model lam-nothing@2.0.0"),
             (["learn", str(tmp_path / "absent.jsonl"), "--held-out", "2009-12-10"], "cannot read"),
             (["learn", str(broken), "--held-out", "2009-12-10"], "broken.jsonl:1: not JSON"),
             (["learn", str(log), "--held-out", "tomorrow"], "'tomorrow' is not a date"),
             (["learn", str(log), "--held-out", "2009-12-10", "--steps", "0"], "--steps 0"),
             (["learn", str(log), "--held-out", "2009-12-10", "--version", "2.1.0-lora"], "a release MAJOR.MINOR.PATCH"),
             (["learn", str(log), "--held-out", "2009-12-10", "--held-out-days", "-1"], "--held-out-days -1"),
             (["learn", str(log), "--held-out", records[0]["time"][:10]], "is in the training logs"),
             (["learn", str(log), "--held-out", "2010-02-07"], "the Bleiswijk weather covers"),
             (["learn", str(log), "--held-out", "2009-12-10", "--period-s", "1"], "control period 1.0 s"))
    for args, words in cases:
        try:
            code = main(["sdf", *args])
        except SystemExit as exit:  # argparse's own refusals
            code = exit.code
        stderr = capsys.readouterr().err
        assert code == 2 and "Traceback" not in stderr and words in stderr, (args, stderr)


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
    shipped = set(LocalStore(models / "store").versions("lam-tomato"))  # the release in models/releases
    log = tmp_path / "field.jsonl"
    subprocess.run([*tango2, "sdf", "simulate", "--in-process", "--days", "0.5", "--start", "2009-11-03",
                    "--spin-up-h", "0", "--log", str(log)], env=env, check=True, capture_output=True, timeout=300)
    done = subprocess.run([*tango2, "sdf", "learn", str(log), "--held-out", "2009-11-25", "--held-out-days", "0.08",
                           "--steps", "10", "--period-s", "3600", "--spin-up-h", "2", "--version", "1.1.0", "--work",
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
    added = set(LocalStore(models / "store").versions("lam-tomato")) - shipped
    assert (report["published"] == "lam-tomato@1.1.0" and added == {"1.1.0"}) if better else \
        (report["published"] is None and added == set() and report["decision"].startswith("kept"))


def test_a_shadow_action_model_proposes_beside_the_serving_one_and_is_never_applied():
    """`sdf simulate --shadow`: the same model as shadow agrees every time (same prompt, same supervisor state),
    the run is what it is without a shadow, and the shadow is promoted, or retired because its unchecked answer
    would have broken an interlock."""
    import subprocess
    import sys

    def simulate(*extra):
        done = subprocess.run([sys.executable, "-m", "tango2_ros.cli", "sdf", "simulate", "--controller", "lam",
                               "--in-process", "--spin-up-h", "0", "--days", "0.0105", "--json", *extra],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    alone = simulate("--model", "smollm2-135m-instruct@1.0.0")
    shadowed = simulate("--model", "smollm2-135m-instruct@1.0.0", "--shadow", "smollm2-135m-instruct@1.0.0",
                        "--shadow-decisions", "2")
    shadow = shadowed.pop("shadow")
    for report in (alone, shadowed):
        report.pop("wall_s")
    assert shadowed == alone  # the serving path is untouched
    assert shadow["model"] == "smollm2-135m-instruct@1.0.0" and shadow["decisions"] >= 1
    assert shadow["agreement_pct"] == 100.0 and shadow["latency_s_p50"] > 0
    if shadow["would_violate"]:
        assert not shadow["promoted"] and "would have broken a rule" in shadow["retired"], shadow
    else:
        assert shadow["promoted"] and shadow["decisions"] == 2 and not shadow["retired"], shadow
