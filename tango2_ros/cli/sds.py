"""`tango2 sds ...`: COLREG encounters of the software-defined ship.

    tango2 sds list                                     built-in scenarios
    tango2 sds assess SCENARIO [--json]                 classification at the initial instant
    tango2 sds simulate SCENARIO [...] [--json] [--plot FILE.png | --plot-dir DIR] [--in-process]

`simulate` runs the closed loop through a real colreg_node over ROS 2 (started here, in its own namespace)
unless `--in-process` asks for the same decision code without ROS. SCENARIO is a YAML file or a built-in name;
`imazu` means all 22 Imazu cases. With several scenarios `--json` prints one object per line.
"""
from __future__ import annotations

import sys
from pathlib import Path

from tango2_ros.cli.output import emit
from tango2_ros.errors import UserError

SIM_NAMESPACE = "/tango2_sim"


def register(commands) -> None:
    parser = commands.add_parser("sds", help="software-defined ship: COLREG assessment and simulation",
                                 description=__doc__)
    sub = parser.add_subparsers(dest="sds_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="built-in scenarios")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)
    assess = sub.add_parser("assess", help="classify every target at the initial instant")
    assess.add_argument("scenario")
    assess.add_argument("--json", action="store_true")
    assess.set_defaults(handler=_assess)
    simulate = sub.add_parser("simulate", help="closed-loop simulation through the colreg node")
    simulate.add_argument("scenarios", nargs="+", metavar="SCENARIO")
    simulate.add_argument("--json", action="store_true")
    simulate.add_argument("--plot", type=Path, help="PNG of the run (one scenario)")
    simulate.add_argument("--plot-dir", type=Path, help="a PNG per scenario in this folder")
    simulate.add_argument("--in-process", action="store_true", help="decide in this process, without ROS")
    simulate.set_defaults(handler=_simulate)


def _scenarios(names: list[str]):
    from tango2_ros.sds.scenario import BUILTIN, load_scenario

    expanded = []
    for name in names:
        expanded += [n for n in BUILTIN if n.startswith("imazu-")] if name == "imazu" else [name]
    return [load_scenario(name) for name in expanded]


def _list(args) -> int:
    from tango2_ros.sds.scenario import BUILTIN

    emit(args, {"scenarios": {n: s.description for n, s in BUILTIN.items()}},
         "\n".join(f"{n:<32} {s.description}" for n, s in BUILTIN.items()))
    return 0


def _assess(args) -> int:
    from tango2_ros.sds.colreg import ColregParameters
    from tango2_ros.sds.simulator import initial_assessment

    scenario = _scenarios([args.scenario])[0]
    rows = initial_assessment(scenario, ColregParameters(safety_distance_nm=scenario.safety_distance_nm))
    lines = [f"{scenario.name}: {len(rows)} target(s)"] + [
        f"  {r['id']:<8} {r['encounter']:<18} {r['role']:<9} rules {r['rules']}  CPA {r['cpa_nm']:.2f} NM "
        f"TCPA {r['tcpa_min']:.1f} min  bearing {r['relative_bearing_deg']:.0f} deg" for r in rows]
    emit(args, {"scenario": scenario.name, "targets": rows}, "\n".join(lines))
    return 0


def _simulate(args) -> int:
    from tango2_ros.sds.colreg import ColregParameters, Navigator
    from tango2_ros.sds.plot import plot_run
    from tango2_ros.sds.simulator import simulate

    scenarios = _scenarios(args.scenarios)
    if args.plot and len(scenarios) > 1:
        raise UserError("--plot takes one scenario; use --plot-dir for several")
    if args.plot_dir:
        args.plot_dir.mkdir(parents=True, exist_ok=True)
    loop, supervisor = (None, None) if args.in_process else _start_colreg_node()
    failures = 0
    try:
        for scenario in scenarios:
            params = ColregParameters(safety_distance_nm=scenario.safety_distance_nm)
            if loop is None:
                navigator = Navigator(params, cruise_speed_kn=scenario.own.start.speed_kn)

                def decide(_t, own, targets, scenario=scenario, navigator=navigator):
                    return navigator.decide(own, scenario.goal, targets, scenario.visibility_nm)
            else:
                loop.start(scenario)
                decide = loop.decide
            result = simulate(scenario, decide, params)
            plot = args.plot or (args.plot_dir / f"{scenario.name}.png" if args.plot_dir else None)
            if plot:
                plot_run(result, scenario.goal, plot, scenario.safety_distance_nm)
            data = result.as_dict()
            data["through"] = "in-process" if loop is None else "colreg_node over ROS 2"
            ok = not result.collision and result.min_distance_nm >= 0.5
            failures += not ok
            emit(args, data, f"{scenario.name:<32} {'ok' if ok else 'FAILED'}: min distance {result.min_distance_nm:.2f} NM, "
                             f"{len(result.maneuvers)} manoeuvre(s), path +{result.path_extra_distance_pct:.1f} %"
                             f"{'' if result.reached_goal else ', goal not reached in time'}")
    finally:
        if supervisor is not None:
            supervisor.shutdown()
    return 1 if failures else 0


def _start_colreg_node():
    from tango2_ros.bringup.profiles import NodeSpec, Profile
    from tango2_ros.bringup.supervisor import Supervisor
    from tango2_ros.sds.ros_loop import RosColregLoop

    profile = Profile("sds-sim", "colreg node for the simulator",
                      (NodeSpec("colreg_node", "colreg_node", SIM_NAMESPACE, parameters={"stale_after_s": 600.0}),),
                      Path("<tango2 sds simulate>"))
    supervisor = Supervisor(profile, out=sys.stderr)
    if not supervisor.start():
        supervisor.shutdown()
        raise UserError("the colreg node did not come up")
    return RosColregLoop(supervisor.node, SIM_NAMESPACE), supervisor
