"""COLREG decision time with 50 targets versus 1 (the baseline, same run), in process and through the
colreg node over ROS 2 (from publishing an own-ship update to receiving the decision for it), and the latency
from an NMEA RMC sentence arriving over UDP at the nmea_bridge to the colreg node's decision that reflects it.

Targets are random ships within 12 NM on random courses (seeded), half of them on collision-prone courses, so the
navigator has to search its manoeuvres. Run: .venv/bin/python bench/colreg_decision.py [--json] [--rounds N]
"""
from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, parser, percentile, report, setup_env  # noqa: E402

setup_env()

from tango2_ros.sds.colreg import ColregParameters, Navigator, Target  # noqa: E402
from tango2_ros.sds.geometry import Kinematics  # noqa: E402
from tango2_ros.sds.scenario import Scenario, ShipSpec  # noqa: E402
from tango2_ros.sim.ship_rig import ShipRig  # noqa: E402

OWN = Kinematics(-6.0, 0.0, 0.0, 12.0)
GOAL = (6.0, 0.0)


def targets(count: int, seed: int = 1) -> list[Target]:
    rng = random.Random(seed)
    ships = []
    for index in range(count):
        if index % 2 == 0:  # heading for the point own ship reaches in 20-40 min
            minutes = rng.uniform(20, 40)
            meet = OWN.moved(minutes)
            course = rng.uniform(0, 360)
            speed = rng.uniform(6, 18)
            start = Kinematics(meet.north_nm, meet.east_nm, course, speed).moved(-minutes)
        else:
            start = Kinematics(rng.uniform(-12, 12), rng.uniform(-12, 12), rng.uniform(0, 360), rng.uniform(0, 20))
        ships.append(Target(f"T{index}", start))
    return ships


def in_process(ships: list[Target], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        navigator = Navigator(ColregParameters())
        started = time.perf_counter()
        navigator.decide(OWN, GOAL, ships)
        times.append(time.perf_counter() - started)
    return times


def through_ros(loop, ships: list[Target], rounds: int) -> list[float]:
    scenario = Scenario("bench", ShipSpec("own", OWN), GOAL, tuple(ShipSpec(t.id, t.kinematics) for t in ships))
    loop.start(scenario)
    times = []
    for step in range(rounds + 3):
        started = time.perf_counter()
        loop.decide(float(step), OWN, ships)
        if step >= 3:  # the first answers come while discovery settles
            times.append(time.perf_counter() - started)
    return times


def nmea_to_decision(rounds: int) -> list[float]:
    """Send RMC datagrams to a live bridge + colreg node; time until a decision stamped after the send arrives."""
    import socket

    import rclpy

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "test"))
    from helpers.servers import free_port
    from tango2_msgs.msg import NavigationDecision
    from tango2_ros.bringup.profiles import NodeSpec, Profile
    from tango2_ros.bringup.supervisor import Supervisor
    from tango2_ros.sds.geometry import to_geographic
    from tango2_ros.sds.nmea_out import ais_position, rmc

    port, ns, origin = free_port(), "/bench_nmea", (35.0, 129.0)
    goal = to_geographic(12.0, 0.0, *origin)
    profile = Profile("bench-nmea", "", (
        NodeSpec("nmea_bridge", "nmea_bridge", ns, parameters={"udp_port": port, "udp_address": "127.0.0.1",
                                                               "targets_rate_hz": 10.0}),
        NodeSpec("colreg_node", "colreg_node", ns, remappings={"sds/targets": "sds/raw_targets"},
                 parameters={"goal_lat_deg": goal[0], "goal_lon_deg": goal[1]})), Path("<bench>"))
    supervisor = Supervisor(profile, out=open("/dev/null", "w"))
    latencies: list[float] = []
    try:
        if not supervisor.start():
            raise RuntimeError("bridge or colreg node did not come up")
        node = supervisor.node
        received: list[tuple[float, float]] = []  # (arrival, stamp) of decisions
        def on_decision(message) -> None:
            received.append((time.time(), message.header.stamp.sec + message.header.stamp.nanosec * 1e-9))

        node.create_subscription(NavigationDecision, f"{ns}/sds/decision", on_decision, 100)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        target = to_geographic(6.0, 0.0, *origin)
        sender.sendto(ais_position(440123450, *target, 180.0, 12.0).encode(), ("127.0.0.1", port))
        for step in range(rounds + 5):
            received.clear()
            sent = time.time()
            sender.sendto(rmc(*origin, 0.0, 12.0).encode(), ("127.0.0.1", port))
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and not any(stamp >= sent for _, stamp in received):
                rclpy.spin_once(node, timeout_sec=0.005)
            arrival = next((a for a, stamp in received if stamp >= sent), None)
            if arrival is not None and step >= 5:
                latencies.append(arrival - sent)
            time.sleep(0.05)
        sender.close()
    finally:
        supervisor.shutdown()
    return latencies


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=50)
    args = p.parse_args()
    one, fifty = targets(1), targets(50)
    local = {"1": in_process(one, args.rounds), "50": in_process(fifty, args.rounds)}
    rig = ShipRig(perfect_tracks=True)  # the colreg node alone, fed the tracks directly
    try:
        ros = {"1": through_ros(rig.loop, one, args.rounds), "50": through_ros(rig.loop, fifty, args.rounds)}
    finally:
        rig.shutdown()
    nmea = nmea_to_decision(args.rounds)
    data = {"rounds": args.rounds}
    lines = []
    for where, runs in (("in process", local), ("through colreg_node", ros)):
        stats = {n: {"median_ms": median(v) * 1e3, "p99_ms": percentile(v, 99) * 1e3} for n, v in runs.items()}
        ratio = stats["50"]["median_ms"] / stats["1"]["median_ms"]
        data[where.replace(" ", "_")] = {**stats, "ratio_50_vs_1": ratio}
        lines.append(f"{where:<20} 1 target: median {stats['1']['median_ms']:.2f} ms (p99 {stats['1']['p99_ms']:.2f}); "
                     f"50 targets: median {stats['50']['median_ms']:.2f} ms (p99 {stats['50']['p99_ms']:.2f}); "
                     f"ratio {ratio:.1f}x")
    data["nmea_to_decision"] = {"median_ms": median(nmea) * 1e3, "p99_ms": percentile(nmea, 99) * 1e3,
                                "vs_direct_own_ship_ratio": median(nmea) / median(ros["1"])}
    lines.append(f"NMEA RMC over UDP -> nmea_bridge -> colreg_node -> decision (1 AIS target): median "
                 f"{median(nmea) * 1e3:.2f} ms (p99 {percentile(nmea, 99) * 1e3:.2f}); "
                 f"{data['nmea_to_decision']['vs_direct_own_ship_ratio']:.1f}x publishing OwnShipState directly")
    report(args, data, lines)
    return 0 if all(math.isfinite(data[k]["ratio_50_vs_1"]) for k in ("in_process", "through_colreg_node")) and nmea else 1


if __name__ == "__main__":
    raise SystemExit(main())
