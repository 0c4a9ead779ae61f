"""Target fusion (ROS-free): AIS reports and radar (ARPA) targets of the same ship become one track.

Association is by position (a radar target within `gate_nm` of an AIS ship, both extrapolated to the same
instant) and motion (course within `course_gate_deg` and speed within `speed_gate_kn` when both are known).
An associated pair becomes one track under the AIS identity with both sources; the fused position weights each
sensor by its covariance. Tracks that no sensor has updated for `lost_after_s` are dropped and counted; a new
sensor report starts a new track.

Camera sightings give a bearing and no range: `fuse_bearings` lets each one refine the bearing of the track it
matches (a one-dimensional Kalman update across the line of sight, weighted by both uncertainties) and returns
those that match no track, contacts only the camera sees.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from tango2_ros.sds.geometry import Kinematics, bearing, distance, signed

SOURCE_AIS, SOURCE_RADAR, SOURCE_CAMERA = 1, 2, 4


@dataclass(frozen=True)
class Report:
    """One sensor's view of one ship at one instant (local frame, NM)."""

    sensor_id: str  # "AIS-440123450", "RADAR-07"
    source: int
    kinematics: Kinematics
    time_s: float
    variance_nm2: float
    mmsi: int = 0
    name: str = ""
    category: int = 0


@dataclass
class Track:
    id: str
    sources: int
    kinematics: Kinematics
    time_s: float
    mmsi: int = 0
    name: str = ""
    category: int = 0
    sensor_ids: set[str] = field(default_factory=set)
    variance_nm2: float = 0.0


@dataclass
class Tracker:
    gate_nm: float = 0.3
    course_gate_deg: float = 30.0
    speed_gate_kn: float = 5.0
    lost_after_s: float = 30.0
    dropped: int = 0

    def __post_init__(self) -> None:
        self.tracks: dict[str, Track] = {}

    def update(self, reports: list[Report], now_s: float) -> list[Track]:
        """Fuse one round of reports (the latest of every sensor target) into the track list."""
        ais = [r for r in reports if r.source == SOURCE_AIS]
        radar = [r for r in reports if r.source == SOURCE_RADAR]
        fused: dict[str, Track] = {}
        for report in ais:
            fused[report.sensor_id] = Track(report.sensor_id, SOURCE_AIS, report.kinematics, report.time_s, report.mmsi,
                                            report.name, report.category, {report.sensor_id}, report.variance_nm2)
        for report in radar:
            match = self._match(report, fused.values())
            if match is None:
                fused[report.sensor_id] = Track(report.sensor_id, SOURCE_RADAR, report.kinematics, report.time_s,
                                                sensor_ids={report.sensor_id}, variance_nm2=report.variance_nm2)
            else:
                self._merge(match, report)
        for track_id, track in fused.items():
            self.tracks[track_id] = track
        for track_id in [k for k, t in self.tracks.items() if now_s - t.time_s > self.lost_after_s]:
            del self.tracks[track_id]
            self.dropped += 1
        # a radar-only track that has since been associated with an AIS track is the same ship: keep one
        for track in [t for t in self.tracks.values() if t.sources & SOURCE_AIS]:
            for sensor_id in track.sensor_ids - {track.id}:
                self.tracks.pop(sensor_id, None)
        return list(self.tracks.values())

    def _match(self, report: Report, tracks) -> Track | None:
        best, best_distance = None, self.gate_nm
        for track in tracks:
            if track.sources & SOURCE_RADAR:
                continue  # already paired with another radar target
            there = _at(track.kinematics, report.time_s - track.time_s)
            gap = distance(there, report.kinematics)
            if gap > best_distance or not self._motion_agrees(there, report.kinematics):
                continue
            best, best_distance = track, gap
        return best

    def _motion_agrees(self, a: Kinematics, b: Kinematics) -> bool:
        if any(not math.isfinite(v) for v in (a.course_deg, a.speed_kn, b.course_deg, b.speed_kn)):
            return True
        slow = max(a.speed_kn, b.speed_kn) < 1.0  # course is meaningless for a ship (nearly) stopped
        return abs(a.speed_kn - b.speed_kn) <= self.speed_gate_kn and (
            slow or abs(signed(a.course_deg - b.course_deg)) <= self.course_gate_deg)

    @staticmethod
    def _merge(track: Track, report: Report) -> None:
        """Inverse-variance weighted position at the radar's instant; AIS motion kept (it is the ship's own log)."""
        there = _at(track.kinematics, report.time_s - track.time_s)
        wa = 1.0 / max(track.variance_nm2, 1e-9)
        wr = 1.0 / max(report.variance_nm2, 1e-9)
        north = (there.north_nm * wa + report.kinematics.north_nm * wr) / (wa + wr)
        east = (there.east_nm * wa + report.kinematics.east_nm * wr) / (wa + wr)
        motion = there if math.isfinite(there.course_deg) and math.isfinite(there.speed_kn) else report.kinematics
        track.kinematics = Kinematics(north, east, motion.course_deg, motion.speed_kn)
        track.time_s = max(track.time_s, report.time_s)
        track.sources |= SOURCE_RADAR
        track.sensor_ids.add(report.sensor_id)
        track.variance_nm2 = 1.0 / (wa + wr)


@dataclass(frozen=True)
class Sighting:
    """A camera's detection as a true bearing from own ship."""

    bearing_deg: float
    sigma_deg: float
    label: str = ""


def fuse_bearings(tracks: list[Track], own: Kinematics, sightings: list[Sighting], gate_deg: float) -> list[Sighting]:
    """Refine and mark (SOURCE_CAMERA) each track that a sighting matches: nearest bearing within gate_deg, one
    sighting per track, closest pairs first. Returns the sightings that match no track."""
    pairs = []
    for i, sighting in enumerate(sightings):
        for track in tracks:
            gap = abs(signed(sighting.bearing_deg - bearing(own, track.kinematics)))
            if gap <= gate_deg:
                pairs.append((gap, i, track))
    used_sightings, used_tracks = set(), set()
    for _, i, track in sorted(pairs, key=lambda p: p[0]):
        if i in used_sightings or track.id in used_tracks:
            continue
        used_sightings.add(i)
        used_tracks.add(track.id)
        _refine_bearing(track, own, sightings[i])
    return [s for i, s in enumerate(sightings) if i not in used_sightings]


def _refine_bearing(track: Track, own: Kinematics, sighting: Sighting) -> None:
    north, east = track.kinematics.north_nm - own.north_nm, track.kinematics.east_nm - own.east_nm
    range_nm = math.hypot(north, east)
    if range_nm > 1e-6:
        track_sigma = math.sqrt(max(track.variance_nm2, 1e-12)) / range_nm  # radians across the line of sight
        camera_sigma = math.radians(sighting.sigma_deg)
        gain = track_sigma**2 / (track_sigma**2 + camera_sigma**2)
        current = bearing(own, track.kinematics)
        angle = math.radians(current + gain * signed(sighting.bearing_deg - current))
        track.kinematics = Kinematics(own.north_nm + range_nm * math.cos(angle), own.east_nm + range_nm * math.sin(angle),
                                      track.kinematics.course_deg, track.kinematics.speed_kn)
    track.sources |= SOURCE_CAMERA


def _at(kinematics: Kinematics, seconds: float) -> Kinematics:
    """Dead reckoning; a ship whose motion is unknown stays where it was reported."""
    if math.isfinite(kinematics.course_deg) and math.isfinite(kinematics.speed_kn):
        return kinematics.moved(seconds / 60.0)
    return kinematics
