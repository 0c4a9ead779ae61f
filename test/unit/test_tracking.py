"""Target fusion: AIS and radar reports of one ship become one track; others stay apart; lost tracks go; camera
bearings refine the tracks they match and stand alone otherwise."""
import math

import pytest

from tango2_ros.sds.geometry import Kinematics, bearing, distance
from tango2_ros.sds.tracking import SOURCE_AIS, SOURCE_CAMERA, SOURCE_RADAR, Report, Sighting, Tracker, fuse_bearings


def ais(mmsi, north, east, course=180.0, speed=12.0, t=0.0):
    return Report(f"AIS-{mmsi}", SOURCE_AIS, Kinematics(north, east, course, speed), t, (10 / 1852) ** 2, mmsi, "SHIP")


def radar(number, north, east, course=180.0, speed=12.0, t=0.0):
    return Report(f"RADAR-{number:02d}", SOURCE_RADAR, Kinematics(north, east, course, speed), t, (60 / 1852) ** 2)


def test_one_ship_seen_by_ais_and_radar_is_one_track_weighted_towards_ais():
    tracks = Tracker().update([ais(1, 5.0, 0.0), radar(7, 5.1, 0.05)], now_s=0.0)
    assert len(tracks) == 1
    track = tracks[0]
    assert track.id == "AIS-1" and track.sources == SOURCE_AIS | SOURCE_RADAR and track.sensor_ids == {"AIS-1", "RADAR-07"}
    assert abs(track.kinematics.north_nm - 5.0) < 0.01  # AIS (10 m) outweighs radar (60 m)
    assert track.variance_nm2 < (10 / 1852) ** 2


def test_reports_apart_in_position_or_motion_stay_separate_tracks():
    far = Tracker().update([ais(1, 5.0, 0.0), radar(7, 6.0, 0.0)], now_s=0.0)
    other_way = Tracker().update([ais(1, 5.0, 0.0), radar(7, 5.05, 0.0, course=0.0)], now_s=0.0)
    assert len(far) == 2 and len(other_way) == 2
    assert {t.sources for t in far} == {SOURCE_AIS, SOURCE_RADAR}


def test_ais_without_motion_still_associates_and_lost_tracks_are_dropped_and_counted():
    tracker = Tracker(lost_after_s=10.0)
    tracks = tracker.update([ais(1, 5.0, 0.0, course=math.nan, speed=math.nan), radar(7, 5.02, 0.0, speed=0.0)], 0.0)
    assert len(tracks) == 1 and tracks[0].sources == SOURCE_AIS | SOURCE_RADAR
    assert tracker.update([radar(8, -3.0, 2.0, t=20.0)], now_s=20.0)[0].id == "RADAR-08"
    assert tracker.dropped == 1 and set(tracker.tracks) == {"RADAR-08"}


def test_a_radar_track_that_later_pairs_with_ais_is_not_kept_twice():
    tracker = Tracker()
    tracker.update([radar(7, 5.0, 0.0)], now_s=0.0)
    tracks = tracker.update([ais(1, 5.0, 0.0, t=1.0), radar(7, 4.997, 0.0, t=1.0)], now_s=1.0)
    assert [t.id for t in tracks] == ["AIS-1"]


def test_a_camera_bearing_pulls_a_radar_track_across_the_line_of_sight_not_along_it():
    own = Kinematics(0.0, 0.0, 0.0, 10.0)
    tracks = Tracker().update([radar(7, 3.0, 0.1), ais(1, -2.0, 2.0)], now_s=0.0)
    radar_track = next(t for t in tracks if t.id == "RADAR-07")
    before_range, before_bearing = distance(own, radar_track.kinematics), bearing(own, radar_track.kinematics)
    unmatched = fuse_bearings(tracks, own, [Sighting(0.0, 0.2, "boat"), Sighting(250.0, 0.5, "boat")], gate_deg=3.0)
    assert [s.bearing_deg for s in unmatched] == [250.0]  # nothing there: a camera-only contact
    assert radar_track.sources == SOURCE_RADAR | SOURCE_CAMERA
    assert distance(own, radar_track.kinematics) == pytest.approx(before_range)
    # radar's 60 m at 3 NM is about 0.6 deg, the camera's 0.2 deg: the bearing moves most of the way to 0
    assert 0.0 < bearing(own, radar_track.kinematics) < 0.3 * before_bearing
    ais_track = next(t for t in tracks if t.id == "AIS-1")
    assert ais_track.sources == SOURCE_AIS  # not at the camera's bearings


def test_each_sighting_goes_to_one_track_the_closest_in_bearing():
    own = Kinematics(0.0, 0.0, 0.0, 10.0)
    tracks = Tracker().update([radar(1, 4.0, 0.05), radar(2, 2.0, 0.08)], now_s=0.0)  # 0.7 and 2.3 deg
    unmatched = fuse_bearings(tracks, own, [Sighting(1.0, 1.0), Sighting(1.1, 1.0)], gate_deg=3.0)
    assert unmatched == [] and all(t.sources & SOURCE_CAMERA for t in tracks)
