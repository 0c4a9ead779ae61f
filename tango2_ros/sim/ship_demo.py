"""`tango2 sds demo`: the sds profile's whole chain on an encounter sent as real NMEA 0183 and AIS sentences over
UDP, a ship meeting us head-on (AIS and radar) and a fishing vessel crossing from port (AIS with its navigational
status), with what the nodes decide and describe."""
from __future__ import annotations

import socket
import sys
import time
from dataclasses import replace
from typing import Callable

import rclpy
from rclpy.qos import QoSProfile

from tango2_msgs.msg import NavigationDecision, SceneDescription, TargetArray
from tango2_ros.bringup.profiles import Profile, load_profile
from tango2_ros.bringup.supervisor import Supervisor
from tango2_ros.core.net import free_port
from tango2_ros.errors import UserError
from tango2_ros.ros.conversions.ship import ROLE_FROM_ROS
from tango2_ros.ros.deployments import wait_for_deployments
from tango2_ros.sds import nmea_out
from tango2_ros.sds.geometry import Kinematics, bearing, distance, to_geographic

ORIGIN = (35.0, 129.0)
OWN = Kinematics(0.0, 0.0, 0.0, 12.0)
HEAD_ON, FISHING = Kinematics(6.0, 0.1, 180.0, 12.0), Kinematics(3.0, -3.0, 90.0, 8.0)


def encounter_datagram(t_s: float) -> bytes:
    """What own ship's sensors and the AIS receiver send t_s seconds into the encounter."""
    own, head_on, fishing = (k.moved(t_s / 60.0) for k in (OWN, HEAD_ON, FISHING))

    def position(k: Kinematics) -> tuple[float, float]:
        return to_geographic(k.north_nm, k.east_nm, *ORIGIN)

    return ("\r\n".join([
        nmea_out.rmc(*position(own), own.course_deg, own.speed_kn),
        nmea_out.hdt(own.course_deg),
        nmea_out.ais_position(440123450, *position(head_on), 180.0, 12.0),
        nmea_out.ais_position(440999001, *position(fishing), 90.0, 8.0, status=7),
        nmea_out.ttm(3, distance(own, head_on), bearing(own, head_on), 12.0, 180.0),
    ]) + "\r\n").encode()


def _demo_profile(port: int, console_port: int) -> Profile:
    goal = to_geographic(12.0, 0.0, *ORIGIN)
    profile = load_profile("sds")
    extras = {"nmea_bridge": {"udp_port": port, "udp_address": "127.0.0.1"},
              "colreg_node": {"goal_lat_deg": goal[0], "goal_lon_deg": goal[1]}, "scene_llm": {"period_s": 8.0},
              "console": {"port": console_port}}
    return replace(profile, nodes=tuple(replace(spec, parameters={**spec.parameters, **extras.get(spec.name, {})})
                                        for spec in profile.nodes))


DESCRIPTION_WAIT_S = 90.0  # past `seconds`, how long the encounter goes on while no description has come yet


def run_demo(seconds: float, on_decision: Callable[[dict], None], console_port: int = 0) -> dict:
    """Bring the profile up, send the encounter once a second for `seconds` (and on until the first description,
    at most DESCRIPTION_WAIT_S more: the model writes it), collect decisions (new ones only), the fused tracks and
    the descriptions. The profile's operator console serves on `console_port` (0: a free port), said on stderr."""
    port, console_port = free_port(), console_port or free_port()
    supervisor = Supervisor(_demo_profile(port, console_port), out=sys.stderr)
    report: dict = {"decisions": [], "scenes": [], "tracks": []}
    try:
        if not supervisor.start():
            raise UserError("the sds profile did not come up")
        print(f"operator console: http://127.0.0.1:{console_port}/ (accounts: tango2 console adduser)",
              file=sys.stderr, flush=True)
        node, last, decisions, scenes = supervisor.node, {}, [], []
        # the model manager's first deployments load beside the embedded models: let them finish first
        deployed = wait_for_deployments(node, "/tango2/models/status", ["llm", "detector"], 180.0)
        report["deployments"] = {slot: f"{e.model.name}@{e.model.version} {e.model.state}" if e else "none"
                                 for slot, e in deployed.items()}
        node.create_subscription(NavigationDecision, "/tango2/sds/decision", decisions.append, 50)
        node.create_subscription(TargetArray, "/tango2/sds/targets", lambda m: last.__setitem__("t", m), 10)
        node.create_subscription(SceneDescription, "/tango2/sds/scene", scenes.append, QoSProfile(depth=10))
        started, shown = time.monotonic(), ""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            while (t := time.monotonic() - started) < seconds or (not scenes and t < seconds + DESCRIPTION_WAIT_S):
                sender.sendto(encounter_datagram(t), ("127.0.0.1", port))
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline:
                    rclpy.spin_once(node, timeout_sec=0.05)
                fresh = [d for d in decisions if d.state != "avoiding"]  # holds repeat the manoeuvre: show the news
                decisions.clear()
                if fresh and fresh[-1].rationale != shown:
                    shown = fresh[-1].rationale
                    report["decisions"].append(_row(t, fresh[-1]))
                    on_decision(report["decisions"][-1])
        tracks = last.get("t")
        report["tracks"] = [f"{x.id} sources={x.sources}" for x in tracks.targets] if tracks else []
    finally:
        supervisor.shutdown()
    report["scenes"] = [{"text": s.text, "model": s.model, "corrections": list(s.corrections),
                         "latency_s": round(s.latency_s, 2)} for s in scenes]
    return report


def _row(t_s: float, decision: NavigationDecision) -> dict:
    return {"t_s": round(t_s, 1), "state": decision.state, "rules": list(decision.rules),
            "rationale": decision.rationale,
            "targets": [f"{a.target_id}: {a.encounter_name} ({ROLE_FROM_ROS.get(a.role, 'none')})"
                        for a in decision.assessments]}
