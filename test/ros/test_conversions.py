"""The conversions layer: every table between domain names and message codes has its inverse, and domain values
survive the round trip through their messages."""
import math

import pytest

from builtin_interfaces.msg import Time

from tango2_msgs.msg import ModelInfo, TargetAssessment
from tango2_ros.core import deployment
from tango2_ros.ros.conversions import farm, ship, stamps
from tango2_ros.ros.conversions.medicine import report_to_ros
from tango2_ros.sdf.payloads import readings_from_payload
from tango2_ros.sdf.supervisor import ACCEPTED, CLAMPED, REJECTED
from tango2_ros.sds.colreg import CATEGORIES, ColregParameters, Navigator, Target
from tango2_ros.sds.geometry import Kinematics
from tango2_ros.sds.picture import OwnShip, RawTarget


@pytest.mark.parametrize("to_ros, from_ros, names", [
    (ship.CATEGORY_TO_ROS, ship.CATEGORY_FROM_ROS, CATEGORIES),
    (ship.ENCOUNTER_TO_ROS, ship.ENCOUNTER_FROM_ROS, ("safe", "head-on", "crossing-give-way", "crossing-stand-on",
                                                      "overtaking", "overtaken")),
    (ship.ROLE_TO_ROS, ship.ROLE_FROM_ROS, ("none", "give-way", "stand-on")),
    (farm.VERDICT_TO_ROS, farm.VERDICT_FROM_ROS, (ACCEPTED, CLAMPED, REJECTED)),
])
def test_every_table_has_its_inverse(to_ros, from_ros, names):
    assert set(to_ros) == set(names)
    assert all(from_ros[to_ros[name]] == name for name in names)
    assert len(set(to_ros.values())) == len(names)  # no two names share a code


def test_unknown_category_is_kept_on_the_wire_and_judged_as_power_driven():
    code = ship.category_to_ros("unknown")
    assert ship.category_from_ros(code) == "power-driven"
    assert ship.category_from_ros(99) == "power-driven"


def test_a_decision_survives_its_message():
    navigator = Navigator(ColregParameters())
    decision = navigator.decide(Kinematics(0, 0, 0, 12), (10.0, 0.0), [Target("TS1", Kinematics(5, 0.1, 180, 12))])
    message = ship.decision_to_ros(decision)
    assert message.assessments[0].encounter == TargetAssessment.ENCOUNTER_HEAD_ON and message.action_required
    back = ship.decision_from_ros(message, rename=lambda track_id: f"sim-{track_id}")
    assert (back.state, back.course_deg, back.rules, back.target_ids) == (
        decision.state, decision.course_deg, decision.rules, tuple(f"sim-{t}" for t in decision.target_ids))


def test_targets_from_messages_and_raw_targets_to_messages():
    own = OwnShip(latitude_deg=35.0, longitude_deg=129.0, course_deg=0.0, speed_kn=10.0)
    raw = RawTarget("AIS-1", "ais", 35.05, 129.0, 180.0, 10.0, 10.0, 1.0, category="fishing", mmsi=1, updated=5.0)
    message = ship.raw_target_to_ros(raw, own, now=6.0)
    assert message.range_m == pytest.approx(3 * 1852, rel=1e-3) and message.age_s == 1.0
    assert message.cpa_m == pytest.approx(0.0, abs=1.0) and message.tcpa_s == pytest.approx(540.0, rel=1e-2)
    target = ship.target_from_ros(message, (35.0, 129.0))
    assert target.category == "fishing" and target.kinematics.north_nm == pytest.approx(3.0, rel=1e-3)
    message.latitude_deg = message.longitude_deg = math.nan  # relative position only
    assert ship.target_from_ros(message, (35.0, 129.0)).kinematics.north_nm == pytest.approx(3.0, rel=1e-3)
    message.north_m = math.nan
    assert ship.target_from_ros(message, (35.0, 129.0)) is None


def test_fused_tracks_and_camera_only_bearings_become_targets():
    from tango2_ros.sds.tracking import Sighting, Track

    track = Track("AIS-1", sources=3, kinematics=Kinematics(3.0, 0.0, 180.0, 10.0), time_s=4.0, mmsi=1,
                  variance_nm2=0.01)
    message = ship.track_to_ros(track, (35.0, 129.0), Kinematics(0.0, 0.0, 0.0, 10.0), now=5.0)
    assert message.quality == 1.0 and message.age_s == 1.0  # two sensors
    assert message.range_m == pytest.approx(3 * 1852, rel=1e-3) and message.tcpa_s == pytest.approx(540.0, rel=1e-2)
    back = ship.target_from_ros(message, (35.0, 129.0))
    assert back.kinematics.north_nm == pytest.approx(3.0, rel=1e-6) and back.kinematics.course_deg == 180.0
    camera = ship.bearing_only_to_ros(2, Sighting(45.0, 1.0, "boat"))
    assert (camera.id, camera.bearing_deg, camera.name) == ("CAM-2", 45.0, "boat") and math.isnan(camera.range_m)
    assert ship.target_from_ros(camera, (35.0, 129.0)) is None  # a bearing is no position


@pytest.mark.parametrize("seconds", [0.0, 1_000_000_000.5, 12.999_999_999_9, 1.000_000_000_4])
def test_stamps_round_trip_and_never_carry_a_full_second_of_nanoseconds(seconds):
    stamp = stamps.seconds_to_stamp(seconds)
    assert 0 <= stamp.nanosec < 1_000_000_000 and stamps.stamp_to_seconds(stamp) == pytest.approx(seconds, abs=1e-9)


def test_own_ship_with_depth_and_wind():
    own = OwnShip(latitude_deg=35.0, longitude_deg=129.0, course_deg=90.0, speed_kn=12.0, depth_m=20.0,
                  wind_speed_kn=15.0, wind_from_deg=45.0, position_valid=True, sources=["RMC", "DBT", "MWV"])
    message = ship.own_ship_to_ros(own)
    assert (message.depth_m, message.wind_speed_kn, message.wind_from_deg) == (20.0, 15.0, 45.0)
    assert message.source == "RMC,DBT,MWV" and message.position_valid and math.isnan(message.rate_of_turn_deg_min)


def test_deployment_states_are_the_messages_states():
    assert (deployment.AVAILABLE, deployment.LOADING, deployment.ACTIVE, deployment.FAILED) == (
        ModelInfo.STATE_AVAILABLE, ModelInfo.STATE_LOADING, ModelInfo.STATE_ACTIVE, ModelInfo.STATE_FAILED)


def test_greenhouse_readings_become_a_state_with_the_invalid_ones_named():
    readings = readings_from_payload(b'{"air_temperature_c": 999, "co2_ppm": 650, "is_day": true, "time": 100}')
    state = farm.state_to_ros(readings, "tomato", "generative")
    assert math.isnan(state.air_temperature_c) and state.co2_ppm == 650.0 and state.is_day
    assert "air_temperature_c" in state.invalid_readings and "co2_ppm" not in state.invalid_readings
    assert farm.observation_from_state(state) is None  # a needed reading is invalid: no decision informed


def test_a_report_draft_marks_what_the_model_does_not_assess():
    from helpers.sdm import findings_with
    from tango2_ros.sdm.pipeline import StudyReport
    from tango2_ros.sdm.report import template_draft

    findings = findings_with("pleural-effusion")
    stamp = Time(sec=1_700_000_000, nanosec=5)
    message = report_to_ros(StudyReport("key", findings, template_draft(findings), "m@1"), stamp)
    assert message.header.stamp == stamp
    assessed = {f.label: f.probability for f in message.findings}
    assert any(math.isnan(p) for p in assessed.values()) and assessed["Pleural effusion"] == pytest.approx(0.9)
