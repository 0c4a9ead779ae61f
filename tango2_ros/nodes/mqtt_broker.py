"""mqtt_broker: runs the mosquitto MQTT broker for the farm's sensors as part of a launch profile.

A lifecycle node around the Debian `mosquitto` process: configure writes its configuration (loopback by default,
persistence in `persistence_dir` so QoS 1 sessions survive restarts), activate starts it, a watchdog restarts it
if it dies (reported on /diagnostics), deactivate stops it.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from tango2_ros.nodes.base import ERROR, OK, Tango2Node, run_node
from tango2_ros.core.mqtt import MqttBroker


class MqttBrokerNode(Tango2Node):
    def __init__(self) -> None:
        super().__init__("mqtt_broker")
        self.declare("port", 1883, "MQTT port.", min_value=1, max_value=65535)
        self.declare("bind_address", "127.0.0.1", "Interface to listen on (0.0.0.0: the sensor gateways' network).")
        self.declare("persistence_dir", "", "Where mosquitto keeps sessions; empty = a temporary folder.")
        self._broker: MqttBroker | None = None
        self._restarts = 0

    def executor_threads(self) -> int:
        return 1

    def configure(self) -> None:
        folder = Path(self.param("persistence_dir") or tempfile.mkdtemp(prefix="tango2-mosquitto-"))
        folder.mkdir(parents=True, exist_ok=True)
        self._broker = MqttBroker(port=self.param("port"), folder=folder, address=self.param("bind_address"))
        self.create_timer(1.0, self._watch)

    def activate(self) -> None:
        self._broker.start()
        self.set_status(OK, f"mosquitto listening on {self._broker.address}:{self._broker.port}", restarts=self._restarts)

    def deactivate(self) -> None:
        if self._broker is not None:
            self._broker.stop()

    def cleanup(self) -> None:
        self.deactivate()

    def _watch(self) -> None:
        broker = self._broker
        if broker is None or broker.process is None or broker.process.poll() is None:
            return
        self._restarts += 1
        self.set_status(ERROR, f"mosquitto exited with code {broker.process.returncode}: restarting",
                        restarts=self._restarts)
        try:
            broker.start()
            self.set_status(OK, f"mosquitto listening on {broker.address}:{broker.port}", restarts=self._restarts)
        except Exception as exc:  # noqa: BLE001 - keep watching; the next tick tries again
            self.set_status(ERROR, f"mosquitto does not start: {exc}", restarts=self._restarts)


def main(args: list[str] | None = None) -> int:
    return run_node(MqttBrokerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
