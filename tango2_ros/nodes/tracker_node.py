"""tracker_node: fuses the bridge's raw AIS and radar targets and the camera's bearings into one track per ship
(tango2_ros.sds.tracking).

Subscribes `sds/raw_targets`, `sds/own_ship` and `sds/detections` (the perception node's DetectionArray);
publishes `sds/targets` (TargetArray) on every raw picture with fused tracks, their sources, position relative to
own ship, CPA/TCPA, quality and the count of tracks dropped as lost. A camera detection of a `camera_classes`
object becomes a true bearing (heading + camera mounting + the detection's relative bearing) that refines the
track it matches; one that matches none is published as a bearing-only contact (`CAM-n`, position NaN), which
the colreg node cannot act on but rviz and the scene description show. Positions are fused in a local plane fixed
at the first own-ship position after configuring (exact enough over tens of miles); cleaning up forgets all.
"""
from __future__ import annotations

import math
import time

from rclpy.time import Time

from tango2_msgs.msg import DetectionArray, OwnShipState, Target, TargetArray
from tango2_ros.nodes.base import OK, WARN, Tango2Node, run_node
from tango2_ros.ros.conversions.ship import bearing_only_to_ros, track_to_ros
from tango2_ros.sds.geometry import NM_M, Kinematics, to_local
from tango2_ros.sds.tracking import SOURCE_AIS, SOURCE_RADAR, Report, Sighting, Tracker, fuse_bearings


class TrackerNode(Tango2Node):
    def __init__(self) -> None:
        super().__init__("tracker_node")
        self.declare("gate_nm", 0.3, "Radar and AIS closer than this (and moving alike) are one ship.",
                     min_value=0.01, max_value=5.0)
        self.declare("lost_after_s", 30.0, "A track no sensor updates for this long is dropped.", min_value=1.0,
                     max_value=3600.0)
        self.declare("camera_mount_deg", 0.0, "Camera's optical axis relative to the bow, degrees to starboard.",
                     min_value=-180.0, max_value=180.0)
        self.declare("camera_classes", "boat", "Comma-separated detector classes that are vessels.")
        self.declare("camera_gate_deg", 3.0, "A sighting within this bearing of a track is that track.",
                     min_value=0.1, max_value=30.0)
        self.declare("camera_bearing_sigma_deg", 1.0, "Standard deviation of a camera bearing.", min_value=0.01,
                     max_value=20.0)
        self.declare("camera_max_age_s", 2.0, "Detections older than this (by stamp) than the picture are unused.",
                     min_value=0.0, max_value=60.0)
        self._made: list = []
        self._publisher = None
        self._forget_everything()

    def _forget_everything(self) -> None:
        self._tracker = Tracker(gate_nm=self.param("gate_nm"), lost_after_s=self.param("lost_after_s"))
        self._origin: tuple[float, float] | None = None
        self._own: OwnShipState | None = None
        self._detections: DetectionArray | None = None
        self._camera_counts = {"sightings": 0, "camera_only": 0, "detections_dropped": 0}

    def executor_threads(self) -> int:
        return 1

    def configure(self) -> None:
        self._forget_everything()
        self._publisher = self.create_publisher(TargetArray, "sds/targets", 10)
        self._made = [self._publisher,
                      self.create_subscription(OwnShipState, "sds/own_ship", self._on_own_ship, 10),
                      self.create_subscription(TargetArray, "sds/raw_targets", self._on_raw_targets, 10),
                      self.create_subscription(DetectionArray, "sds/detections", self._on_detections, 10)]
        self.set_status(WARN, "waiting for own ship and targets")

    def cleanup(self) -> None:
        for entity in self._made:
            (self.destroy_publisher if entity is self._publisher else self.destroy_subscription)(entity)
        self._made, self._publisher = [], None

    def _on_detections(self, message: DetectionArray) -> None:
        self._detections = message

    def _on_own_ship(self, message: OwnShipState) -> None:
        if message.position_valid and math.isfinite(message.latitude_deg) and math.isfinite(message.longitude_deg):
            self._own = message
            self._origin = self._origin or (message.latitude_deg, message.longitude_deg)

    def _on_raw_targets(self, message: TargetArray) -> None:
        if self._origin is None or self._publisher is None:
            return
        now = time.monotonic()
        reports = [r for r in (self._report(t, now) for t in message.targets) if r is not None]
        tracks = self._tracker.update(reports, now)
        own = self._own
        own_local = Kinematics(*to_local(own.latitude_deg, own.longitude_deg, *self._origin),
                               own.course_over_ground_deg if math.isfinite(own.course_over_ground_deg) else 0.0,
                               own.speed_over_ground_kn if math.isfinite(own.speed_over_ground_kn) else 0.0)
        camera_only = fuse_bearings(tracks, own_local, self._sightings(message.header.stamp, own),
                                    self.param("camera_gate_deg"))
        out = TargetArray(dropped_tracks=self._tracker.dropped)
        out.header = message.header
        out.targets = [track_to_ros(track, self._origin, own_local, now) for track in tracks]
        out.targets += [bearing_only_to_ros(i, sighting) for i, sighting in enumerate(camera_only, 1)]
        self._publisher.publish(out)
        self._camera_counts["camera_only"] = len(camera_only)
        fused = sum(1 for t in tracks if t.sources & (t.sources - 1))  # more than one sensor
        self.set_status(OK, f"{len(tracks)} track(s), {fused} seen by more than one sensor, "
                            f"{len(camera_only)} camera-only bearing(s)", tracks=len(tracks), fused=fused,
                        dropped=self._tracker.dropped, **self._camera_counts)

    def _sightings(self, stamp, own: OwnShipState) -> list[Sighting]:
        """The latest image's vessel detections as true bearings, if that image is recent enough by stamp."""
        detections = self._detections
        if detections is None:
            return []
        age = abs(Time.from_msg(stamp).nanoseconds - Time.from_msg(detections.header.stamp).nanoseconds) / 1e9
        heading = own.heading_deg if own.heading_valid and math.isfinite(own.heading_deg) else own.course_over_ground_deg
        if age > self.param("camera_max_age_s"):
            return []  # no image of this instant
        if not math.isfinite(heading):
            self._camera_counts["detections_dropped"] += len(detections.detections)  # bearings need a heading
            return []
        classes = {c.strip() for c in self.param("camera_classes").split(",") if c.strip()}
        sightings = [Sighting((heading + self.param("camera_mount_deg") + d.relative_bearing_deg) % 360.0,
                              self.param("camera_bearing_sigma_deg"), d.class_name)
                     for d in detections.detections if d.class_name in classes and math.isfinite(d.relative_bearing_deg)]
        self._camera_counts["sightings"] += len(sightings)
        return sightings

    def _report(self, target: Target, now: float) -> Report | None:
        if not (math.isfinite(target.latitude_deg) and math.isfinite(target.longitude_deg)):
            return None
        north, east = to_local(target.latitude_deg, target.longitude_deg, *self._origin)
        variance = max(target.position_covariance[0], 1.0) / NM_M**2
        source = SOURCE_AIS if target.sources & Target.SOURCE_AIS else SOURCE_RADAR
        return Report(target.id, source, Kinematics(north, east, target.course_deg, target.speed_kn),
                      now - target.age_s, variance, target.mmsi, target.name, target.category)


def main(args: list[str] | None = None) -> int:
    return run_node(TrackerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
