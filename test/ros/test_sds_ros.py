"""SDS through ROS 2: the 22 Imazu cases through the colreg node, one passage through simulated NMEA sensors, the
bridge and the tracker (recorded to MCAP), the colreg node's degraded modes, and the sds demo."""
import json
import math
import subprocess
import sys

import pytest

from helpers.colreg import check_run
from tango2_msgs.msg import Target as TargetMsg
from tango2_ros.sds.simulator import SIM_EPOCH_S

TANGO2 = [sys.executable, "-m", "tango2_ros.cli", "sds"]

def _outcome(run: dict) -> tuple:
    """What the ship did (the manoeuvres' target ids differ by design: NavigationDecision carries the targets at
    risk, the navigator's own decision the targets a manoeuvre answers)."""
    return (run["min_distance_nm"], run["path_extra_distance_pct"], run["reached_goal"], run["decisions"],
            [(m["t_s"], m["course_change_deg"], m["speed_change_kn"]) for m in run["maneuvers"]])


@pytest.mark.ros
def test_the_22_imazu_cases_closed_loop_through_the_colreg_node(tmp_path):
    """Through the node over DDS the decisions are those of the same code in process, manoeuvre for manoeuvre:
    the node decides once per instant of the picture, whichever of its two inputs arrives first."""
    done = subprocess.run([*TANGO2, "simulate", "imazu", "--perfect-tracks", "--json", "--plot-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    runs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(runs) == 22, done.stderr[-2000:]
    for run in runs:
        assert run["through"].startswith("colreg_node over ROS 2") and run["decisions"] > 1000
        check_run(run)
    assert len(list(tmp_path.glob("imazu-*.png"))) == 22
    assert done.returncode == 0
    in_process = subprocess.run([*TANGO2, "simulate", "imazu", "--in-process", "--json"], capture_output=True,
                                text=True, timeout=300)
    reference = {r["scenario"]: r for r in map(json.loads, in_process.stdout.splitlines())}
    assert {run["scenario"]: _outcome(run) for run in runs} == {s: _outcome(r) for s, r in reference.items()}


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
    check_run(run)
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

            # stamped inputs: one decision per instant of the picture, never on own ship of one second with the
            # targets of the one before, whichever topic arrives first
            def stamped(message, seconds):
                message.header.stamp.sec = seconds
                return message

            def decided_at() -> list[int]:  # the stamps of the decisions on those pictures (not the watchdog's)
                clock.sleep(0.3)
                return [d.header.stamp.sec for d in decisions if 100 <= d.header.stamp.sec < 1000]

            targets_pub.publish(stamped(TargetArray(), 100))
            own_pub.publish(stamped(good, 100))
            assert wait_until(lambda: decided_at() == [100], 5), decided_at()
            own_pub.publish(stamped(good, 101))  # ahead of the targets of its instant
            assert decided_at() == [100]
            targets_pub.publish(stamped(TargetArray(), 101))
            assert wait_until(lambda: decided_at() == [100, 101], 5), decided_at()
            assert latest_reason("silent for")  # own-ship updates stop: degraded again within the stale limit
    finally:
        output = stop(process)
    assert "Traceback" not in output, output[max(0, output.find("Traceback") - 2000):][:6000]  # the traceback, if any


@pytest.mark.ros
def test_sds_demo_runs_the_whole_bridge_on_nmea_over_udp():
    """What `make demo` runs second: real sentences over UDP through bridge, tracker, colreg node and scene_llm."""
    done = subprocess.run([*TANGO2, "demo", "--seconds", "20", "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    acting = [d for d in report["decisions"] if d["state"] == "altering"]
    assert acting and 14 in acting[0]["rules"] and 18 in acting[0]["rules"], report["decisions"]
    assert "AIS-440123450 sources=3" in report["tracks"]  # AIS and radar fused into one track
    # the profile's model manager deployed the signed learned assistant and the detector before the encounter
    assert report["deployments"] == {"llm": "sds-bridge@1.0.0-lora active",
                                     "detector": "yolov3-tiny-coco@1.0.0 active"}, report["deployments"]
    # the first description may come before the first target picture; the later ones name the ship
    assert any("AIS-440123450" in scene["text"] for scene in report["scenes"]), report["scenes"]
