"""The ship's domain values and `tango2_msgs` (Target, TargetAssessment, NavigationDecision)."""
from __future__ import annotations

import math

from tango2_msgs.msg import NavigationDecision, OwnShipState, Target as TargetMsg, TargetAssessment
from tango2_ros.sds.colreg import MANOEUVRING, Decision, Target
from tango2_ros.sds.geometry import NM_M, Kinematics, Relative, relative, to_geographic, to_local
from tango2_ros.sds.picture import UNKNOWN, OwnShip, RawTarget

CATEGORY_TO_ROS = {
    "power-driven": TargetMsg.CATEGORY_POWER_DRIVEN, "sailing": TargetMsg.CATEGORY_SAILING,
    "fishing": TargetMsg.CATEGORY_FISHING, "restricted-maneuverability": TargetMsg.CATEGORY_RESTRICTED_MANEUVERABILITY,
    "not-under-command": TargetMsg.CATEGORY_NOT_UNDER_COMMAND,
    "constrained-by-draught": TargetMsg.CATEGORY_CONSTRAINED_BY_DRAUGHT,
}
# an unknown category is judged as power-driven (the rule-18 default: no privilege assumed)
CATEGORY_FROM_ROS = {code: name for name, code in CATEGORY_TO_ROS.items()} | {TargetMsg.CATEGORY_UNKNOWN: "power-driven"}
ENCOUNTER_TO_ROS = {
    "safe": TargetAssessment.ENCOUNTER_SAFE, "head-on": TargetAssessment.ENCOUNTER_HEAD_ON,
    "crossing-give-way": TargetAssessment.ENCOUNTER_CROSSING_GIVE_WAY,
    "crossing-stand-on": TargetAssessment.ENCOUNTER_CROSSING_STAND_ON,
    "overtaking": TargetAssessment.ENCOUNTER_OVERTAKING, "overtaken": TargetAssessment.ENCOUNTER_OVERTAKEN,
}
ENCOUNTER_FROM_ROS = {code: name for name, code in ENCOUNTER_TO_ROS.items()}
ROLE_TO_ROS = {"none": TargetAssessment.ROLE_NONE, "give-way": TargetAssessment.ROLE_GIVE_WAY,
               "stand-on": TargetAssessment.ROLE_STAND_ON}
ROLE_FROM_ROS = {code: name for name, code in ROLE_TO_ROS.items()}


def category_to_ros(name: str) -> int:
    """A rule-18 category, or "unknown" (radar-only, AIS without static data)."""
    return TargetMsg.CATEGORY_UNKNOWN if name == UNKNOWN else CATEGORY_TO_ROS[name]


def category_from_ros(code: int) -> str:
    return CATEGORY_FROM_ROS.get(code, "power-driven")


def set_relative(message: TargetMsg, geometry: Relative) -> None:
    """Fill a Target's fields relative to own ship."""
    message.north_m, message.east_m = geometry.north_m, geometry.east_m
    message.bearing_deg, message.range_m = geometry.bearing_deg, geometry.range_m
    message.cpa_m, message.tcpa_s = geometry.cpa_m, geometry.tcpa_s


def target_from_ros(message: TargetMsg, origin: tuple[float, float]) -> Target | None:
    """A tracked target in the local frame around `origin` (lat, lon); None when its position is unknown.

    Unknown motion (AIS "not available") is judged as if stopped there, so a close ship still counts."""
    if math.isfinite(message.latitude_deg) and math.isfinite(message.longitude_deg):
        north, east = to_local(message.latitude_deg, message.longitude_deg, *origin)
    elif math.isfinite(message.north_m) and math.isfinite(message.east_m):
        north, east = message.north_m / NM_M, message.east_m / NM_M
    else:
        return None
    moving = math.isfinite(message.course_deg) and math.isfinite(message.speed_kn)
    course, speed = (message.course_deg % 360.0, message.speed_kn) if moving else (0.0, 0.0)
    return Target(message.id, Kinematics(north, east, course, speed), category_from_ros(message.category))


def decision_to_ros(decision: Decision) -> NavigationDecision:
    """A NORMAL decision with its assessments (the caller stamps it)."""
    assessments = [TargetAssessment(
        target_id=a.target_id, encounter=ENCOUNTER_TO_ROS[a.encounter], encounter_name=a.encounter,
        role=ROLE_TO_ROS[a.role], rules=list(a.rules), risk=1.0 if a.risk else 0.0, cpa_m=a.cpa_nm * NM_M,
        tcpa_s=a.tcpa_min * 60.0, relative_bearing_deg=a.relative_bearing_deg) for a in decision.assessments]
    return NavigationDecision(
        status=NavigationDecision.STATUS_NORMAL, state=decision.state, assessments=assessments,
        action_required=decision.state in MANOEUVRING, course_change_deg=decision.course_change_deg,
        speed_change_kn=decision.speed_change_kn, target_course_deg=decision.course_deg,
        target_speed_kn=decision.speed_kn, rules=list(decision.rules), rationale=decision.rationale,
    )


def degraded_decision_to_ros(reason: str) -> NavigationDecision:
    """A decision that recommends nothing and says why (stale or missing inputs)."""
    return NavigationDecision(status=NavigationDecision.STATUS_DEGRADED, status_reason=reason, state="degraded",
                              action_required=False, target_course_deg=math.nan, target_speed_kn=math.nan,
                              rationale=f"degraded: {reason}")


def decision_from_ros(message: NavigationDecision, rename=lambda track_id: track_id) -> Decision:
    """The decision as the simulator follows it: the ids of the targets at risk, renamed by `rename`."""
    return Decision(
        state=message.state, course_deg=message.target_course_deg, speed_kn=message.target_speed_kn,
        course_change_deg=message.course_change_deg, speed_change_kn=message.speed_change_kn,
        target_ids=tuple(rename(a.target_id) for a in message.assessments if a.risk > 0),
        rules=tuple(message.rules), rationale=message.rationale)


def scene_facts_from_ros(message: NavigationDecision, ranges_nm: dict[str, float]):
    """What the scene describer is told about a decision: its targets ranked by risk (ranges from the target
    picture, NaN where unknown) and its action (tango2_ros.sds.scene)."""
    from tango2_ros.sds import scene

    facts = [scene.TargetFact(
        id=a.target_id, relative_bearing_deg=a.relative_bearing_deg, range_nm=ranges_nm.get(a.target_id, math.nan),
        encounter=a.encounter_name, role=ROLE_FROM_ROS.get(a.role, "none"), rules=tuple(a.rules),
        cpa_nm=a.cpa_m / NM_M, tcpa_min=a.tcpa_s / 60.0) for a in message.assessments]
    return scene.ranked(facts), scene.action_of(message)


def own_ship_to_ros(own: OwnShip) -> OwnShipState:
    """The bridge's own-ship picture (the caller stamps it)."""
    message = OwnShipState(
        latitude_deg=own.latitude_deg, longitude_deg=own.longitude_deg, course_over_ground_deg=own.course_deg,
        speed_over_ground_kn=own.speed_kn, heading_deg=own.heading_deg, rate_of_turn_deg_min=own.rate_of_turn_deg_min,
        depth_m=own.depth_m, wind_speed_kn=own.wind_speed_kn, wind_from_deg=own.wind_from_deg,
        position_valid=own.position_valid, heading_valid=own.heading_valid, position_age_s=own.position_age_s,
        source=",".join(own.sources))
    message.header.frame_id = "wgs84"
    return message


def raw_target_to_ros(target: RawTarget, own: OwnShip, now: float) -> TargetMsg:
    """A target as received, with its geometry relative to own ship when own ship's position is known (CPA/TCPA
    only when both motions are)."""
    message = TargetMsg(
        id=target.id, sources=TargetMsg.SOURCE_AIS if target.source == "ais" else TargetMsg.SOURCE_RADAR,
        mmsi=target.mmsi, name=target.name, category=category_to_ros(target.category),
        latitude_deg=target.latitude_deg, longitude_deg=target.longitude_deg, course_deg=target.course_deg,
        speed_kn=target.speed_kn, position_covariance=[target.position_sigma_m ** 2, 0.0, 0.0,
                                                       target.position_sigma_m ** 2],
        quality=target.quality, age_s=now - target.updated)
    if math.isfinite(own.latitude_deg) and math.isfinite(own.longitude_deg):
        north, east = to_local(target.latitude_deg, target.longitude_deg, own.latitude_deg, own.longitude_deg)
        known = all(math.isfinite(v) for v in (own.course_deg, own.speed_kn, target.course_deg, target.speed_kn))
        origin = Kinematics(0.0, 0.0, own.course_deg, own.speed_kn) if known else Kinematics(0.0, 0.0, 0.0, 0.0)
        other = Kinematics(north, east, target.course_deg, target.speed_kn) if known else Kinematics(north, east, 0, 0)
        set_relative(message, relative(origin, other, motions_known=known))
    return message


def track_to_ros(track, origin: tuple[float, float], own_local: Kinematics, now: float) -> TargetMsg:
    """A fused track (tango2_ros.sds.tracking.Track) in the plane fixed at `origin`, relative to own ship."""
    lat, lon = to_geographic(track.kinematics.north_nm, track.kinematics.east_nm, *origin)
    target = TargetMsg(id=track.id, sources=track.sources, mmsi=track.mmsi, name=track.name, category=track.category,
                       latitude_deg=lat, longitude_deg=lon, course_deg=track.kinematics.course_deg,
                       speed_kn=track.kinematics.speed_kn,
                       position_covariance=[track.variance_nm2 * NM_M**2, 0.0, 0.0, track.variance_nm2 * NM_M**2],
                       quality=1.0 if track.sources & (track.sources - 1) else 0.7, age_s=now - track.time_s)
    known = math.isfinite(track.kinematics.course_deg) and math.isfinite(track.kinematics.speed_kn)
    set_relative(target, relative(own_local, track.kinematics, motions_known=known))
    return target


def bearing_only_to_ros(number: int, sighting) -> TargetMsg:
    """A camera sighting (tango2_ros.sds.tracking.Sighting) that matches no track: `CAM-n`, a bearing, no position."""
    return TargetMsg(id=f"CAM-{number}", sources=TargetMsg.SOURCE_CAMERA, name=sighting.label,
                     category=TargetMsg.CATEGORY_UNKNOWN, latitude_deg=math.nan, longitude_deg=math.nan,
                     north_m=math.nan, east_m=math.nan, course_deg=math.nan, speed_kn=math.nan,
                     bearing_deg=sighting.bearing_deg, range_m=math.nan, cpa_m=math.nan, tcpa_s=math.nan, quality=0.3,
                     age_s=0.0)
