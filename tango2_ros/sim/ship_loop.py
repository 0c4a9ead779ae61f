"""The simulator's side of the ROS 2 closed loop, in lock-step and faster than real time.

`SensorLoop` is what the ship's sensors would send: NMEA 0183 over UDP to the nmea_bridge (own ship's RMC and HDT,
AIS position reports for targets that carry AIS, radar TTM with noise) and camera detections with noisy bearings
on `sds/detections`; the bridge, the tracker and the colreg node then do their real work. `TrackLoop` skips the
sensors and publishes perfect tracks (`sds/own_ship`, `sds/targets`) straight to the colreg node. Both wait for
the colreg node's `sds/decision` stamped for the simulated instant (the bridge stamps with the RMC's UTC time).
"""
from __future__ import annotations

import random
import socket
import time
import zlib
from dataclasses import dataclass
from typing import Callable

import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters

from tango2_msgs.msg import (Detection, DetectionArray, NavigationDecision, OwnShipState, Target as TargetMsg,
                             TargetArray)
from tango2_ros.ros.conversions.ship import category_to_ros, decision_from_ros, own_ship_to_ros, set_relative
from tango2_ros.ros.conversions.stamps import seconds_to_stamp, stamp_to_seconds
from tango2_ros.sds import nmea_out
from tango2_ros.sds.colreg import Decision, Target
from tango2_ros.sds.geometry import NM_M, Kinematics, bearing, distance, relative, signed, to_geographic
from tango2_ros.sds.picture import OwnShip
from tango2_ros.sds.scenario import Scenario
from tango2_ros.sds.simulator import SIM_EPOCH_S

DEGRADED_GRACE_S = 0.3
STAMP_TOLERANCE_S = 0.005  # NMEA writes hundredths of a second
# AIS navigational status that tells other ships the rule-18 category (power-driven ships report 0, under way)
AIS_STATUS = {"not-under-command": 2, "restricted-maneuverability": 3, "constrained-by-draught": 4, "fishing": 7,
              "sailing": 8}


class ColregLoopError(RuntimeError):
    """The colreg node did not answer in time or refused its parameters."""


class _LockStepLoop:
    """Gives the colreg node each scenario's parameters and waits for its decision on each simulated instant."""

    def __init__(self, node, namespace: str, timeout_s: float = 10.0) -> None:
        self.node, self.namespace, self.timeout_s = node, namespace.rstrip("/"), timeout_s
        self.decisions: list[NavigationDecision] = []
        node.create_subscription(NavigationDecision, f"{self.namespace}/sds/decision", self.decisions.append, 50)
        self.parameters = node.create_client(SetParameters, f"{self.namespace}/colreg_node/set_parameters")
        self.scenario: Scenario | None = None
        self.now_s = 0.0  # the simulated instant being decided

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

    def _await_decision(self, t: float) -> Decision | None:
        """The node's decision for instant t (None when it is degraded)."""
        self.now_s, wanted = t, SIM_EPOCH_S + t
        started = time.monotonic()
        degraded_since, chosen = None, None
        while True:
            rclpy.spin_once(self.node, timeout_sec=0.01)
            answers = [d for d in self.decisions if abs(stamp_to_seconds(d.header.stamp) - wanted) < STAMP_TOLERANCE_S]
            chosen = next((d for d in answers if d.status == NavigationDecision.STATUS_NORMAL), None)
            if chosen is not None:
                break
            if answers:
                # a degraded answer (say, the own-ship update overtook the target picture of the same instant)
                # stands only if no full decision for this instant follows shortly
                degraded_since = degraded_since or time.monotonic()
                if time.monotonic() - degraded_since > DEGRADED_GRACE_S:
                    break
            if time.monotonic() - started > self.timeout_s:
                raise ColregLoopError(f"no decision from the colreg node for t = {t:.0f} s within {self.timeout_s} s")
        self.decisions.clear()
        if chosen is None:
            return None
        return decision_from_ros(chosen, rename=self._scenario_id)

    def _scenario_id(self, track_id: str) -> str:
        return track_id


class TrackLoop(_LockStepLoop):
    """Perfect tracks straight to the colreg node (no sensors, bridge or tracker)."""

    def __init__(self, node, namespace: str, timeout_s: float = 10.0) -> None:
        super().__init__(node, namespace, timeout_s)
        self.own_pub = node.create_publisher(OwnShipState, f"{self.namespace}/sds/own_ship", 10)
        self.targets_pub = node.create_publisher(TargetArray, f"{self.namespace}/sds/targets", 10)

    def decide(self, t: float, own: Kinematics, targets: list[Target]) -> Decision | None:
        """Publish the picture at time t and return the node's decision for it (None when it is degraded)."""
        stamp = _stamp(t)
        self.targets_pub.publish(self._targets(stamp, own, targets))
        self.own_pub.publish(self._own(stamp, own))
        return self._await_decision(t)

    def _own(self, stamp: TimeMsg, own: Kinematics) -> OwnShipState:
        lat, lon = to_geographic(own.north_nm, own.east_nm, *self.scenario.origin)
        message = own_ship_to_ros(OwnShip(latitude_deg=lat, longitude_deg=lon, course_deg=own.course_deg,
                                          speed_kn=own.speed_kn, heading_deg=own.course_deg, position_valid=True,
                                          heading_valid=True, position_age_s=0.0, sources=["SIM"]))
        message.header.stamp = stamp
        return message

    def _targets(self, stamp: TimeMsg, own: Kinematics, targets: list[Target]) -> TargetArray:
        array = TargetArray()
        array.header.stamp = stamp
        array.header.frame_id = "own_ship"
        for target in targets:
            k = target.kinematics
            lat, lon = to_geographic(k.north_nm, k.east_nm, *self.scenario.origin)
            message = TargetMsg(
                id=target.id, sources=TargetMsg.SOURCE_AIS | TargetMsg.SOURCE_RADAR,
                category=category_to_ros(target.category), latitude_deg=lat, longitude_deg=lon,
                course_deg=k.course_deg, speed_kn=k.speed_kn, position_covariance=[25.0, 0.0, 0.0, 25.0],
                quality=1.0, age_s=0.0)
            set_relative(message, relative(own, k))
            array.targets.append(message)
        return array


@dataclass(frozen=True)
class SensorNoise:
    """Standard deviations of the simulated sensors and their reach (defaults: a typical X-band ARPA, a bridge
    camera, AIS positions from the targets' own GNSS)."""

    radar_range_nm: float = 12.0
    radar_range_sigma_nm: float = 0.02
    radar_range_sigma_pct: float = 1.0
    radar_bearing_sigma_deg: float = 0.5
    radar_course_sigma_deg: float = 2.0
    radar_speed_sigma_kn: float = 0.3
    ais_position_sigma_m: float = 5.0
    camera_range_nm: float = 6.0
    camera_half_fov_deg: float = 90.0
    camera_bearing_sigma_deg: float = 0.5


class SensorLoop(_LockStepLoop):
    """Own ship's sensors over NMEA/UDP and a camera's detections, fed to the nmea_bridge and the tracker.

    `reset` is called at each scenario's start so the bridge and the tracker forget the previous one (the CLI
    reconfigures them through their lifecycle)."""

    def __init__(self, node, namespace: str, udp_port: int, reset: Callable[[], None], timeout_s: float = 10.0,
                 noise: SensorNoise = SensorNoise()) -> None:
        super().__init__(node, namespace, timeout_s)
        self.address = ("127.0.0.1", udp_port)
        self.reset, self.noise = reset, noise
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.detections_pub = node.create_publisher(DetectionArray, f"{self.namespace}/sds/detections", 10)
        self.random = random.Random(0)
        self.track_names: dict[str, str] = {}

    def start(self, scenario: Scenario) -> None:
        self.reset()
        super().start(scenario)
        self.random = random.Random(zlib.crc32(scenario.name.encode()))  # the same noise for the same scenario
        self.track_names = {}
        for number, spec in enumerate(scenario.targets, 1):
            self.track_names[f"AIS-{_mmsi(number)}"] = spec.id
            self.track_names[f"RADAR-{number:02d}"] = spec.id

    def close(self) -> None:
        self.socket.close()

    def decide(self, t: float, own: Kinematics, targets: list[Target]) -> Decision | None:
        self.detections_pub.publish(self._camera(t, own, targets))
        self.socket.sendto(("\r\n".join(self._sentences(SIM_EPOCH_S + t, own, targets)) + "\r\n").encode(),
                           self.address)
        return self._await_decision(t)

    def _scenario_id(self, track_id: str) -> str:
        return self.track_names.get(track_id, track_id)

    def _sentences(self, utc: float, own: Kinematics, targets: list[Target]) -> list[str]:
        """One sensor cycle: targets first, own ship's RMC last (the bridge publishes its picture on the fix)."""
        n, gauss, origin = self.noise, self.random.gauss, self.scenario.origin
        specs = {s.id: s for s in self.scenario.targets}
        lines = []
        for number, target in enumerate(targets, 1):
            k = target.kinematics
            if specs[target.id].ais:
                sigma_nm = n.ais_position_sigma_m / NM_M
                lat, lon = to_geographic(k.north_nm + gauss(0, sigma_nm), k.east_nm + gauss(0, sigma_nm), *origin)
                lines.append(nmea_out.ais_position(_mmsi(number), lat, lon, round(k.course_deg, 1) % 360.0,
                                                   round(k.speed_kn, 1), status=AIS_STATUS.get(target.category, 0)))
            range_nm = distance(own, k)
            if range_nm <= n.radar_range_nm:
                sigma_range = n.radar_range_sigma_nm + range_nm * n.radar_range_sigma_pct / 100.0
                lines.append(nmea_out.ttm(
                    number, max(0.0, range_nm + gauss(0, sigma_range)),
                    bearing(own, k) + gauss(0, n.radar_bearing_sigma_deg),
                    max(0.0, k.speed_kn + gauss(0, n.radar_speed_sigma_kn)),
                    k.course_deg + gauss(0, n.radar_course_sigma_deg), utc_s=utc))
        lat, lon = to_geographic(own.north_nm, own.east_nm, *origin)
        lines.append(nmea_out.hdt(own.course_deg))
        lines.append(nmea_out.rmc(lat, lon, own.course_deg, own.speed_kn, utc_s=utc))
        return lines

    def _camera(self, t: float, own: Kinematics, targets: list[Target]) -> DetectionArray:
        """What the detector would report: a boat at each target's bearing within the camera's reach."""
        array = DetectionArray(image_width_px=1280, image_height_px=720, model="simulated camera")
        array.header.stamp = _stamp(t)
        array.header.frame_id = "camera"
        for target in targets:
            relative = signed(bearing(own, target.kinematics) - own.course_deg)
            if distance(own, target.kinematics) <= self.noise.camera_range_nm and abs(relative) <= self.noise.camera_half_fov_deg:
                array.detections.append(Detection(
                    class_id=8, class_name="boat", score=0.9,
                    relative_bearing_deg=relative + self.random.gauss(0, self.noise.camera_bearing_sigma_deg)))
        return array


def _mmsi(number: int) -> int:
    return 440_100_000 + number


def _stamp(t: float) -> TimeMsg:
    return seconds_to_stamp(SIM_EPOCH_S + t)
