"""`tango2 sds ...`: COLREG encounters of the software-defined ship.

    tango2 sds list                                     built-in scenarios
    tango2 sds assess SCENARIO [--json]                 classification at the initial instant
    tango2 sds simulate SCENARIO [...] [--json] [--plot FILE.png | --plot-dir DIR] [--record FILE.mcap]
                        [--perfect-tracks | --in-process]
    tango2 sds describe SCENARIO [...] [--lang en|ko] [--model NAME@SPEC|F.gguf] [--json]
                                                        the situation in words at the initial instant, checked
    tango2 sds ask SCENARIO "QUESTION" [--lang en|ko] [--model NAME@SPEC|F.gguf] [--json]
                                                        a watch officer's question answered from that picture
    tango2 sds demo [--console-port P] [--json]         the sds profile fed with NMEA: decisions and descriptions

`simulate` runs the closed loop through real nodes over ROS 2, started here in their own namespace: simulated
sensors send NMEA 0183 over UDP (AIS, radar TTM with noise, own ship's RMC/HDT) to the nmea_bridge and camera
bearings with noise to the tracker, whose tracks the colreg node decides on. `--perfect-tracks` feeds the colreg
node true tracks instead; `--in-process` runs the same decision code without ROS. SCENARIO is a YAML file or a
built-in name; `imazu` means all 22 Imazu cases. With several scenarios `--json` prints one object per line.
"""
from __future__ import annotations

import sys
from pathlib import Path

from tango2_ros.cli.model_files import profile_model
from tango2_ros.cli.output import emit
from tango2_ros.errors import UserError


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
    simulate.add_argument("--perfect-tracks", action="store_true",
                          help="feed the colreg node true tracks instead of simulated NMEA sensors")
    simulate.add_argument("--record", type=Path, metavar="FILE.mcap", help="record the run's topics (one scenario)")
    simulate.set_defaults(handler=_simulate)
    describe = sub.add_parser("describe", help="describe each scenario at its initial instant, checked against "
                              "the facts")
    describe.add_argument("scenarios", nargs="+", metavar="SCENARIO")
    describe.add_argument("--lang", choices=("en", "ko"), default="en")
    describe.add_argument("--model", default=None, help="NAME@SPEC or F.gguf (default: what the sds profile deploys)")
    describe.add_argument("--json", action="store_true")
    describe.set_defaults(handler=_describe)
    ask = sub.add_parser("ask", help="answer a watch officer's question about a scenario's initial picture, checked "
                         "against the facts")
    ask.add_argument("scenario")
    ask.add_argument("question")
    ask.add_argument("--lang", choices=("en", "ko"), default="en")
    ask.add_argument("--model", default=None, help="NAME@SPEC or F.gguf (default: what the sds profile deploys)")
    ask.add_argument("--json", action="store_true")
    ask.set_defaults(handler=_ask)
    demo = sub.add_parser("demo", help="bring up the sds profile, feed it NMEA/AIS over UDP, show what it decides")
    demo.add_argument("--seconds", type=float, default=25.0, help="how long to feed the encounter (default 25)")
    demo.add_argument("--console-port", type=int, default=0, metavar="P",
                      help="the operator console's port during the demo (default: a free port, printed)")
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(handler=_demo)


def _scenarios(names: list[str]):
    from tango2_ros.sds.scenario import BUILTIN, load_scenario

    expanded = []
    for name in names:
        expanded += [n for n in BUILTIN if n.startswith("imazu-")] if name == "imazu" else [name]
    scenarios = [load_scenario(name) for name in expanded]
    for scenario in scenarios:
        if not scenario.goal_given:
            print(f"{scenario.name}: own_ship has no goal; holding the present course", file=sys.stderr)
    return scenarios


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
    if (args.plot or args.record) and len(scenarios) > 1:
        raise UserError("--plot and --record take one scenario; use --plot-dir for several")
    if args.in_process and (args.record or args.perfect_tracks):
        raise UserError("--record and --perfect-tracks need the ROS nodes: leave out --in-process")
    if args.plot_dir:
        args.plot_dir.mkdir(parents=True, exist_ok=True)
    if args.record and not args.record.parent.is_dir():
        raise UserError(f"--record {args.record}: folder {args.record.parent} does not exist")
    rig = None
    if not args.in_process:
        from tango2_ros.sim.ship_rig import ShipRig

        rig = ShipRig(perfect_tracks=args.perfect_tracks)
    failures = 0
    try:
        for scenario in scenarios:
            params = ColregParameters(safety_distance_nm=scenario.safety_distance_nm)
            if rig is None:
                navigator = Navigator(params, cruise_speed_kn=scenario.own.start.speed_kn)

                def decide(_t, own, targets, scenario=scenario, navigator=navigator):
                    return navigator.decide(own, scenario.goal, targets, scenario.visibility_nm)
            else:
                decide = rig.begin(scenario, args.record)
            try:
                result = simulate(scenario, decide, params)
            finally:
                recorded = rig.end() if rig is not None else None
            plot = args.plot or (args.plot_dir / f"{scenario.name}.png" if args.plot_dir else None)
            if plot:
                plot_run(result, scenario.goal, plot, scenario.safety_distance_nm)
            data = result.as_dict()
            data["through"] = "in-process" if rig is None else rig.description
            if recorded:
                data["recorded"] = recorded
            ok = not result.collision and result.min_distance_nm >= 0.5
            failures += not ok
            emit(args, data, f"{scenario.name:<32} {'ok' if ok else 'FAILED'}: min distance {result.min_distance_nm:.2f} NM, "
                             f"{len(result.maneuvers)} manoeuvre(s), path +{result.path_extra_distance_pct:.1f} %"
                             f"{'' if result.reached_goal else ', goal not reached in time'}")
    finally:
        if rig is not None:
            rig.shutdown()
    return 1 if failures else 0


def _describe(args) -> int:
    """The scene describer on each scenario's initial picture, in process: the model writes under the facts' JSON
    Schema, the fact check corrects it; `raw_text` is what the model wrote."""
    import json
    import time

    from tango2_ros.sds import scene, teaching

    scenarios = _scenarios(args.scenarios)
    ask = _in_process_model(args.model or profile_model("sds", "llm"), max_tokens=720)
    for scenario in scenarios:
        targets, action = teaching.facts(scenario)
        started = time.monotonic()
        described = scene.describe(targets, action, args.lang, ask)
        row = {"scenario": scenario.name, "lang": args.lang, "model": described.model, "raw_text": described.raw_text,
               "text": described.text, "corrections": described.corrections,
               "latency_s": round(time.monotonic() - started, 3)}
        if args.json:
            print(json.dumps(row, ensure_ascii=False), flush=True)
        else:
            print(f"{scenario.name} ({described.model}): {described.text}"
                  + "".join(f"\n   corrected: {c}" for c in described.corrections))
    return 0


def _ask(args) -> int:
    """A watch officer's question about the scenario's initial picture, answered in process and checked."""
    import json

    from tango2_ros.sds import questions, teaching

    (scenario,) = _scenarios([args.scenario])
    targets, action = teaching.facts(scenario)
    questions.classify(args.question, args.lang, targets)  # a question that cannot be asked fails before loading
    answered = questions.answer(args.question, args.lang, targets, action,
                                _in_process_model(args.model or profile_model("sds", "llm"), max_tokens=256))
    row = {"question": args.question, "lang": args.lang, "model": answered.model, "raw_answer": answered.raw_answer,
           "answer": answered.answer, "ids": answered.ids, "kind": answered.question.kind,
           "corrections": answered.corrections}
    if args.json:
        print(json.dumps(row, ensure_ascii=False))
    else:
        print(f"{answered.answer}  [{', '.join(answered.ids) or 'no vessel'}; {answered.model}]"
              + "".join(f"\n   corrected: {c}" for c in answered.corrections))
    return 0


def _in_process_model(reference: str, max_tokens: int):
    """The LLM runtime in this process (a model, or an adapter on its base) as the sds packages ask it:
    (prompt, schema) -> (text, model, error)."""
    import json

    from tango2_ros.cli.model_files import open_llm
    from tango2_ros.core.runtime.llm import ChatTurn
    from tango2_ros.core.runtime.schema import compile_schema

    runtime = open_llm(reference, n_ctx_per_seq=2048)

    def ask(prompt: str, schema: dict) -> tuple[str, str, str]:
        result = runtime.generate(runtime.chat_prompt([ChatTurn("user", prompt)]), max_tokens=max_tokens,
                                  schema=compile_schema(json.dumps(schema)))
        failed = result.finish_reason not in ("stop", "length") or not result.text
        return result.text, runtime.identity.label, (result.error or result.finish_reason) if failed else ""

    return ask


def _demo(args) -> int:
    """The sds profile's whole chain on NMEA 0183 and AIS over UDP (tango2_ros.sim.ship_demo)."""
    import json

    from tango2_ros.sim.ship_demo import run_demo

    def said(row: dict) -> None:
        if not args.json:
            print(f"[{row['t_s']:5.1f} s] decision {row['state']}: {row['rationale']}", flush=True)

    if not 0 <= args.console_port <= 65535:
        raise UserError(f"--console-port {args.console_port}: use 0 to 65535")
    report = run_demo(args.seconds, said, args.console_port)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(f"tracks: {', '.join(report['tracks']) or 'none'}")
        for scene_row in report["scenes"]:
            print(f"scene ({scene_row['model']}, {scene_row['latency_s']} s): {scene_row['text']}")
            for correction in scene_row["corrections"]:
                print(f"   corrected: {correction}")
    acted = any(d["state"] in ("altering", "avoiding") for d in report["decisions"])
    return 0 if acted and report["scenes"] else 1
