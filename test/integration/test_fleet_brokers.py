"""A device's broker bridged to the fleet broker, both real mosquitto processes on loopback: telemetry goes up with
QoS 1 and waits in the device broker while the fleet broker is down; the retained desired release comes down to a
device that was away (tango2_ros.core.mqtt.Bridge). The fleet controller and `tango2 fleet status` on a real
broker, with devices that send garbage; `tango2 fleet rollout` against devices that speak the fleet's MQTT."""
import json
import queue
import threading
import time

import paho.mqtt.client as mqtt

from helpers.sdm import tango2
from tango2_ros.core.fleet.controller import FleetController
from tango2_ros.core.fleet.messages import (DecisionBatch, DeviceState, Desired, Telemetry, every_device,
                                            parse_desired, parse_telemetry, topic)
from tango2_ros.core.mqtt import Bridge, MqttBroker

DEVICE = "vessel-a"


def _client(port: int, name: str, subscribe: str | None = None) -> tuple[mqtt.Client, queue.Queue]:
    received: queue.Queue = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, clean_session=False)
    client.on_message = lambda _c, _u, message: received.put(message)
    if subscribe:
        client.on_connect = lambda c, *_: c.subscribe(subscribe, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client, received


def _drain(received: queue.Queue, count: int, timeout_s: float) -> list:
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(received.get(timeout=0.1))
        except queue.Empty:
            pass
    return got


def _report(sequence: int) -> bytes:
    return Telemetry(device=DEVICE, sequence=sequence, release="tiny-llm@1.0.0", slot="llm", window_s=1.0,
                     requests=3, errors=0, latency_s=0.2).encode()


def test_telemetry_waits_out_a_fleet_broker_restart_and_the_desired_release_reaches_a_returning_device(tmp_path):
    fleet = MqttBroker(folder=tmp_path / "fleet").start()
    bridge = Bridge(name=f"bridge-{DEVICE}", remote=f"127.0.0.1:{fleet.port}",
                    out=(topic(DEVICE, "telemetry"), topic(DEVICE, "state")), into=(topic(DEVICE, "desired"),))
    device = MqttBroker(folder=tmp_path / DEVICE, bridges=(bridge,)).start()
    clients = []
    try:
        controller, up = _client(fleet.port, "fleet-controller", every_device("telemetry"))
        agent, _ = _client(device.port, "agent")
        clients += [controller, agent]
        time.sleep(1.0)  # the bridge connects and subscribes
        agent.publish(topic(DEVICE, "telemetry"), _report(1), qos=1)
        first = _drain(up, 1, 10.0)
        assert [parse_telemetry(m.topic, m.payload).sequence for m in first] == [1]

        fleet.stop()  # the link is down: the device keeps reporting
        for sequence in range(2, 7):
            agent.publish(topic(DEVICE, "telemetry"), _report(sequence), qos=1)
        time.sleep(0.5)
        fleet.start()  # persistence: the controller's session and the bridge's come back
        came = _drain(up, 5, 20.0)
        assert sorted({parse_telemetry(m.topic, m.payload).sequence for m in came}) == [2, 3, 4, 5, 6]

        device.stop()  # the device is away while the fleet decides
        controller.publish(topic(DEVICE, "desired"), Desired("tiny-llm@1.1.0", "llm", "r1").encode(), qos=1,
                           retain=True).wait_for_publish(5.0)
        device.start()
        listener, down = _client(device.port, "agent-after", topic(DEVICE, "desired"))
        clients.append(listener)
        wanted = _drain(down, 1, 20.0)
        assert [parse_desired(m.payload).release for m in wanted] == ["tiny-llm@1.1.0"]
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()
        device.stop()
        fleet.stop()


def test_the_controller_drops_repeats_and_garbage_starts_a_canary_and_fleet_status_reads_it_back(tmp_path):
    fleet = MqttBroker(folder=tmp_path / "fleet").start()
    controller = FleetController("127.0.0.1", fleet.port).start()
    device, _ = _client(fleet.port, "devices")
    watcher, desired = _client(fleet.port, "watcher", every_device("desired"))
    try:
        for name in ("vessel-a", "vessel-b"):
            device.publish(topic(name, "state"), DeviceState(name, "tiny-llm@1.0.0", "llm").encode(), qos=1,
                           retain=True)
        device.publish(topic(DEVICE, "telemetry"), _report(1), qos=1)
        device.publish(topic(DEVICE, "telemetry"), _report(1), qos=1)  # QoS 1 may deliver twice
        device.publish(topic("vessel-c", "state"), b"\xff not json", qos=1, retain=True)
        device.publish(topic("vessel-b", "telemetry"), _report(2), qos=1)  # vessel-a's report on vessel-b's topic
        device.publish(topic("vessel-d", "state"), json.dumps({"device": "vessel-d", "release": "x; rm -rf /",
                                                                 "slot": "llm"}).encode(), qos=1,
                       retain=True).wait_for_publish(5)
        assert _settled(lambda: controller.counts == {"telemetry": 1, "repeats": 1, "rejected": 3}), controller.counts
        assert "vessel-b" in controller.last_rejected or "release" in controller.last_rejected

        rollout = controller.begin("tiny-llm@1.1.0", "llm", ["vessel-a", "vessel-b"])
        assert rollout.canary == "vessel-a"
        wanted = _drain(desired, 1, 10.0)
        assert [(m.topic, parse_desired(m.payload).release) for m in wanted] == [
            (topic("vessel-a", "desired"), "tiny-llm@1.1.0")]
        controller.step()
        assert _drain(desired, 1, 1.0) == []  # nothing changed: nothing published again

        status = tango2("fleet", "status", "--broker", f"127.0.0.1:{fleet.port}", "--json", timeout=60)
        assert status.returncode == 0, status.stderr
        shown = json.loads(status.stdout)
        assert {d: s["release"] for d, s in shown["devices"].items()} == {"vessel-a": "tiny-llm@1.0.0",
                                                                          "vessel-b": "tiny-llm@1.0.0"}
        assert [(r["release"], r["phase"], r["canary"]) for r in shown["rollouts"].values()] == [
            ("tiny-llm@1.1.0", "canary", "vessel-a")]
        assert len(shown["unreadable"]) == 2  # vessel-c's and vessel-d's retained states
    finally:
        for client in (device, watcher):
            client.loop_stop()
            client.disconnect()
        controller.stop()
        fleet.stop()


def test_fleet_status_says_what_is_wrong_with_the_broker_it_was_given():
    for broker, expected in (("no-port", "use HOST:PORT"), ("127.0.0.1:1", "cannot reach the fleet broker")):
        result = tango2("fleet", "status", "--broker", broker, timeout=60)
        assert result.returncode == 2 and expected in result.stderr, result.stderr


def _settled(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class _Device:
    """A device as the fleet broker sees it: it says what it serves, takes the desired release (or fails to, for
    the releases in `refuses`) and sends a decision log line with it, and reports a window of 2 requests every
    0.2 s. The
    fleet_agent node that does this on a real device is tested in test/ros/test_fleet.py."""

    def __init__(self, port: int, name: str, serving: str, refuses: tuple[str, ...] = ()) -> None:
        self.name, self.serving, self.refuses, self.failed = name, serving, refuses, ""
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
        self.client.on_connect = lambda c, *_: c.subscribe(topic(name, "desired"), qos=1)
        self.client.on_message = self._on_desired
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._say()
        self.decisions = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._report, daemon=True)
        self._thread.start()

    def _on_desired(self, _client, _userdata, message) -> None:
        wanted = parse_desired(message.payload).release
        if wanted in self.refuses:
            self.failed = f"{wanted} could not be loaded"
        else:
            self.serving, self.failed = wanted, ""
        self._say()
        self.client.publish(topic(self.name, "decisions"), DecisionBatch(
            self.name, "day.jsonl", self.decisions, (json.dumps({"period": self.decisions}),)).encode(), qos=1)
        self.decisions += 1

    def _say(self) -> None:
        self.client.publish(topic(self.name, "state"), DeviceState(self.name, self.serving, "llm", self.failed).encode(),
                            qos=1, retain=True)

    def _report(self) -> None:
        sequence = 0
        while not self._stop.wait(0.2):
            sequence += 1
            self.client.publish(topic(self.name, "telemetry"), Telemetry(
                device=self.name, sequence=sequence, release=self.serving, slot="llm", window_s=0.2, requests=2,
                errors=0, latency_s=0.1).encode(), qos=1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.client.loop_stop()
        self.client.disconnect()


def test_fleet_rollout_widens_after_a_healthy_canary_rolls_a_failing_one_back_and_keeps_the_decision_logs(tmp_path):
    fleet = MqttBroker(folder=tmp_path / "fleet").start()
    devices = [_Device(fleet.port, "vessel-a", "tiny-llm@1.0.0", refuses=("tiny-llm@2.0.0",)),
               _Device(fleet.port, "vessel-b", "tiny-llm@1.0.0")]
    broker = f"127.0.0.1:{fleet.port}"
    try:
        done = tango2("fleet", "rollout", "tiny-llm@1.1.0", "--broker", broker, "--devices", "vessel-a,vessel-b",
                      "--window-s", "1", "--decisions", str(tmp_path / "decisions"), "--json", timeout=120)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["phase"] == "done" and report["canary"] == "vessel-a"
        assert [d["final_version"] for d in report["devices"]] == ["tiny-llm@1.1.0"] * 2
        assert (tmp_path / "decisions" / "vessel-b" / "day.jsonl").read_text() == '{"period": 0}\n'

        failed = tango2("fleet", "rollout", "tiny-llm@2.0.0", "--broker", broker, "--devices", "vessel-a,vessel-b",
                        "--window-s", "1", "--json", timeout=120)
        assert failed.returncode == 1, failed.stderr
        report = json.loads(failed.stdout)
        assert report["rolled_back"] and "could not be loaded" in report["reason"]
        assert [d["final_version"] for d in report["devices"]] == ["tiny-llm@1.1.0"] * 2

        for arguments, words in ((["nonsense", "--devices", "vessel-a"], "NAME@VERSION"),
                                 (["tiny-llm@3.0.0", "--devices", "Vessel A"], "--devices"),
                                 (["tiny-llm@3.0.0", "--devices", "vessel-z"], "no device is online")):
            refused = tango2("fleet", "rollout", *arguments, "--broker", broker, timeout=60)
            assert refused.returncode == 2 and words in refused.stderr, refused.stderr
    finally:
        for device in devices:
            device.stop()
        fleet.stop()
