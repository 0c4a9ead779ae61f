"""SDS: COLREG classification (and its invariance), scenario files, and the Imazu cases closed-loop: all 22 in
process and through the colreg node over ROS 2, one through simulated NMEA sensors, the bridge and the tracker."""
import json
import math
import subprocess
import sys
from dataclasses import replace

import pytest

from tango2_msgs.msg import Target as TargetMsg
from tango2_ros.errors import UserError
from tango2_ros.sds.colreg import ColregParameters, Navigator, Target, assess
from tango2_ros.sds.geometry import Kinematics, cpa, to_geographic
from tango2_ros.sds.scenario import BUILTIN, ShipSpec, load_scenario, parse_scenario
from tango2_ros.sds.simulator import SIM_EPOCH_S, initial_assessment, simulate

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


@pytest.mark.parametrize("name", [n for n in BUILTIN if n.startswith("imazu")])
def test_imazu_in_process(name):
    scenario = BUILTIN[name]
    navigator = Navigator(PARAMS, cruise_speed_kn=12.0)
    result = simulate(scenario, lambda _t, own, targets: navigator.decide(own, scenario.goal, targets), PARAMS)
    _check_run(result.as_dict())


def _check_run(run):
    assert not run["collision"] and run["min_distance_nm"] >= 0.95, run
    for maneuver in run["maneuvers"]:  # starboard or slower, and readily apparent
        assert maneuver["course_change_deg"] >= 29.9 or maneuver["speed_change_kn"] <= -5.99, maneuver
        assert maneuver["course_change_deg"] >= 0, maneuver
    stand_on = {t["id"] for t in run["targets"] if t["role"] == "stand-on"}
    for maneuver in run["maneuvers"]:
        if set(maneuver["target_ids"]) <= stand_on:  # acting only for stand-on targets needs rule 17 to allow it
            assert maneuver["t_s"] >= 1199 or "17" in maneuver["rationale"], maneuver


@pytest.mark.ros
def test_the_22_imazu_cases_closed_loop_through_the_colreg_node(tmp_path):
    done = subprocess.run([*TANGO2, "simulate", "imazu", "--perfect-tracks", "--json", "--plot-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    runs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(runs) == 22, done.stderr[-2000:]
    for run in runs:
        assert run["through"].startswith("colreg_node over ROS 2") and run["decisions"] > 1000
        _check_run(run)
    assert len(list(tmp_path.glob("imazu-*.png"))) == 22
    assert done.returncode == 0


@pytest.mark.ros
def test_a_passage_through_simulated_nmea_sensors_camera_bridge_and_tracker_is_recorded_to_mcap(tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    record = tmp_path / "run.mcap"
    done = subprocess.run([*TANGO2, "simulate", "imazu-18", "--json", "--record", str(record)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(done.stdout)
    assert run["through"].startswith("NMEA/UDP sensors") and run["decisions"] > 1000
    _check_run(run)
    assert {i for m in run["maneuvers"] for i in m["target_ids"]} <= {t["id"] for t in run["targets"]}
    sources, decisions, log_times = set(), [], []
    with record.open("rb") as stream:
        for _, channel, message, decoded in make_reader(stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            log_times.append(message.log_time / 1e9 - SIM_EPOCH_S)
            if channel.topic.endswith("/sds/targets"):
                sources |= {t.sources for t in decoded.targets}
            elif channel.topic.endswith("/sds/decision"):
                decisions.append(decoded)
    # AIS, radar and the camera all reached the tracker and were fused into tracks
    assert TargetMsg.SOURCE_AIS | TargetMsg.SOURCE_RADAR | TargetMsg.SOURCE_CAMERA in sources
    assert len(decisions) == run["recorded"]["messages"]["/tango2_sim/sds/decision"] > run["decisions"] / 2
    assert any(d.state == "altering" and "rule 8" in d.rationale for d in decisions)
    assert 0 <= min(log_times) and max(log_times) <= run["duration_s"] + 1  # simulated time, not the wall clock


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


@pytest.mark.ros
def test_colreg_node_degrades_on_bad_or_missing_input_and_says_why():
    import time as clock

    from helpers.lifecycle import bring_up
    from helpers.ros import ros_node, spawn, stop, wait_until
    from visualization_msgs.msg import MarkerArray

    from tango2_msgs.msg import NavigationDecision, OwnShipState, TargetArray

    ns = "/t5colreg"
    process = spawn(["-m", "tango2_ros.nodes.colreg_node", "--ros-args", "-r", "__node:=colreg_node", "-r",
                     f"__ns:={ns}", "-p", "stale_after_s:=1.0", "-p", "decision_rate_hz:=5.0",
                     "-p", "goal_lat_deg:=0.1", "-p", "goal_lon_deg:=0.0"])
    try:
        with ros_node("colreg_probe") as node:
            bring_up(node, f"{ns}/colreg_node")
            decisions: list[NavigationDecision] = []
            node.create_subscription(NavigationDecision, f"{ns}/sds/decision", decisions.append, 50)
            marker_arrays: list[MarkerArray] = []
            node.create_subscription(MarkerArray, f"{ns}/sds/markers", marker_arrays.append, 10)
            own_pub = node.create_publisher(OwnShipState, f"{ns}/sds/own_ship", 10)
            targets_pub = node.create_publisher(TargetArray, f"{ns}/sds/targets", 10)

            def latest_reason(words):
                return wait_until(lambda: any(words in d.status_reason for d in decisions[-3:]), 10)

            assert latest_reason("never received")  # the watchdog speaks before any input
            lost = OwnShipState(latitude_deg=math.nan, longitude_deg=0.0, position_valid=False, speed_over_ground_kn=12.0)
            for _ in range(3):
                own_pub.publish(lost)
                clock.sleep(0.2)
            assert latest_reason("position lost or invalid")
            good = OwnShipState(latitude_deg=0.0, longitude_deg=0.0, course_over_ground_deg=0.0,
                                speed_over_ground_kn=12.0, position_valid=True)
            for _ in range(3):
                own_pub.publish(good)
                clock.sleep(0.2)
            assert latest_reason("no target picture yet")
            for _ in range(3):
                targets_pub.publish(TargetArray())
                own_pub.publish(good)
                clock.sleep(0.2)
            assert wait_until(lambda: decisions[-1].status == NavigationDecision.STATUS_NORMAL
                              and decisions[-1].state == "route", 5)
            assert wait_until(lambda: any(m.ns == "own_ship" for a in marker_arrays for m in a.markers), 5)
            label = next(m for a in marker_arrays for m in a.markers if m.ns == "decision" and m.text)
            assert label.text.startswith("route") and label.header.frame_id == "own_ship"
            assert all(not d.action_required for d in decisions if d.status == NavigationDecision.STATUS_DEGRADED)
            assert latest_reason("silent for")  # own-ship updates stop: degraded again within the stale limit
    finally:
        output = stop(process)
    assert "Traceback" not in output


@pytest.mark.ros
def test_sds_demo_runs_the_whole_bridge_on_nmea_over_udp():
    """What `make demo` runs second: real sentences over UDP through bridge, tracker, colreg node and scene_llm."""
    done = subprocess.run([*TANGO2, "demo", "--seconds", "20", "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    acting = [d for d in report["decisions"] if d["state"] == "altering"]
    assert acting and 14 in acting[0]["rules"] and 18 in acting[0]["rules"], report["decisions"]
    assert "AIS-440123450 sources=3" in report["tracks"]  # AIS and radar fused into one track
    # the first description may come before the first target picture; the later ones name the ship
    assert any("AIS-440123450" in scene["text"] for scene in report["scenes"]), report["scenes"]
