"""Target fusion: AIS and radar reports of one ship become one track; others stay apart; lost tracks go."""
import math

from tango2_ros.sds.geometry import Kinematics
from tango2_ros.sds.tracking import SOURCE_AIS, SOURCE_RADAR, Report, Tracker


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
