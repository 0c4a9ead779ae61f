"""foxglove_server: the stack's topics for Foxglove and Lichtblick, through the official foxglove-sdk WebSocket server.

ROS users keep their usual viewer on machines without rviz: every configured topic that exists in the graph is
offered as a channel with its ROS 2 type (schema encoding `ros2msg`, the `.msg` definition with its nested types,
as rosbag2 writes it) and its messages as they arrived (serialized CDR, never decoded here). Topics that appear
later are picked up within `discovery_period_s`. It serves on `address`:`port` (127.0.0.1:8765): the viewer
connects to ws://ADDRESS:PORT. Read-only: clients may not publish or call services through it.
"""
from __future__ import annotations

import time

from rclpy.qos import QoSProfile

from tango2_ros.nodes.base import OK, WARN, Tango2Node, run_node
from tango2_ros.ros.recording import RecordingError, message_class, message_definition

DEFAULT_TOPICS = ["sds/own_ship", "sds/targets", "sds/decision", "sds/scene", "sds/markers", "sds/detections",
                  "sdf/state", "sdf/proposal", "sdf/command", "sdf/emergency_stop", "sdm/report", "/diagnostics"]


class FoxgloveServer(Tango2Node):
    def __init__(self) -> None:
        super().__init__("foxglove_server")
        self.declare("address", "127.0.0.1", "Address the Foxglove WebSocket server listens on.")
        self.declare("port", 8765, "TCP port (0 = any free port, reported on /diagnostics).", min_value=0,
                     max_value=65535)
        self.declare("topics", DEFAULT_TOPICS, "Topics offered (relative names are in this node's namespace).")
        self.declare("discovery_period_s", 1.0, "How often the graph is looked at for the topics not yet offered.",
                     min_value=0.1, max_value=60.0)
        self._server = None
        self._channels: dict[str, object] = {}
        self._refused: dict[str, str] = {}

    def configure(self) -> None:
        import foxglove

        self._server = foxglove.start_server(name=self.get_fully_qualified_name(), host=self.param("address"),
                                             port=self.param("port"))
        self._wanted = {self.resolve_topic_name(topic) for topic in self.param("topics")}
        self.create_timer(self.param("discovery_period_s"), self._discover)
        self._discover()

    def activate(self) -> None:
        self._report()

    def cleanup(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def _discover(self) -> None:
        if self._server is None:
            return
        for topic, types in self.get_topic_names_and_types():
            if topic in self._wanted and topic not in self._channels and topic not in self._refused:
                self._offer(topic, types[0])

    def _offer(self, topic: str, type_name: str) -> None:
        import foxglove

        try:
            definition, kind = message_definition(type_name), message_class(type_name)
        except RecordingError as exc:
            self._refused[topic] = str(exc)  # said once on /diagnostics, not looked up again
            self._report()
            return
        schema = foxglove.Schema(name=type_name.replace("/msg/", "/"), encoding="ros2msg", data=definition.encode())
        channel = foxglove.Channel(topic, schema=schema, message_encoding="cdr")
        self._channels[topic] = channel
        self.create_subscription(kind, topic, lambda data, c=channel: c.log(data, log_time=time.time_ns()),
                                 QoSProfile(depth=10), raw=True)
        self._report()

    def _report(self) -> None:
        if self._server is None:
            return
        url = f"ws://{self.param('address')}:{self._server.port}"
        offered = ", ".join(sorted(self._channels)) or "none yet"
        level = WARN if self._refused else OK
        refused = "; ".join(f"{t}: {why}" for t, why in self._refused.items())
        self.set_status(level, f"serving {url}", url=url, offered=offered, refused=refused)


def main(args: list[str] | None = None) -> int:
    return run_node(FoxgloveServer, args)


if __name__ == "__main__":
    raise SystemExit(main())
