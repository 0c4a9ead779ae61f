"""The fleet controller: on the fleet broker, it hears every device's state and telemetry, drives one `Rollout` at a
time and publishes what each device should serve (retained `desired`), and the rollout's report (retained on
`tango2/rollouts/<id>`, which `tango2 fleet status` reads). Given a folder, it also writes the devices' decision
logs there (`DecisionLogCollector`), the field data the learning path reads.

Without ROS: a fleet is MQTT and an OCI registry. Messages that cannot be used are counted with the last reason
and never stop it. Everything is timed by the controller's own monotonic clock at arrival.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

from tango2_ros.core.fleet.messages import (DecisionBatch, DeviceState, Desired, FleetMessageError, Telemetry,
                                            every_device, parse_decisions, parse_state, parse_telemetry, topic)
from tango2_ros.core.fleet.rollout import CanaryPolicy, Phase, Rollout

ROLLOUT_TOPIC_ROOT = "tango2/rollouts"
RECENT_WINDOWS = 100  # per device: what a new rollout judges the canary's previous release by


def rollout_topic(rollout_id: str) -> str:
    return f"{ROLLOUT_TOPIC_ROOT}/{rollout_id}"


@dataclass
class DeviceRecord:
    """What the controller knows of one device, rollout or not."""

    state: DeviceState
    heard_at: float
    telemetry: int = 0  # telemetry messages received, repeats left out
    sequences: set[int] = field(default_factory=set)
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_WINDOWS))  # (Telemetry, arrived at)
    failures: list[str] = field(default_factory=list)  # the distinct swap failures it reported

    def lost(self) -> int:
        """Telemetry sequence numbers never received below the highest one (the agent counts from 1 per start)."""
        return max(self.sequences, default=0) - len(self.sequences)


class DecisionLogCollector:
    """The devices' decision log lines in `folder/<device>/<file>`, in order: a repeat (QoS 1, an agent that
    restarted) is dropped by its line numbers, a gap is counted and the lines after it kept."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.counts = {"lines": 0, "repeated_lines": 0, "missing_lines": 0}
        self._next: dict[Path, int] = {}

    def add(self, batch: DecisionBatch) -> None:
        path = self.folder / batch.device / batch.file
        if path not in self._next:
            self._next[path] = _line_count(path)
        skip = self._next[path] - batch.first_line
        if skip < 0:
            self.counts["missing_lines"] += -skip
        fresh = batch.lines[max(0, skip):]
        self.counts["repeated_lines"] += len(batch.lines) - len(fresh)
        if fresh:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as log:
                log.write("".join(line + "\n" for line in fresh))
            self._next[path] = batch.first_line + len(batch.lines)
            self.counts["lines"] += len(fresh)


def _line_count(path: Path) -> int:
    try:
        with path.open("rb") as log:
            return sum(1 for _ in log)
    except FileNotFoundError:
        return 0


class FleetController:
    """Connects to the fleet broker as `client_id` (a persistent session: what devices send while it is down waits)."""

    def __init__(self, host: str, port: int, client_id: str = "tango2-fleet-controller",
                 policy: CanaryPolicy | None = None, decisions_dir: Path | None = None) -> None:
        self.host, self.port, self.policy = host, port, policy or CanaryPolicy()
        self.decisions = DecisionLogCollector(decisions_dir) if decisions_dir else None
        self.devices: dict[str, DeviceRecord] = {}
        self.rollout: Rollout | None = None
        self.counts = {"telemetry": 0, "repeats": 0, "rejected": 0}
        self.last_rejected = ""
        self._published: dict[str, Desired] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *_: self._connected.clear()
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)

    def start(self, timeout_s: float = 10.0) -> "FleetController":
        self._client.connect_async(self.host, self.port, keepalive=10)
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            self.stop()
            raise ConnectionError(f"the fleet broker {self.host}:{self.port} did not answer in {timeout_s:g} s")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties=None) -> None:
        if not reason_code.is_failure:
            client.subscribe([(every_device("state"), 1), (every_device("telemetry"), 1)]
                             + ([(every_device("decisions"), 1)] if self.decisions else []))
            self._connected.set()

    def _on_message(self, _client, _userdata, message) -> None:
        now = time.monotonic()
        try:
            if message.topic.endswith("/state"):
                self._state(parse_state(message.topic, message.payload), now)
            elif message.topic.endswith("/decisions"):
                batch = parse_decisions(message.topic, message.payload)
                with self._lock:
                    if self.decisions is not None:  # else a subscription of an earlier session delivered it
                        self.decisions.add(batch)
            else:
                self._telemetry(parse_telemetry(message.topic, message.payload), now)
        except (FleetMessageError, OSError) as exc:  # OSError: a decision log that cannot be written (disk full)
            with self._lock:
                self.counts["rejected"] += 1
                self.last_rejected = f"{message.topic}: {exc}"[:300]

    def _state(self, state: DeviceState, now: float) -> None:
        with self._lock:
            record = self.devices.get(state.device)
            if record is None:
                record = self.devices[state.device] = DeviceRecord(state, now)
            else:
                record.state, record.heard_at = state, now
            if state.failed and state.failed not in record.failures:
                record.failures.append(state.failed)
            if self.rollout is not None:
                self.rollout.observe_state(state, now)

    def _telemetry(self, report: Telemetry, now: float) -> None:
        with self._lock:
            record = self.devices.setdefault(report.device, DeviceRecord(DeviceState(report.device, "", report.slot),
                                                                         now))
            if report.sequence in record.sequences:
                self.counts["repeats"] += 1
                return
            record.sequences.add(report.sequence)
            record.telemetry += 1
            record.heard_at = now
            record.recent.append((report, now))
            self.counts["telemetry"] += 1
            if self.rollout is not None:
                self.rollout.observe_telemetry(report, now)

    # -- rollouts --------------------------------------------------------------------------------------------
    def begin(self, release: str, slot: str, devices: list[str], canary: str | None = None) -> Rollout:
        """Start rolling `release` out to `devices` (ValueError when no device can be the canary); the canary's
        recent windows on its present release are what its latency on the new one is compared with."""
        with self._lock:
            states = {device: record.state for device, record in self.devices.items()}
            self.rollout = Rollout(release, slot, devices, states, time.monotonic(), self.policy, canary=canary)
            for record in self.devices.values():
                for report, arrived_at in record.recent:
                    self.rollout.observe_telemetry(report, arrived_at)
            self._published = {}
        self.step()
        return self.rollout

    def step(self) -> Phase | None:
        """Judge the rollout now and publish what changed: the devices' desired releases and the report."""
        with self._lock:
            if self.rollout is None:
                return None
            phase = self.rollout.step(time.monotonic())
            changed = {device: wanted for device, wanted in self.rollout.desired().items()
                       if self._published.get(device) != wanted}
            self._published.update(changed)
            report = json.dumps(self.rollout.report()).encode()
        for device, wanted in changed.items():
            self._client.publish(topic(device, "desired"), wanted.encode(), qos=1, retain=True)
        self._client.publish(rollout_topic(self.rollout.rollout_id), report, qos=1, retain=True)
        return phase

    def serving(self) -> dict[str, str]:
        """Device -> the release it last said it serves."""
        with self._lock:
            return {device: record.state.release for device, record in self.devices.items()}
