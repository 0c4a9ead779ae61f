"""`tango2 sdf ...`: the software-defined farm.

    tango2 sdf simulate --crop tomato|lettuce --days N [--start YYYY-MM-DD] --controller lam|baseline|random
                        [--model NAME@SPEC|GGUF] [--json] [--plot FILE.png] [--log FILE.jsonl] [--in-process]
                        [--period-s S]
    tango2 sdf learn LOG.jsonl [...] --held-out YYYY-MM-DD [--current MODEL] [--version V] [--steps N] [--json]
    tango2 sdf sweep --days YYYY-MM-DD,... [--model NAME@SPEC] [--hours H] [--spin-up-h H]
                     [--cluster local:N|auto|ray://HOST:PORT] [--json]

`simulate` runs the GreenLight greenhouse on the Bleiswijk weather (2009-10-20 to 2010-02-07) in closed loop with
the real nodes, after `--spin-up-h` hours under the baseline (so the measured days start from a settled climate).
The nodes start here in their own namespace with a mosquitto broker: sensors over MQTT -> greenhouse_bridge ->
farm_controller (the chosen controller; `lam` also starts the llm_node) -> safety_supervisor -> modbus_bridge ->
the simulator's Modbus TCP server -> the actuators. `--in-process` runs the same controller and supervisor code
without ROS, MQTT or Modbus. The LAM is the crop's latest learned release (lam-tomato, lam-lettuce) where the
registry has one, else the embedded untrained SmolLM2-135M-Instruct (the report's `model` says which); `--model`
gives it another: a registry reference (through ROS a model manager deploys it into the llm_node before the first
period, as on the farm) or a GGUF file. `--log` writes the decision log (JSON Lines, schema in
tango2_ros/sdf/simulation.py). Exit code 1 when any interlock was broken at the actuators.

`learn` runs one continual-learning cycle (tango2_ros/sdf/learning.py): a fine-tuning set from the logs, the
model-lifecycle builder, the current model and the candidate in the simulator on held-out days, and publication of
the candidate (signed, to the model registry) only if it beats the current model without regressions; a model
manager slot that follows `latest` then swaps it in at run time. The working folder (`--work`) keeps the
fine-tuning set, the recipe, the built files and the held-out runs' decision logs (held-out-reference.jsonl,
held-out-current.jsonl, held-out-candidate.jsonl).

`sweep` runs the baseline controller, or `--model` behind the supervisor, on many held-out days, each an
independent run in process: one after the other here, or as Ray tasks with `--cluster` (tango2_ros/builder/sweep.py).
It prints each day's report (and the worker that ran it) and the mean steered in-band shares.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from tango2_ros.cli.output import emit
from tango2_ros.errors import UserError


def register(commands) -> None:
    parser = commands.add_parser("sdf", help="software-defined farm: greenhouse simulation with the farm's nodes",
                                 description=__doc__)
    sub = parser.add_subparsers(dest="sdf_command", metavar="ACTION", required=True)
    simulate = sub.add_parser("simulate", help="closed-loop greenhouse simulation")
    simulate.add_argument("--crop", choices=("tomato", "lettuce"), default="tomato")
    simulate.add_argument("--days", type=float, default=1.0)
    simulate.add_argument("--start", type=_date, default=None,
                          help="first measured day, YYYY-MM-DD (default: the first day after the spin-up)")
    simulate.add_argument("--controller", choices=("lam", "baseline", "random"), default="baseline")
    simulate.add_argument("--model", default=None,
                          help="lam only: NAME@VERSION|TAG from the registry or a GGUF file (default: lam-CROP@latest "
                               "where the registry has it, else the embedded untrained model)")
    simulate.add_argument("--shadow", default=None, metavar="NAME@SPEC",
                          help="lam only, with --in-process: a candidate action model that proposes beside the "
                               "serving one, judged by the supervisor, never applied; promoted when its gate holds")
    simulate.add_argument("--shadow-decisions", type=int, default=20,
                          help="decisions the shadow answers before it is promoted or retired (default 20)")
    simulate.add_argument("--period-s", type=float, default=300.0, help="control period (default 300 s)")
    simulate.add_argument("--spin-up-h", type=float, default=24.0,
                          help="hours under the baseline before the measured days (default 24)")
    simulate.add_argument("--json", action="store_true")
    simulate.add_argument("--plot", type=Path, help="PNG of the run")
    simulate.add_argument("--log", type=Path, help="decision log, JSON Lines")
    simulate.add_argument("--in-process", action="store_true", help="no ROS, MQTT or Modbus: the same code in process")
    simulate.set_defaults(handler=_simulate)
    learn = sub.add_parser("learn", help="one continual-learning cycle: logs -> fine-tune -> held-out test -> publish")
    learn.add_argument("logs", nargs="+", type=Path, metavar="LOG.jsonl", help="decision logs (sdf simulate --log)")
    learn.add_argument("--crop", choices=("tomato", "lettuce"), default="tomato")
    learn.add_argument("--current", default="smollm2-135m-instruct@1.0.0",
                       help="the action model in service: artifact reference or GGUF file")
    learn.add_argument("--name", default=None, help="artifact name of the new model (default lam-CROP)")
    learn.add_argument("--version", default="1.0.0", help="version of the new model")
    learn.add_argument("--held-out", type=_date, required=True, help="first held-out day, YYYY-MM-DD")
    learn.add_argument("--held-out-days", type=float, default=1.0)
    learn.add_argument("--period-s", type=float, default=900.0,
                       help="decision period in the held-out runs (default 900 s; an hour's hold overshoots)")
    learn.add_argument("--steps", type=int, default=30, help="LoRA steps")
    learn.add_argument("--spin-up-h", type=float, default=24.0,
                        help="hours under the baseline before each held-out run (default 24)")
    learn.add_argument("--work", type=Path, default=None, help="working folder (default build/learn/NAME-VERSION)")
    learn.add_argument("--no-publish", action="store_true")
    learn.add_argument("--json", action="store_true")
    learn.set_defaults(handler=_learn)
    sweep = sub.add_parser("sweep", help="held-out days in parallel: here, or on a Ray cluster")
    sweep.add_argument("--days", type=_dates, required=True, help="comma-separated YYYY-MM-DD")
    sweep.add_argument("--model", default="", help="an action model from the registry (default: the baseline)")
    sweep.add_argument("--crop", choices=("tomato", "lettuce"), default="tomato")
    sweep.add_argument("--hours", type=float, default=24.0, help="hours per run")
    sweep.add_argument("--period-s", type=float, default=900.0)
    sweep.add_argument("--spin-up-h", type=float, default=24.0,
                        help="hours under the baseline before each held-out run (default 24)")
    sweep.add_argument("--cluster", default="", help="local:N, auto or ray://HOST:PORT (default: this machine)")
    sweep.add_argument("--json", action="store_true")
    sweep.set_defaults(handler=_sweep)


def _date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD") from None


def _dates(text: str) -> list[datetime.date]:
    return [_date(part.strip()) for part in text.split(",") if part.strip()]


def _sweep(args) -> int:
    from tango2_ros.builder.sweep import FarmDay, evaluate_farm_day, run_sweep

    if not args.days or not 0 < args.hours <= 24 * 30 or not 60 <= args.period_s <= 3600 or \
            not 0 <= args.spin_up_h <= 240:
        raise UserError("give --days, --hours in 0-720, --period-s in 60-3600 and --spin-up-h in 0-240")
    # a Ray task has one CPU: llama.cpp's spinning workers must not outnumber it
    runs = [FarmDay(day, args.model, args.hours, args.crop, args.period_s, threads=1 if args.cluster else 2,
                    spin_up_h=args.spin_up_h) for day in args.days]
    reports = run_sweep(runs, evaluate_farm_day, args.cluster)
    means = {key: round(sum(r["steered_in_band_pct"][key] for r in reports) / len(reports), 1)
             for key in ("temperature", "humidity", "co2")}
    lines = [f"{r['run']['day']} {r['controller']:<9} temperature {r['steered_in_band_pct']['temperature']:5.1f} % "
             f"humidity {r['steered_in_band_pct']['humidity']:5.1f} % CO2 {r['steered_in_band_pct']['co2']:5.1f} % "
             f"in band (steered), on {r['worker']}" for r in reports]
    emit(args, {"model": args.model or "baseline", "cluster": args.cluster or "this machine", "runs": reports,
                "mean_steered_in_band_pct": means}, "\n".join(lines + [f"mean: {means}"]))
    return 0


def _simulate(args) -> int:
    import time

    from tango2_ros.sdf.crops import PRESETS
    from tango2_ros.sdf.greenhouse import Greenhouse
    from tango2_ros.sdf.simulation import run

    if not 0 < args.days <= 30:
        raise UserError(f"--days {args.days:g}: use more than 0 and at most 30")
    for path in (args.plot, args.log):
        if path is not None and not path.parent.is_dir():
            raise UserError(f"{path}: folder {path.parent} does not exist")
    for option, value in (("--model", args.model), ("--shadow", args.shadow)):
        if value is not None and args.controller != "lam":
            raise UserError(f"{option} is for --controller lam (the {args.controller} controller has no model)")
    if not 1 <= args.shadow_decisions <= 100000:
        raise UserError(f"--shadow-decisions {args.shadow_decisions}: use 1 to 100000")
    preset = PRESETS[args.crop]
    if not 0 <= args.spin_up_h <= 240:
        raise UserError(f"--spin-up-h {args.spin_up_h:g}: use 0 to 240")
    greenhouse = Greenhouse(preset, args.start, days=args.days, period_s=args.period_s, spin_up_h=args.spin_up_h)
    from tango2_ros.sdf.deciding import spin_up

    spin_up(greenhouse)
    if args.controller == "lam" and args.model is None:
        args.model = _learned_lam(preset.name)
    records: list[dict] = []
    started = time.monotonic()
    if args.in_process:
        decider = _local_decider(args.controller, preset, greenhouse, args.model, args.shadow, args.shadow_decisions)
        report = run(greenhouse, decider, args.controller, on_record=records.append)
        report["through"] = "in-process"
        if decider.score is not None:
            report["shadow"] = decider.score.as_dict()
    else:
        from tango2_ros.sim.farm_rig import FarmRig

        rig = FarmRig(args.controller, preset.name, greenhouse, args.model, args.shadow, args.shadow_decisions)
        try:
            report = run(greenhouse, rig.loop, args.controller, on_record=records.append)
            if args.shadow:
                report["shadow"] = rig.shadow_score() or {"model": args.shadow, "decisions": 0, "asked": 0}
        finally:
            rig.shutdown()
        report["through"] = rig.description
    if args.controller == "lam":
        report["model"] = args.model or "embedded SmolLM2-135M-Instruct (untrained)"
    report["wall_s"] = round(time.monotonic() - started, 1)
    if args.log:
        args.log.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    if args.plot:
        from tango2_ros.sdf.plot import plot_run

        plot_run(records, preset, report, args.plot)
    emit(args, report, _human(report))
    return 1 if report["interlock_violations"] else 0


def _learn(args) -> int:
    from tango2_ros import paths
    from tango2_ros.core.artifacts.manifest import SEMVER_PATTERN
    from tango2_ros.sdf.crops import PRESETS
    from tango2_ros.sdf.learning import CycleOptions, learning_cycle, read_logs

    if not 1 <= args.steps <= 10000:
        raise UserError(f"--steps {args.steps}: use 1 to 10000")
    if not 0 < args.held_out_days <= 30:
        raise UserError(f"--held-out-days {args.held_out_days:g}: use more than 0 and at most 30")
    if not 0 <= args.spin_up_h <= 240:
        raise UserError(f"--spin-up-h {args.spin_up_h:g}: use 0 to 240")
    release = SEMVER_PATTERN.match(args.version)
    if not release or release.group(4):
        raise UserError(f"--version {args.version!r}: a release MAJOR.MINOR.PATCH (what passes the held-out days "
                        f"is released)")
    name = args.name or f"lam-{args.crop}"
    options = CycleOptions(name=name, version=args.version, current=args.current, held_out_start=args.held_out,
                           held_out_days=args.held_out_days, period_s=args.period_s, steps=args.steps,
                           publish=not args.no_publish, spin_up_h=args.spin_up_h)
    work = args.work or paths.share_dir() / "build" / "learn" / f"{name}-{args.version}"
    report = learning_cycle(read_logs(args.logs, args.crop), PRESETS[args.crop], options, work,
                            lambda line: print(line, file=sys.stderr, flush=True))
    emit(args, report, f"{report['decision']}" + (f": published {report['published']}" if report["published"] else ""))
    return 0


def _learned_lam(crop: str) -> str | None:
    """lam-CROP@latest when the registry holds a release of the crop's action model (set-up imports the shipped
    ones), else None: the embedded untrained model serves."""
    from tango2_ros import paths
    from tango2_ros.core.artifacts.stores import open_store

    name = f"lam-{crop}"
    return f"{name}@latest" if open_store(paths.default_store()).versions(name) else None


def _local_decider(controller: str, preset, greenhouse, model: str | None = None, shadow: str | None = None,
                   shadow_decisions: int = 20):
    from tango2_ros.core.shadow import ShadowGate
    from tango2_ros.sdf.controllers import BaselineController, RandomController
    from tango2_ros.sdf.deciding import LocalDecider

    if controller == "baseline":
        return LocalDecider(preset, BaselineController(preset))
    if controller == "random":
        return LocalDecider(preset, RandomController(seed=0))
    return LocalDecider(preset, _lam(model, preset, greenhouse), shadow=_lam(shadow, preset, greenhouse) if shadow
                        else None, gate=ShadowGate(decisions=shadow_decisions))


def _lam(model: str | None, preset, greenhouse):
    """The action model `model` (registry reference or GGUF file; None = the embedded default) in process."""
    from tango2_ros.cli.model_files import model_files
    from tango2_ros.core.runtime.default_models import default_llm_path
    from tango2_ros.core.runtime.llm import LlmOptions, LlmRuntime
    from tango2_ros.sdf.deciding import LamController

    path, adapter, name, version = model_files(model) if model else (default_llm_path(), None, "", "")
    options = LlmOptions(n_parallel=1, n_ctx_per_seq=1024, lora_path=str(adapter) if adapter else "")
    runtime = LlmRuntime(path, options, name=name, version=version)
    return LamController(runtime, preset, lambda: [(t, s) for _, t, s in greenhouse.forecast()])


def _human(report: dict) -> str:
    return (f"{report['crop']}, {report['days']:g} day(s) from {report['start']}, {report['controller']} "
            f"({report['through']}): temperature in band {report['temp_in_band_pct']} %, RH {report['rh_in_band_pct']} %, "
            f"CO2 {report['co2_in_band_pct']} %; heating {report['heating_mj_m2']:.2f} MJ/m2, electricity "
            f"{report['electricity_kwh_m2']:.2f} kWh/m2, water {report['water_l_m2']:.2f} l/m2; "
            f"{report['proposals']} proposals, {report['supervisor_rejections']} rejected, "
            f"{report['supervisor_clamps']} clamps, fallback {report['fallback_s']:.0f} s, "
            f"interlock violations {report['interlock_violations']} ({report['wall_s']} s)" + _shadow_line(report))


def _shadow_line(report: dict) -> str:
    shadow = report.get("shadow")
    if shadow is None:
        return ""
    outcome = "promoted" if shadow["promoted"] else shadow["retired"] or "still watched"
    return (f"\nshadow {shadow['model']}: {shadow['decisions']} of {shadow['asked']} decisions answered, agreed "
            f"{shadow['agreement_pct']} %, {shadow['supervisor_rejections']} rejected, {shadow['supervisor_clamps']} "
            f"clamped, {shadow['would_violate']} would have broken an interlock; {outcome}")
