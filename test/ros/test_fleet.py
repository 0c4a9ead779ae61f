"""The fleet: the device's fleet_agent node against a real mosquitto, and `tango2 fleet simulate` end to end (device
stacks on DDS domains of their own, an OCI registry, bridged brokers, a link that goes down, a registry outage,
a release that fails on the canary)."""
import json
import os
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from lifecycle_msgs.msg import Transition

from helpers.diagnostics import DiagnosticsWatcher
from helpers.lifecycle import bring_up, change_state
from helpers.ros import REPO, ros_node, spawn, stop, wait_until
from tango2_msgs.srv import SwapModel
from tango2_ros.core.fleet.messages import Desired, parse_decisions, parse_state, parse_telemetry, topic
from tango2_ros.core.mqtt import MqttBroker

pytestmark = pytest.mark.ros

NS = "/t19"
DEVICE = "t19-dev"
SERVING = "tiny-llm@1.0.0"


def _agent(broker_port: int, device_id: str = DEVICE, name: str = "fleet_agent", decision_logs: str = ""):
    return spawn(["-m", "tango2_ros.nodes.fleet_agent", "--ros-args", "-r", f"__ns:={NS}", "-r", f"__node:={name}",
                  "-p", f"device_id:={device_id}", "-p", f"manager:={NS}/models", "-p", f"serving_node:={NS}/llm_node",
                  "-p", f"mqtt_port:={broker_port}", "-p", "telemetry_period_s:=0.5", "-p", "retry_s:=1.0",
                  "-p", "diagnostics_period_s:=0.2", "-p", f"checker_node:={NS}/safety_supervisor",
                  *(["-p", f"decision_logs:={decision_logs}"] if decision_logs else [])])


def _status(name: str, **values) -> DiagnosticArray:
    return DiagnosticArray(status=[DiagnosticStatus(name=name, values=[KeyValue(key=k, value=str(v))
                                                                       for k, v in values.items()])])


def test_the_agent_reports_state_telemetry_and_decisions_refuses_hostile_desired_messages_and_says_why_a_swap_failed(
        tmp_path):
    broker = MqttBroker().start()
    log = tmp_path / "2026-12-07.jsonl"
    log.write_text('{"period": 0}\n{"period": 1}\n')
    agent = _agent(broker.port, decision_logs=str(tmp_path))
    received: list = []  # every message, in order; each kind is read from where its last match was
    fleet = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    fleet.on_message = lambda _c, _u, message: received.append(message)
    fleet.on_connect = lambda c, *_: c.subscribe(f"tango2/fleet/{DEVICE}/+", qos=1)
    fleet.connect("127.0.0.1", broker.port)
    fleet.loop_start()
    cursor = {"state": 0, "telemetry": 0, "decisions": 0}

    def next_message(kind: str, predicate=lambda parsed: True, timeout_s: float = 15.0):
        parse = {"state": parse_state, "telemetry": parse_telemetry, "decisions": parse_decisions}[kind]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            while cursor[kind] < len(received):
                message = received[cursor[kind]]
                cursor[kind] += 1
                if message.topic == topic(DEVICE, kind) and predicate(parsed := parse(message.topic,
                                                                                      message.payload)):
                    return parsed
            time.sleep(0.05)
        raise AssertionError(f"no matching {kind} message")

    try:
        with ros_node("t19_probe") as node:
            watcher = DiagnosticsWatcher(node, f"{NS}/fleet_agent")
            bring_up(node, f"{NS}/fleet_agent")
            watcher.wait_for(lambda s: s.message.startswith("connected to"), 15)
            diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", 10)

            def serve(requests: int, errors: int, seconds: float, refused: int) -> None:
                diagnostics.publish(_status(f"{NS}/models", **{"slot.llm": SERVING}))
                diagnostics.publish(_status(f"{NS}/safety_supervisor", rejected=refused, clamped=1))
                diagnostics.publish(_status(f"{NS}/llm_node", model=SERVING, model_requests=requests,
                                            model_errors=errors, model_seconds=seconds))

            def checked() -> tuple[int, int]:
                """The checker's refusals and corrections over all telemetry so far."""
                reports = [parse_telemetry(m.topic, m.payload) for m in list(received)
                           if m.topic == topic(DEVICE, "telemetry")]
                return (sum(r.supervisor_rejections for r in reports), sum(r.check_corrections for r in reports))

            assert wait_until(lambda: node.count_subscribers("/diagnostics") >= 1, 10)
            serve(4, 1, 2.0, refused=1)
            state = next_message("state", lambda s: s.release == SERVING)
            assert state.failed == "" and state.slot == "llm"
            report = next_message("telemetry", lambda t: t.requests == 4)
            assert (report.errors, report.latency_s, report.release) == (1, 0.5, SERVING)
            serve(6, 1, 3.0, refused=3)  # two more requests, no error, 0.5 s each; two more refused by the checker
            report = next_message("telemetry", lambda t: t.requests > 0)
            assert (report.requests, report.errors, report.latency_s) == (2, 0, 0.5)
            assert wait_until(lambda: checked() == (3, 1), 5), checked()

            # the decision log's lines go to the fleet in order, each batch after the broker took the one before
            first = next_message("decisions")
            assert (first.file, first.first_line, first.lines) == (log.name, 0, ('{"period": 0}', '{"period": 1}'))
            with log.open("a") as appending:
                appending.write('{"period": 2}\n')
            assert next_message("decisions").first_line == 2

            # hostile and broken desired messages: dropped, counted, the agent goes on
            desired = topic(DEVICE, "desired")
            for payload in (b"not json", json.dumps({"release": "../../etc/passwd", "slot": "llm",
                                                     "rollout": "r1"}).encode(), b"{" + b" " * 70000 + b"}"):
                fleet.publish(desired, payload, qos=1)
            rejected = watcher.wait_for(lambda s: watcher.values(s).get("desired_rejected") == "3", 10)
            assert "release" in watcher.values(rejected)["last_rejected"] or \
                "bytes" in watcher.values(rejected)["last_rejected"]
            fleet.publish(desired, Desired("tiny-llm@2.0.0", "another-slot", "r1").encode(), qos=1)  # not ours
            # a wish while no model manager is there: it waits for one, and fails nothing
            fleet.publish(desired, Desired("tiny-llm@1.1.0", "llm", "r1").encode(), qos=1, retain=True)
            waiting = watcher.wait_for(lambda s: "not available" in watcher.values(s).get("waiting", ""), 10)
            assert watcher.values(waiting)["swaps_asked"] == "0"
            # the manager comes and cannot do it: the agent says why, keeps what it serves, and asks again later
            asked = []

            def refuse(request, response):
                asked.append(f"{request.name}@{request.version}")
                response.success, response.message = False, "the registry cannot be reached; 1.0.0 still serving"
                return response

            node.create_service(SwapModel, f"{NS}/models/swap", refuse)
            failed = next_message("state", lambda s: s.failed != "")
            assert failed.release == SERVING and "registry cannot be reached" in failed.failed
            assert wait_until(lambda: len(asked) >= 2, 10) and set(asked) == {"tiny-llm@1.1.0"}  # retry_s is 1 s
            assert agent.poll() is None
            values = watcher.values(watcher.statuses[-1])
            assert values["desired"] == "tiny-llm@1.1.0" and values["desired_received"] == "2"
    finally:
        fleet.loop_stop()
        output = stop(agent)
        broker.stop()
    assert "Traceback" not in output, output[-3000:]


def test_an_agent_without_a_usable_device_id_refuses_to_configure():
    broker = MqttBroker().start()
    agent = _agent(broker.port, device_id="Bad Id/../x", name="fleet_agent_bad")
    try:
        with ros_node("t19_probe_bad") as node:
            assert not change_state(node, f"{NS}/fleet_agent_bad", Transition.TRANSITION_CONFIGURE)
            assert agent.poll() is None
    finally:
        output = stop(agent)
        broker.stop()
    assert "device_id 'Bad Id/../x'" in output


def _simulate(*arguments: str) -> dict:
    """`tango2 fleet simulate ... --json` on DDS domains no other test uses."""
    domain_base = 100 + os.getpid() % 120
    done = subprocess.run([sys.executable, "-m", "tango2_ros.cli", "fleet", "simulate", "--json",
                           "--domain-base", str(domain_base), "--timeout-s", "400", *arguments],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def test_a_release_reaches_every_device_through_the_canary_while_a_link_and_the_registry_are_down():
    # device-2's link is down from the start until after the canary's 10 s window, and the registry is down from
    # the widening on: the desired release reaches device-2 when it is back, and its first pull fails
    report = _simulate("--devices", "2", "--offline-s", "12", "--registry-outage-s", "8")
    devices = {d["id"]: d for d in report["devices"]}
    assert report["release"] == "smollm2-135m-instruct@1.1.0" and report["canary"] == "device-1"
    assert not report["rolled_back"], report["reason"]
    assert all(d["final_version"] == report["release"] for d in devices.values())
    # the canary first; the rest only after its window; the device that was away once it was back
    assert devices["device-1"]["updated_at_s"] < devices["device-2"]["updated_at_s"] - 5
    assert devices["device-2"]["updated_at_s"] >= devices["device-2"]["offline_s"] >= 12
    # the registry was down when the rollout widened: the device that could not pull said so and served on
    assert devices["device-2"]["swap_failures"] and not devices["device-1"]["swap_failures"], devices
    # the users noticed nothing, and no telemetry was lost on the link that went down
    assert all(d["failed_requests"] == 0 and d["requests"] > 0 for d in devices.values()), devices
    assert all(d["telemetry_lost"] == 0 and d["telemetry_messages"] > 0 for d in devices.values()), devices
    canary = report["canary_counts"]
    assert canary["requests"] >= 3 and canary["errors"] == 0 and canary["latency_s_before"] > 0


def test_a_release_that_fails_on_the_canary_is_rolled_back_and_reaches_no_other_device():
    report = _simulate("--devices", "2", "--offline-s", "3", "--bad-release")
    assert report["rolled_back"] and "could not serve" in report["reason"]
    assert all(d["final_version"] == "smollm2-135m-instruct@1.0.0" for d in report["devices"])
    assert all(d["updated_at_s"] is None and d["failed_requests"] == 0 for d in report["devices"])
    assert report["devices"][0]["swap_failures"] and not report["devices"][1]["swap_failures"]
