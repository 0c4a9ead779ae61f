"""fleet_agent: one device's link to its fleet. It reports what the device serves and how it serves it, and asks the
model manager for the release the fleet wants.

Over the device's own MQTT broker (mosquitto bridges it to the fleet broker, tango2_ros.core.fleet.messages):
- `tango2/fleet/<device_id>/state` (retained): the release the manager's slot serves (its `slot.<slot>` on
  /diagnostics) and why the last swap to the wanted release failed;
- `tango2/fleet/<device_id>/telemetry` every `telemetry_period_s`: the window's requests, errors and mean latency
  for that release, from the serving node's cumulative `model_requests` / `model_errors` / `model_seconds`, and
  the answers the domain's checker refused and corrected (`checker_node`'s cumulative counts, e.g. the farm's
  safety_supervisor's `rejected` and `clamped`);
- `tango2/fleet/<device_id>/decisions`: the new lines of the decision logs in `decision_logs` (JSON Lines files the
  domain's nodes append to), each batch once the broker has taken the previous one;
- it subscribes `tango2/fleet/<device_id>/desired` (retained, QoS 1, persistent session) and calls the manager's
  `~/swap` when the slot serves another release; a failed swap (registry down, a release that does not load) is
  reported and asked again after `retry_s`, and the slot serves on meanwhile.
A desired message that cannot be used is dropped, counted and named on /diagnostics; the agent goes on.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from diagnostic_msgs.msg import DiagnosticArray

from tango2_msgs.srv import SwapModel
from tango2_ros.core.fleet.agent import DecisionLogShipper, DesiredFollower, TelemetryWindow
from tango2_ros.core.fleet.messages import DEVICE_ID, DeviceState, FleetMessageError, parse_desired, topic
from tango2_ros.nodes.base import ERROR, OK, WARN, Tango2Node, run_node

SWAP_CHECK_S = 1.0


class FleetAgent(Tango2Node):
    def __init__(self) -> None:
        super().__init__("fleet_agent")
        self.declare("device_id", "", "This device's id in the fleet (1-63 of a-z, 0-9, '-', '_').", read_only=True)
        self.declare("slot", "llm", "The model manager's slot the fleet rolls releases out to.", read_only=True)
        self.declare("manager", "/tango2/models", "Fully qualified name of the model manager.", read_only=True)
        self.declare("serving_node", "/tango2/llm_node", "The node serving the slot (its /diagnostics counts).",
                     read_only=True)
        self.declare("checker_node", "", "The domain's checker (its cumulative refusals and corrections on "
                     "/diagnostics), e.g. /tango2/safety_supervisor; empty = none.", read_only=True)
        self.declare("checker_refused_key", "rejected", "Its /diagnostics key counting refused answers.",
                     read_only=True)
        self.declare("checker_corrected_key", "clamped", "Its /diagnostics key counting corrected answers.",
                     read_only=True)
        self.declare("mqtt_host", "127.0.0.1", "The device's MQTT broker (bridged to the fleet broker).")
        self.declare("mqtt_port", 1883, "Its port.", min_value=1, max_value=65535)
        self.declare("telemetry_period_s", 5.0, "Telemetry window.", min_value=0.5, max_value=3600.0)
        self.declare("decision_logs", "", "Folder of the domain's decision logs (*.jsonl) to send to the fleet; "
                     "empty = none.", read_only=True)
        self.declare("retry_s", 30.0, "Ask again this long after a swap to the wanted release failed.",
                     min_value=1.0, max_value=86400.0)
        self._lock = threading.Lock()  # paho's thread hands desired messages to the executor's
        self._client: mqtt.Client | None = None
        self._serving = ""
        self._failed = ""
        self._published_state: DeviceState | None = None
        self._swap_future = None
        self._fleet_timers: list = []  # not `_timers`: rclpy's Node keeps its own timers there
        self._window_started = time.monotonic()
        self._counts = {"telemetry_sent": 0, "desired_received": 0, "desired_rejected": 0, "swaps_asked": 0,
                        "swaps_failed": 0, "decision_lines_sent": 0}
        self._shipper: DecisionLogShipper | None = None
        self._batches: dict[str, tuple[mqtt.MQTTMessageInfo, int]] = {}  # file -> its batch in flight, its lines

    def executor_threads(self) -> int:
        return 1

    def configure(self) -> None:
        device = self.param("device_id")
        if not DEVICE_ID.match(device):
            raise ValueError(f"device_id {device!r}: use 1-63 of a-z, 0-9, '-', '_'")
        self._window = TelemetryWindow(device, self.param("slot"))
        self._follower = DesiredFollower(self.param("slot"), retry_s=self.param("retry_s"))
        self._swap = self.create_client(SwapModel, f"{self.param('manager')}/swap")
        if self.param("decision_logs"):
            folder = Path(self.param("decision_logs"))
            if not folder.is_dir():
                raise ValueError(f"decision_logs {folder}: not a folder")
            self._shipper = DecisionLogShipper(device, folder)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"tango2-fleet-agent-{device}",
                             clean_session=False)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client = client
        self.set_status(WARN, "connecting to the device's MQTT broker")

    def activate(self) -> None:
        self._client.connect_async(self.param("mqtt_host"), self.param("mqtt_port"), keepalive=10)
        self._client.loop_start()
        self._window_started = time.monotonic()
        self._fleet_timers = [self.create_timer(self.param("telemetry_period_s"), self._send_telemetry),
                        self.create_timer(SWAP_CHECK_S, self._follow)]

    def deactivate(self) -> None:
        for timer in self._fleet_timers:
            self.destroy_timer(timer)
        self._fleet_timers = []
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    def cleanup(self) -> None:
        self.deactivate()
        self._client = None

    # -- the device's nodes ----------------------------------------------------------------------------------
    def _on_diagnostics(self, message: DiagnosticArray) -> None:
        for status in message.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name == self.param("manager"):
                serving = values.get(f"slot.{self.param('slot')}")
                if serving is not None and serving != self._serving:
                    self._serving = serving
                    self._publish_state()
            try:
                if status.name == self.param("serving_node") and values.get("model"):
                    self._window.counters(values["model"], int(values.get("model_requests", 0)),
                                          int(values.get("model_errors", 0)), float(values.get("model_seconds", 0)))
                elif status.name == self.param("checker_node"):
                    self._window.checker_counters(int(values.get(self.param("checker_refused_key"), 0)),
                                                  int(values.get(self.param("checker_corrected_key"), 0)))
            except ValueError:
                self.get_logger().warning(f"unreadable counters from {status.name}: {values}")

    # -- the fleet -------------------------------------------------------------------------------------------
    def _on_connect(self, client, _userdata, _flags, reason_code, _properties=None) -> None:
        if reason_code.is_failure:
            self.set_status(ERROR, f"MQTT broker refused the connection: {reason_code}")
            return
        client.subscribe(topic(self.param("device_id"), "desired"), qos=1)
        self._published_state = None  # say it again: the broker may have lost it
        self.set_status(OK, f"connected to {self.param('mqtt_host')}:{self.param('mqtt_port')}", **self._counts)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties=None) -> None:
        if self._client is not None and self.is_active:
            self.set_status(ERROR, f"MQTT broker connection lost ({reason_code}): reconnecting", **self._counts)

    def _on_message(self, _client, _userdata, message) -> None:
        try:
            desired = parse_desired(message.payload)
        except FleetMessageError as exc:
            self._counts["desired_rejected"] += 1
            self.get_logger().warning(f"desired release refused: {exc}")
            self.set_values(**self._counts, last_rejected=str(exc)[:200])
            return
        with self._lock:
            self._counts["desired_received"] += 1
            self._follower.want(desired)
        self.set_values(**self._counts, desired=desired.release)

    def _follow(self) -> None:
        """Ask the manager for the wanted release (one request at a time). A manager that is not there (yet, or
        restarting) is waited for, not counted as a failed swap: the rollout would take it for a bad release."""
        if self._swap_future is not None and not self._swap_future.done():
            return
        if not self._swap.service_is_ready():
            self.set_values(waiting=f"{self.param('manager')}/swap is not available")
            return
        with self._lock:
            request = self._follower.next_swap(self._serving, time.monotonic())
        if request is None:
            return
        self.set_values(waiting="")
        self._counts["swaps_asked"] += 1
        self.get_logger().info(f"the fleet wants {request.name}@{request.version}: asking for the swap")
        self._swap_future = self._swap.call_async(SwapModel.Request(name=request.name, version=request.version,
                                                                    slot=request.slot))
        self._swap_future.add_done_callback(self._swapped)

    def _swapped(self, future) -> None:
        """A failure is reported at once; a success shows in the manager's /diagnostics."""
        answer = future.result()
        if answer is None or not (answer.success or answer.deferred):
            self._counts["swaps_failed"] += 1
            self._failed = answer.message if answer is not None else "no answer from the model manager"
            self.get_logger().warning(f"swap failed: {self._failed}")
        else:
            self._failed = ""
        self._publish_state()

    def _publish_state(self) -> None:
        state = DeviceState(device=self.param("device_id"), release=self._serving, slot=self.param("slot"),
                            failed=self._failed)
        if self._client is not None and state != self._published_state:
            self._client.publish(topic(state.device, "state"), state.encode(), qos=1, retain=True)
            self._published_state = state
            self.set_values(serving=state.release, failed=state.failed[:200])

    def _send_decisions(self) -> None:
        """Batches the broker has taken count as shipped; then the next ones go out. (Polled here, not in paho's
        on_publish: that runs under paho's own lock, which publish() takes too.)"""
        for name, (sent, lines) in list(self._batches.items()):
            if sent.is_published():
                self._shipper.delivered(name)
                self._counts["decision_lines_sent"] += lines
                del self._batches[name]
        for batch in self._shipper.batches():
            sent = self._client.publish(topic(batch.device, "decisions"), batch.encode(), qos=1)
            if sent.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # paho sends it once it is connected
                self._batches[batch.file] = (sent, len(batch.lines))
            else:
                self._shipper.undelivered(batch.file)

    def _send_telemetry(self) -> None:
        now = time.monotonic()
        window_s, self._window_started = now - self._window_started, now
        if self._shipper is not None:
            try:
                self._send_decisions()
            except OSError as exc:  # the log folder or the position file: the telemetry still goes
                self.get_logger().warning(f"decision logs not sent: {exc}")
        if not self._serving:
            return
        report = self._window.close(self._serving, window_s, clock=time.time())
        self._client.publish(topic(report.device, "telemetry"), report.encode(), qos=1)
        self._counts["telemetry_sent"] += 1
        self.set_values(**self._counts)
        self._published_state = None  # the state goes with every window, so a fleet that lost it learns it again
        self._publish_state()


def main(args: list[str] | None = None) -> int:
    return run_node(FleetAgent, args)


if __name__ == "__main__":
    raise SystemExit(main())
