"""SDS units: COLREG classification (and its invariance), scenario files, the 22 Imazu cases closed-loop in process,
and the assess command's refusals (through ROS: ros/test_sds_ros.py)."""
import json
import math
import subprocess
import sys
from dataclasses import replace

import pytest

from helpers.colreg import check_run
from tango2_ros.errors import UserError
from tango2_ros.sds.colreg import ColregParameters, Navigator, Target, assess, swap_hold, unfit_inputs
from tango2_ros.sds.geometry import Kinematics, cpa, to_geographic
from tango2_ros.sds.scenario import BUILTIN, ShipSpec, load_scenario, parse_scenario
from tango2_ros.sds.simulator import initial_assessment, simulate

OWN = Kinematics(0.0, 0.0, 0.0, 12.0)
PARAMS = ColregParameters()
TANGO2 = [sys.executable, "-m", "tango2_ros.cli", "sds"]


@pytest.mark.parametrize("target, category, visibility, encounter, role, rules", [
    (Kinematics(6, 0, 180, 12), "power-driven", 10, "head-on", "give-way", (14,)),
    (Kinematics(6, 6, 270, 12), "power-driven", 10, "crossing-give-way", "give-way", (15, 16)),
    (Kinematics(6, -6, 90, 12), "power-driven", 10, "crossing-stand-on", "stand-on", (15, 17)),
    (Kinematics(2, 0, 0, 6), "power-driven", 10, "overtaking", "give-way", (13,)),
    (Kinematics(-3, 0, 0, 18), "power-driven", 10, "overtaken", "stand-on", (13, 17)),
    (Kinematics(0, 4, 180, 12), "power-driven", 10, "safe", "none", ()),
    (Kinematics(6, -6, 90, 12), "fishing", 10, "crossing-stand-on", "give-way", (18,)),
    (Kinematics(6, 0, 180, 6), "sailing", 10, "head-on", "give-way", (18,)),
    (Kinematics(-3, 0, 0, 18), "sailing", 10, "overtaken", "stand-on", (13, 17)),  # rule 13 prevails over 18
    (Kinematics(6, 0, 180, 12), "power-driven", 0.5, "head-on", "none", (19,)),
])
def test_classification(target, category, visibility, encounter, role, rules):
    a = assess(OWN, Target("T", target, category), PARAMS, visibility)
    assert (a.encounter, a.role, a.rules) == (encounter, role, rules)


def test_cpa_and_tcpa():
    distance_nm, minutes = cpa(OWN, Kinematics(6, 0, 180, 12))
    assert distance_nm == pytest.approx(0.0, abs=1e-9) and minutes == pytest.approx(15.0)
    assert cpa(OWN, Kinematics(0, 3, 0, 12)) == (pytest.approx(3.0), 0.0)  # no relative motion


def _rotated(scenario, angle_deg, shift):
    """The whole scenario turned by angle_deg about the origin and moved by shift (NM north, east)."""
    a = math.radians(angle_deg)

    def move(k):
        north = k.north_nm * math.cos(a) - k.east_nm * math.sin(a) + shift[0]
        east = k.north_nm * math.sin(a) + k.east_nm * math.cos(a) + shift[1]
        return Kinematics(north, east, (k.course_deg + angle_deg) % 360, k.speed_kn)

    goal = move(Kinematics(*scenario.goal, 0, 0))
    return replace(scenario, own=replace(scenario.own, start=move(scenario.own.start)), goal=(goal.north_nm, goal.east_nm),
                   targets=tuple(replace(t, start=move(t.start)) for t in scenario.targets))


@pytest.mark.parametrize("name", [n for n in BUILTIN])
def test_classification_is_invariant_to_rotation_translation_and_lat_lon(name):
    scenario = BUILTIN[name]
    reference = [(r["encounter"], r["role"], r["rules"], round(r["cpa_nm"], 2)) for r in initial_assessment(scenario, PARAMS)]
    for angle, shift in ((37.0, (3.3, -7.1)), (180.0, (0.0, 0.0)), (271.5, (-20.0, 15.0))):
        turned = initial_assessment(_rotated(scenario, angle, shift), PARAMS)
        assert [(r["encounter"], r["role"], r["rules"], round(r["cpa_nm"], 2)) for r in turned] == reference
    origin = (35.1, 129.05)  # off Busan
    as_lat_lon = {
        "name": name, "visibility_nm": scenario.visibility_nm, "origin": {"lat": origin[0], "lon": origin[1]},
        "own_ship": {**_lat_lon(scenario.own.start, origin), "course_deg": scenario.own.start.course_deg,
                     "speed_kn": scenario.own.start.speed_kn,
                     "goal": _lat_lon(Kinematics(*scenario.goal, 0, 0), origin)},
        "targets": [{"id": t.id, **_lat_lon(t.start, origin), "course_deg": t.start.course_deg,
                     "speed_kn": t.start.speed_kn, "category": t.category} for t in scenario.targets],
    }
    rows = initial_assessment(parse_scenario(as_lat_lon), PARAMS)
    assert [(r["encounter"], r["role"], r["rules"], round(r["cpa_nm"], 2)) for r in rows] == reference


def _lat_lon(k, origin):
    lat, lon = to_geographic(k.north_nm, k.east_nm, *origin)
    return {"lat": lat, "lon": lon}


@pytest.mark.parametrize("change, words", [
    ({"targets": [{"id": "A", "north_nm": 1, "east_nm": 1, "course_deg": 0, "speed_kn": 5, "category": "whale"}]},
     "category 'whale'"),
    ({"own_ship": {"north_nm": 0, "east_nm": 0, "course_deg": 0, "speed_kn": 12, "goal": [1, 2]}}, "goal must be"),
    ({"own_ship": {"north_nm": 0, "east_nm": 0, "course_deg": 0, "speed_kn": 99, "goal": {"north_nm": 1, "east_nm": 0}}},
     "speed_kn must be a number in [0, 60]"),
    ({"targets": [{"id": "A", "lat": 35, "lon": 129, "course_deg": 0, "speed_kn": 5}]}, "needs an origin"),
    ({"targets": [{"id": "A", "north_nm": "far", "east_nm": 1, "course_deg": 0, "speed_kn": 5}]}, "north_nm"),
    ({"targets": [{"id": "A", "north_nm": 1, "east_nm": 1, "course_deg": 0, "speed_kn": 5}] * 2}, "unique"),
    ({"wind": 5}, "unknown key(s) wind"),
    ({"visibility_nm": -1}, "visibility_nm"),
])
def test_bad_scenarios_are_refused_with_the_field_named(change, words):
    data = {"name": "x", "own_ship": {"north_nm": -6, "east_nm": 0, "course_deg": 0, "speed_kn": 12,
                                      "goal": {"north_nm": 6, "east_nm": 0}}, "targets": []}
    data.update(change)
    with pytest.raises(UserError) as error:
        parse_scenario(data, "case.yaml")
    assert "case.yaml" in str(error.value) and words in str(error.value), str(error.value)


def test_a_scenario_without_a_goal_holds_the_present_course(tmp_path):
    data = {"name": "x", "duration_s": 1800, "own_ship": {"north_nm": 1, "east_nm": 2, "course_deg": 90,
                                                          "speed_kn": 10},
            "targets": [{"id": "A", "north_nm": 1, "east_nm": 6, "course_deg": 270, "speed_kn": 10}]}
    scenario = parse_scenario(data, "case.yaml")
    assert not scenario.goal_given
    assert scenario.goal == pytest.approx((1.0, 12.0))  # due east, twice the half hour's run
    (tmp_path / "case.yaml").write_text(json.dumps(data))
    result = subprocess.run([*TANGO2, "assess", str(tmp_path / "case.yaml"), "--json"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "holding the present course" in result.stderr
    assert json.loads(result.stdout)["targets"][0]["encounter"] == "head-on"


def test_a_target_at_zero_range_is_a_risk_and_the_navigator_acts():
    navigator = Navigator(PARAMS)
    decision = navigator.decide(OWN, (6.0, 0.0), [Target("T", Kinematics(0.0, 0.0, 90.0, 5.0))])
    assert decision.state == "altering" and decision.assessments[0].risk


def test_a_manoeuvre_or_a_close_give_way_vessel_holds_model_swaps():
    """The swap window of the ship: closed while own ship manoeuvres or must give way to a vessel within range."""
    navigator = Navigator(PARAMS, cruise_speed_kn=12.0)
    far = navigator.decide(OWN, (20.0, 0.0), [Target("T1", Kinematics(30.0, 0.0, 180.0, 12.0))])
    assert far.state == "route" and swap_hold(far, PARAMS.swap_hold_range_nm) == ""
    altering = navigator.decide(OWN, (20.0, 0.0), [Target("T1", Kinematics(6.0, 0.0, 180.0, 12.0))])
    assert altering.state == "altering" and swap_hold(altering, 3.0) == "own ship is altering for T1"
    give_way = replace(altering.assessments[0], target_id="T2", distance_nm=2.5)
    on_route = replace(far, assessments=(give_way, replace(give_way, target_id="T3", role="stand-on")))
    assert swap_hold(on_route, 3.0) == "giving way to T2 within 3 NM"  # a stand-on vessel is no reason
    assert swap_hold(on_route, 2.0) == "" and swap_hold(on_route, 0.0) == ""  # 0: only manoeuvres hold
    assert swap_hold(replace(on_route, assessments=(replace(give_way, risk=False),)), 3.0) == ""


def test_inputs_unfit_for_a_decision_say_why_and_old_data_is_never_acted_on():
    fit = dict(position_usable=True, position_age_s=0.5, picture_known=True, picture_lag_s=0.2, picture_silent_s=0.2,
               stale_after_s=3.0)
    assert unfit_inputs(**fit) == ""
    assert "invalid" in unfit_inputs(**{**fit, "position_usable": False})
    assert "5.0 s old" in unfit_inputs(**{**fit, "position_age_s": 5.0})
    assert "no target picture" in unfit_inputs(**{**fit, "picture_known": False})
    # a picture older than the fix is stale only when it has also not been heard from lately
    assert unfit_inputs(**{**fit, "picture_lag_s": 10.0}) == ""
    assert "stale" in unfit_inputs(**{**fit, "picture_lag_s": 10.0, "picture_silent_s": 10.0})


@pytest.mark.parametrize("name", [n for n in BUILTIN if n.startswith("imazu")])
def test_imazu_in_process(name):
    scenario = BUILTIN[name]
    navigator = Navigator(PARAMS, cruise_speed_kn=12.0)
    result = simulate(scenario, lambda _t, own, targets: navigator.decide(own, scenario.goal, targets), PARAMS)
    check_run(result.as_dict())


def test_assess_cli_and_bad_input():
    done = subprocess.run([*TANGO2, "assess", "imazu-05", "--json"], capture_output=True, text=True, timeout=60)
    data = json.loads(done.stdout)
    assert [t["encounter"] for t in data["targets"]] == ["head-on", "crossing-give-way"]
    missing = subprocess.run([*TANGO2, "assess", "atlantis.yaml"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "neither a file nor built in" in missing.stderr
    assert load_scenario("imazu-03").targets[0] == ShipSpec("TS1", Kinematics(-4.2, 0, 0, 8.4))
    for bad, words in ((["imazu-01", "imazu-02", "--record", "x.mcap"], "one scenario"),
                       (["imazu-01", "--record", "/nonexistent/x.mcap"], "does not exist"),
                       (["imazu-01", "--in-process", "--record", "x.mcap"], "need the ROS nodes")):
        refused = subprocess.run([*TANGO2, "simulate", *bad], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and words in refused.stderr, refused.stderr


def _deployed_llm() -> str:
    """NAME@VERSION the sds profile's model manager deploys to its llm slot: what the sds commands use."""
    from tango2_ros.bringup.profiles import load_profile

    manager = next(n for n in load_profile("sds").nodes if n.executable == "model_manager")
    return f"{manager.parameters['llm.model']}@{manager.parameters['llm.version']}"


def test_describe_gives_what_the_model_wrote_and_what_the_check_made_of_it():
    done = subprocess.run([*TANGO2, "describe", "imazu-05", "rule18-fishing-crossing-port", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["scenario"] for r in rows] == ["imazu-05", "rule18-fishing-crossing-port"]
    for row in rows:
        assert set(row) == {"scenario", "lang", "model", "raw_text", "text", "corrections", "latency_s"}
        assert row["model"] == _deployed_llm() and row["lang"] == "en" and row["text"] and row["raw_text"]
        # every target the decision names is in the checked text, whatever the model wrote
        assert all(t in row["text"] for t in (("TS1", "TS2") if row["scenario"] == "imazu-05" else ("F1",)))
    korean = subprocess.run([*TANGO2, "describe", "imazu-05", "--lang", "ko", "--json"], capture_output=True,
                            text=True, timeout=300)
    row = json.loads(korean.stdout)
    assert row["model"] == _deployed_llm() and row["lang"] == "ko" and row["raw_text"]
    assert "TS1" in row["text"] and "TS2" in row["text"] and "해리" in row["text"]
    for bad, words in ((["atlantis"], "neither a file nor built in"), (["imazu-05", "--model", "none.gguf"],
                                                                        "no such file")):
        refused = subprocess.run([*TANGO2, "describe", *bad], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and words in refused.stderr, refused.stderr


def test_ask_answers_from_the_picture_and_refuses_what_cannot_be_asked():
    done = subprocess.run([*TANGO2, "ask", "imazu-05", "Which vessels must we give way to?", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert set(row) == {"question", "lang", "model", "raw_answer", "answer", "ids", "kind", "corrections"}
    assert row["kind"] == "give-way" and row["model"] == _deployed_llm() and row["raw_answer"]
    # whatever the model wrote, the checked answer names exactly the vessels we give way to
    assert row["ids"] == ["TS1", "TS2"] and all(vessel in row["answer"] for vessel in row["ids"])
    for bad, words in ((["imazu-05", "What is TS9's CPA?"], "no vessel TS9 in the present picture"),
                       (["imazu-05", "  "], "the question is empty"),
                       (["imazu-05", "Where is TS1?", "--lang", "fr"], "invalid choice: 'fr'")):
        refused = subprocess.run([*TANGO2, "ask", *bad], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and words in refused.stderr, refused.stderr
