"""The real nodes of a simulated passage for `tango2 sds simulate` and the tests: started once for a run, fed by
the simulator through `ship_loop`, optionally recorded to MCAP."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

from tango2_ros.bringup.profiles import NodeSpec, Profile
from tango2_ros.bringup.supervisor import Supervisor
from tango2_ros.errors import UserError
from tango2_ros.ros.recording import McapRecorder
from tango2_ros.sds.simulator import SIM_EPOCH_S
from tango2_ros.sim import SIM_NAMESPACE
from tango2_ros.sim.ship_loop import SensorLoop, TrackLoop

RECORDED_TOPICS = (("sds/own_ship", "tango2_msgs/msg/OwnShipState"), ("sds/raw_targets", "tango2_msgs/msg/TargetArray"),
                   ("sds/detections", "tango2_msgs/msg/DetectionArray"), ("sds/targets", "tango2_msgs/msg/TargetArray"),
                   ("sds/decision", "tango2_msgs/msg/NavigationDecision"),
                   ("sds/markers", "visualization_msgs/msg/MarkerArray"))


class ShipRig:
    """The real nodes of a simulated passage, started once for every scenario of a run, in their own namespace:
    nmea_bridge, tracker_node and colreg_node fed by simulated sensors, or the colreg node alone fed perfect tracks."""

    def __init__(self, perfect_tracks: bool = False) -> None:
        nodes = [NodeSpec("colreg_node", "colreg_node", SIM_NAMESPACE, parameters={"stale_after_s": 600.0})]
        if not perfect_tracks:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            nodes = [NodeSpec("nmea_bridge", "nmea_bridge", SIM_NAMESPACE, parameters={
                         "udp_address": "127.0.0.1", "udp_port": port, "stamp_with_gnss_time": True,
                         "targets_on_fix": True}),
                     NodeSpec("tracker_node", "tracker_node", SIM_NAMESPACE)] + nodes
        self.supervisor = Supervisor(Profile("sds-sim", "nodes of the simulated passage", tuple(nodes),
                                             Path("<tango2 sds simulate>")), out=sys.stderr)
        if not self.supervisor.start():
            self.supervisor.shutdown()
            raise UserError("the simulation's nodes did not come up")
        node = self.supervisor.node
        if perfect_tracks:
            self.loop = TrackLoop(node, SIM_NAMESPACE)
            self.description = "colreg_node over ROS 2, fed perfect tracks"
        else:
            self.loop = SensorLoop(node, SIM_NAMESPACE, port, reset=self._reset)
            self.description = "NMEA/UDP sensors and camera bearings -> nmea_bridge -> tracker_node -> colreg_node"
        self.recorder = None

    def _reset(self) -> None:
        for name in ("nmea_bridge", "tracker_node"):
            if not self.supervisor.reconfigure(name):
                raise UserError(f"{name} could not be reset for the next scenario")

    def begin(self, scenario, record: Path | None):
        """Start a scenario; returns the decision function for the simulator."""
        self.loop.start(scenario)
        if record is not None:
            self.recorder = McapRecorder(self.supervisor.node, record,
                                         [(f"{SIM_NAMESPACE}/{topic}", kind) for topic, kind in RECORDED_TOPICS],
                                         clock=lambda: round((SIM_EPOCH_S + self.loop.now_s) * 1e9))
        return self.loop.decide

    def end(self) -> dict | None:
        """Close the scenario's recording; returns what it holds."""
        if self.recorder is None:
            return None
        self.recorder.close()
        summary = {"file": str(self.recorder.path), "messages": dict(self.recorder.counts)}
        self.recorder = None
        return summary

    def shutdown(self) -> None:
        self.end()
        self.supervisor.shutdown()
