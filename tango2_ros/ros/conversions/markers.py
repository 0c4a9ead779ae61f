"""rviz markers for the COLREG picture: own ship, targets coloured by own role, predicted tracks to the closest
point of approach, and the decision. Frame `own_ship`: metres, x east, y north (ENU), own ship at the origin."""
from __future__ import annotations

import math

from geometry_msgs.msg import Point, Quaternion
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from tango2_ros.sds.colreg import Decision, Target
from tango2_ros.sds.geometry import NM_M, Kinematics

ROLE_COLOURS = {"give-way": (0.9, 0.1, 0.1), "stand-on": (0.95, 0.8, 0.1), "none": (0.2, 0.7, 0.2)}
SAFE_COLOUR = (0.6, 0.6, 0.6)
FRAME = "own_ship"


def _point(k: Kinematics) -> Point:
    return Point(x=k.east_nm * NM_M, y=k.north_nm * NM_M, z=0.0)


def _heading(course_deg: float) -> Quaternion:
    yaw = math.radians(90.0 - course_deg)  # ENU: yaw 0 = east, course 0 = north
    return Quaternion(z=math.sin(yaw / 2), w=math.cos(yaw / 2))


def _colour(rgb: tuple[float, float, float], alpha: float = 1.0) -> ColorRGBA:
    return ColorRGBA(r=rgb[0], g=rgb[1], b=rgb[2], a=alpha)


def markers(own: Kinematics, targets: list[Target], decision: Decision, stamp, horizon_min: float = 20.0) -> MarkerArray:
    array = MarkerArray(markers=[Marker(action=Marker.DELETEALL)])
    roles = {a.target_id: a for a in decision.assessments}

    def marker(kind: int, namespace: str, index: int, rgb, alpha: float = 1.0) -> Marker:
        m = Marker(type=kind, ns=namespace, id=index, action=Marker.ADD, color=_colour(rgb, alpha))
        m.header.frame_id, m.header.stamp = FRAME, stamp
        return m

    ship = marker(Marker.ARROW, "own_ship", 0, (0.1, 0.4, 0.9))
    ship.pose.position, ship.pose.orientation = _point(own), _heading(own.course_deg)
    ship.scale.x, ship.scale.y, ship.scale.z = 400.0, 120.0, 120.0
    array.markers.append(ship)
    advice = marker(Marker.ARROW, "decision", 0, (0.1, 0.9, 0.9), 0.8)
    advice.pose.position, advice.pose.orientation = _point(own), _heading(decision.course_deg)
    advice.scale.x, advice.scale.y, advice.scale.z = 1500.0, 60.0, 60.0
    array.markers.append(advice)
    label = marker(Marker.TEXT_VIEW_FACING, "decision", 1, (1.0, 1.0, 1.0))
    label.pose.position = Point(x=0.0, y=-600.0, z=200.0)
    label.scale.z = 180.0
    label.text = f"{decision.state}: rules {', '.join(map(str, decision.rules)) or '-'}"
    array.markers.append(label)
    for index, target in enumerate(targets):
        assessment = roles.get(target.id)
        rgb = SAFE_COLOUR if assessment is None or not assessment.risk else ROLE_COLOURS[assessment.role]
        boat = marker(Marker.ARROW, "targets", index, rgb)
        boat.pose.position, boat.pose.orientation = _point(target.kinematics), _heading(target.kinematics.course_deg)
        boat.scale.x, boat.scale.y, boat.scale.z = 400.0, 120.0, 120.0
        name = marker(Marker.TEXT_VIEW_FACING, "target_names", index, rgb)
        name.pose.position = Point(x=boat.pose.position.x, y=boat.pose.position.y + 300.0, z=100.0)
        name.scale.z = 150.0
        name.text = target.id + (f" {assessment.encounter}" if assessment and assessment.risk else "")
        minutes = min(max(assessment.tcpa_min, 0.0), horizon_min) if assessment else horizon_min
        track = marker(Marker.LINE_STRIP, "predicted", index, rgb, 0.6)
        track.scale.x = 30.0
        track.points = [_point(target.kinematics), _point(target.kinematics.moved(minutes))]
        array.markers += [boat, name, track]
        if assessment is not None and assessment.risk:
            closest = marker(Marker.LINE_LIST, "cpa", index, rgb, 0.9)
            closest.scale.x = 20.0
            closest.points = [_point(own.moved(minutes)), _point(target.kinematics.moved(minutes))]
            array.markers.append(closest)
    return array
