"""The simulator's side of the ROS 2 closed loop: it publishes what own ship's sensors and the tracker would
(`sds/own_ship`, `sds/targets`) and waits for the colreg node's `sds/decision` stamped for that instant, so the
loop runs in lock-step, faster than real time, through the real node over DDS.
"""
from __future__ import annotations

import math
import time

import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters

from tango2_msgs.msg import NavigationDecision, OwnShipState, Target as TargetMsg, TargetArray
from tango2_ros.sds.colreg import Decision, Target
from tango2_ros.sds.geometry import Kinematics, bearing, cpa, distance, to_geographic
from tango2_ros.sds.scenario import Scenario

SIM_EPOCH_S = 1_000_000_000
DEGRADED_GRACE_S = 0.3  # simulated instants are stamped from here (a recognisable, non-zero time)
NM_M = 1852.0
CATEGORY_CODES = {
    "power-driven": TargetMsg.CATEGORY_POWER_DRIVEN, "sailing": TargetMsg.CATEGORY_SAILING,
    "fishing": TargetMsg.CATEGORY_FISHING, "restricted-maneuverability": TargetMsg.CATEGORY_RESTRICTED_MANEUVERABILITY,
    "not-under-command": TargetMsg.CATEGORY_NOT_UNDER_COMMAND,
    "constrained-by-draught": TargetMsg.CATEGORY_CONSTRAINED_BY_DRAUGHT,
}


class ColregLoopError(RuntimeError):
    """The colreg node did not answer in time or refused its parameters."""


class RosColregLoop:
    def __init__(self, node, namespace: str, timeout_s: float = 10.0) -> None:
        self.node, self.namespace, self.timeout_s = node, namespace.rstrip("/"), timeout_s
        self.own_pub = node.create_publisher(OwnShipState, f"{self.namespace}/sds/own_ship", 10)
        self.targets_pub = node.create_publisher(TargetArray, f"{self.namespace}/sds/targets", 10)
        self.decisions: dict[int, NavigationDecision] = {}
        node.create_subscription(NavigationDecision, f"{self.namespace}/sds/decision", self._on_decision, 50)
        self.parameters = node.create_client(SetParameters, f"{self.namespace}/colreg_node/set_parameters")
        self.scenario: Scenario | None = None

    def _on_decision(self, message: NavigationDecision) -> None:
        self.decisions[message.header.stamp.sec * 10**9 + message.header.stamp.nanosec] = message

    def start(self, scenario: Scenario) -> None:
        """Give the node this scenario's route, speed and visibility (which also restarts its decision-making)."""
        self.scenario = scenario
        goal_lat, goal_lon = to_geographic(*scenario.goal, *scenario.origin)
        values = {"goal_lat_deg": goal_lat, "goal_lon_deg": goal_lon, "cruise_speed_kn": scenario.own.start.speed_kn,
                  "visibility_nm": scenario.visibility_nm, "safety_distance_nm": scenario.safety_distance_nm}
        if not self.parameters.wait_for_service(timeout_sec=self.timeout_s):
            raise ColregLoopError(f"{self.parameters.srv_name} is not available")
        request = SetParameters.Request(parameters=[
            Parameter(name=k, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(v)))
            for k, v in values.items()])
        future = self.parameters.call_async(request)
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=self.timeout_s)
        if not future.done() or not all(r.successful for r in future.result().results):
            raise ColregLoopError("the colreg node did not take the scenario's parameters")
        self.decisions.clear()

    def decide(self, t: float, own: Kinematics, targets: list[Target]) -> Decision | None:
        """Publish the picture at time t and return the node's decision for it (None when it is degraded)."""
        stamp = _stamp(t)
        key = stamp.sec * 10**9 + stamp.nanosec
        self.targets_pub.publish(self._targets(stamp, own, targets))
        self.own_pub.publish(self._own(stamp, own))
        started = time.monotonic()
        degraded_since = None
        while True:
            rclpy.spin_once(self.node, timeout_sec=0.01)
            message = self.decisions.get(key)
            if message is not None and message.status == NavigationDecision.STATUS_NORMAL:
                break
            if message is not None:
                # a degraded answer (say, the own-ship update overtook the target picture of the same instant)
                # stands only if no full decision for this instant follows shortly
                degraded_since = degraded_since or time.monotonic()
                if time.monotonic() - degraded_since > DEGRADED_GRACE_S:
                    break
            if time.monotonic() - started > self.timeout_s:
                raise ColregLoopError(f"no decision from the colreg node for t = {t:.0f} s within {self.timeout_s} s")
        self.decisions.clear()
        if message.status != NavigationDecision.STATUS_NORMAL:
            return None
        return Decision(
            state=message.state, course_deg=message.target_course_deg, speed_kn=message.target_speed_kn,
            course_change_deg=message.course_change_deg, speed_change_kn=message.speed_change_kn,
            target_ids=tuple(a.target_id for a in message.assessments if a.risk > 0), rules=tuple(message.rules),
            rationale=message.rationale)

    def _own(self, stamp: TimeMsg, own: Kinematics) -> OwnShipState:
        lat, lon = to_geographic(own.north_nm, own.east_nm, *self.scenario.origin)
        message = OwnShipState(latitude_deg=lat, longitude_deg=lon, course_over_ground_deg=own.course_deg,
                               speed_over_ground_kn=own.speed_kn, heading_deg=own.course_deg, position_valid=True,
                               heading_valid=True, position_age_s=0.0, source="SIM")
        message.header.stamp = stamp
        message.header.frame_id = "wgs84"
        return message

    def _targets(self, stamp: TimeMsg, own: Kinematics, targets: list[Target]) -> TargetArray:
        array = TargetArray()
        array.header.stamp = stamp
        array.header.frame_id = "own_ship"
        for target in targets:
            k = target.kinematics
            lat, lon = to_geographic(k.north_nm, k.east_nm, *self.scenario.origin)
            cpa_nm, tcpa_min = cpa(own, k)
            array.targets.append(TargetMsg(
                id=target.id, sources=TargetMsg.SOURCE_AIS | TargetMsg.SOURCE_RADAR,
                category=CATEGORY_CODES[target.category], latitude_deg=lat, longitude_deg=lon,
                north_m=(k.north_nm - own.north_nm) * NM_M, east_m=(k.east_nm - own.east_nm) * NM_M,
                course_deg=k.course_deg, speed_kn=k.speed_kn, bearing_deg=bearing(own, k),
                range_m=distance(own, k) * NM_M, cpa_m=cpa_nm * NM_M, tcpa_s=tcpa_min * 60.0,
                position_covariance=[25.0, 0.0, 0.0, 25.0], quality=1.0, age_s=0.0))
        return array


def _stamp(t: float) -> TimeMsg:
    seconds = math.floor(t)
    return TimeMsg(sec=SIM_EPOCH_S + int(seconds), nanosec=int(round((t - seconds) * 1e9)))
