"""`tango2 launch PROFILE`: bring a profile's nodes up as processes, keep them running, stop them cleanly."""
from __future__ import annotations

import signal

from tango2_ros.bringup.profiles import available_profiles, load_profile
from tango2_ros.cli.output import emit
from tango2_ros.errors import UserError


def register(commands) -> None:
    parser = commands.add_parser("launch", help="start the nodes of a launch profile")
    parser.add_argument("profile", nargs="?", help="profile name (see --list) or path to a profile YAML file")
    parser.add_argument("--list", action="store_true", help="list the available profiles")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    parser.add_argument("--graph", action="store_true", help="print the live ROS graph once every node is up")
    parser.add_argument("--json", action="store_true", help="machine-readable status and graph")
    parser.set_defaults(handler=run)


def run(args) -> int:
    if args.list or not args.profile:
        profiles = {name: load_profile(str(path)).description for name, path in available_profiles().items()}
        emit(args, {"profiles": profiles}, "\n".join(f"{n:<12} {d}" for n, d in profiles.items()))
        return 0 if args.list else _missing_profile(profiles)
    return run_profile(load_profile(args.profile), args.duration, args if args.graph else None)


def run_profile(profile, duration_s: float | None = None, graph_args=None) -> int:
    """Bring the profile's nodes up, keep them running until Ctrl-C, SIGTERM or `duration_s`, stop them cleanly;
    with `graph_args`, print the live ROS graph once every node is up (as text, or JSON with --json)."""
    from tango2_ros.bringup.supervisor import Supervisor

    supervisor = Supervisor(profile)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    try:
        supervisor.say(f"profile '{profile.name}' from {profile.source}: {len(profile.nodes)} node(s)")
        all_up = supervisor.start()
        if graph_args is not None and not supervisor.stopping:
            graph = supervisor.graph()
            emit(graph_args, {"status": supervisor.status(), "graph": graph.as_dict()}, graph.format())
        if not supervisor.stopping:
            supervisor.watch(duration_s)
    finally:
        supervisor.shutdown()
    return 0 if all_up else 1


def _missing_profile(profiles: dict) -> int:
    raise UserError(f"no profile given; available profiles: {', '.join(sorted(profiles)) or '(none)'}")
