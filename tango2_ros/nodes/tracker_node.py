"""tracker_node: fuses the bridge's raw AIS and radar targets into one track per ship (tango2_ros.sds.tracking).

Subscribes `sds/raw_targets` and `sds/own_ship`; publishes `sds/targets` (TargetArray) with fused tracks, their
sources, position relative to own ship, CPA/TCPA, quality and the count of tracks dropped as lost. Positions are
fused in a local plane fixed at the first own-ship position of the run (exact enough over tens of miles).
"""
from __future__ import annotations

import math
import time

from tango2_msgs.msg import OwnShipState, Target, TargetArray
from tango2_ros.nodes.base import OK, WARN, Tango2Node, run_node
from tango2_ros.sds.geometry import Kinematics, bearing, cpa, distance, to_geographic, to_local
from tango2_ros.sds.tracking import SOURCE_AIS, SOURCE_RADAR, Report, Tracker

NM_M = 1852.0


class TrackerNode(Tango2Node):
    def __init__(self) -> None:
        super().__init__("tracker_node")
        self.declare("gate_nm", 0.3, "Radar and AIS closer than this (and moving alike) are one ship.",
                     min_value=0.01, max_value=5.0)
        self.declare("lost_after_s", 30.0, "A track no sensor updates for this long is dropped.", min_value=1.0,
                     max_value=3600.0)
        self._tracker = Tracker(gate_nm=self.param("gate_nm"), lost_after_s=self.param("lost_after_s"))
        self._origin: tuple[float, float] | None = None
        self._own: OwnShipState | None = None
        self._publisher = None

    def executor_threads(self) -> int:
        return 1

    def configure(self) -> None:
        self._publisher = self.create_publisher(TargetArray, "sds/targets", 10)
        self.create_subscription(OwnShipState, "sds/own_ship", self._on_own_ship, 10)
        self.create_subscription(TargetArray, "sds/raw_targets", self._on_raw_targets, 10)
        self.set_status(WARN, "waiting for own ship and targets")

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
        out = TargetArray(dropped_tracks=self._tracker.dropped)
        out.header = message.header
        own = self._own
        own_local = Kinematics(*to_local(own.latitude_deg, own.longitude_deg, *self._origin),
                               own.course_over_ground_deg if math.isfinite(own.course_over_ground_deg) else 0.0,
                               own.speed_over_ground_kn if math.isfinite(own.speed_over_ground_kn) else 0.0)
        for track in tracks:
            lat, lon = to_geographic(track.kinematics.north_nm, track.kinematics.east_nm, *self._origin)
            target = Target(id=track.id, sources=track.sources, mmsi=track.mmsi, name=track.name,
                            category=track.category, latitude_deg=lat, longitude_deg=lon,
                            course_deg=track.kinematics.course_deg, speed_kn=track.kinematics.speed_kn,
                            position_covariance=[track.variance_nm2 * NM_M**2, 0.0, 0.0, track.variance_nm2 * NM_M**2],
                            quality=1.0 if track.sources == SOURCE_AIS | SOURCE_RADAR else 0.7, age_s=now - track.time_s)
            target.north_m = (track.kinematics.north_nm - own_local.north_nm) * NM_M
            target.east_m = (track.kinematics.east_nm - own_local.east_nm) * NM_M
            target.bearing_deg = bearing(own_local, track.kinematics)
            target.range_m = distance(own_local, track.kinematics) * NM_M
            if math.isfinite(track.kinematics.course_deg) and math.isfinite(track.kinematics.speed_kn):
                closest, minutes = cpa(own_local, track.kinematics)
                target.cpa_m, target.tcpa_s = closest * NM_M, minutes * 60.0
            else:
                target.cpa_m, target.tcpa_s = math.nan, math.nan
            out.targets.append(target)
        self._publisher.publish(out)
        fused = sum(1 for t in tracks if t.sources == SOURCE_AIS | SOURCE_RADAR)
        self.set_status(OK, f"{len(tracks)} track(s), {fused} fused from AIS and radar", tracks=len(tracks),
                        fused=fused, dropped=self._tracker.dropped)

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
