"""Greenhouse controllers on the same simulated days: the LAM (SmolLM2-135M through the supervisor) against the
baseline rules, and the adversarial random controller, in process (the same code the nodes run); plus GreenLight's
stepping speed against real time.

    .venv/bin/python bench/sdf_controllers.py [--days 7] [--start 2009-12-01] [--period-s 900]
                                              [--controllers baseline,random,lam] [--lam-model NAME@SPEC|GGUF]
                                              [--log-dir build/bench] [--json]

Prints, per controller, the in-band percentages, energy, water, supervisor counts and interlock violations at the
actuators, and the LAM/baseline ratios. The decision logs go to LOG_DIR/sdf-<controller>.jsonl (the input of
`tango2 sdf learn`). `--lam-model` runs a learned LAM (e.g. lam-tomato@1.1.0) instead of the embedded SmolLM2.
"""
from __future__ import annotations

import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, report  # noqa: E402

from tango2_ros.sdf.crops import PRESETS  # noqa: E402


def run_controller(name: str, preset, start: datetime.date, days: float, period_s: float, log: Path,
                   lam_model: str | None = None) -> dict:
    from tango2_ros.sdf.controllers import BaselineController, RandomController
    from tango2_ros.sdf.deciding import LamController, LocalDecider, spin_up
    from tango2_ros.sdf.greenhouse import Greenhouse
    from tango2_ros.sdf.simulation import run

    plant = Greenhouse(preset, start, days=days, period_s=period_s, spin_up_h=24.0)
    spin_up(plant)
    runtime = None
    if name == "lam":
        from tango2_ros.cli.model_files import model_file
        from tango2_ros.core.runtime.default_models import default_llm_path
        from tango2_ros.core.runtime.llm import LlmOptions, LlmRuntime

        path, model, version = model_file(lam_model) if lam_model else (default_llm_path(), "", "")
        runtime = LlmRuntime(path, LlmOptions(n_parallel=1, n_ctx_per_seq=1024), name=model, version=version)
        controller = LamController(runtime, preset, lambda: [(t, sun) for _, t, sun in plant.forecast()])
    else:
        controller = BaselineController(preset) if name == "baseline" else RandomController(seed=1)
    records: list[dict] = []
    started = time.monotonic()
    try:
        result = run(plant, LocalDecider(preset, controller), name, on_record=records.append)
    finally:
        if runtime is not None:
            runtime.close()
    result["wall_s"] = round(time.monotonic() - started, 1)
    result["x_real_time"] = round(days * 86400 / result["wall_s"])
    if runtime is not None:
        result["model"] = runtime.identity.label
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    return result


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--start", default="2009-12-01")
    p.add_argument("--period-s", type=float, default=900.0)
    p.add_argument("--crop", default="tomato", choices=sorted(PRESETS))
    p.add_argument("--controllers", default="baseline,random,lam")
    p.add_argument("--lam-model", default=None, help="the LAM's model: NAME@SPEC or a GGUF file")
    p.add_argument("--log-dir", type=Path, default=Path("build/bench"))
    args = p.parse_args()
    out = args.log_dir
    out.mkdir(parents=True, exist_ok=True)
    start = datetime.date.fromisoformat(args.start)
    results = {}
    for name in args.controllers.split(","):
        print(f"{name}: {args.days:g} day(s) from {start} ...", file=sys.stderr, flush=True)
        results[name] = run_controller(name, PRESETS[args.crop], start, args.days, args.period_s,
                                       out / f"sdf-{name}.jsonl", args.lam_model)
    keys = ("temp_in_band_pct", "rh_in_band_pct", "co2_in_band_pct", "heating_mj_m2", "electricity_kwh_m2",
            "water_l_m2", "proposals", "supervisor_rejections", "supervisor_clamps", "fallback_s",
            "interlock_violations", "wall_s", "x_real_time")
    lines = [f"{args.crop}, {args.days:g} day(s) from {start}, decision every {args.period_s:g} s (in process)"
             + (f", LAM {results['lam']['model']}" if "lam" in results else ""),
             f"{'':24}" + "".join(f"{name:>12}" for name in results)]
    lines += [f"{key:24}" + "".join(f"{results[name][key]:>12}" for name in results) for key in keys]
    ratios = {}
    if "lam" in results and "baseline" in results:
        for key in ("temp_in_band_pct", "rh_in_band_pct", "co2_in_band_pct", "heating_mj_m2"):
            base = results["baseline"][key]
            ratios[key] = round(results["lam"][key] / base, 3) if base else None
        lines.append("LAM / baseline: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    report(args, {"crop": args.crop, "days": args.days, "start": args.start, "period_s": args.period_s,
                  "results": results, "lam_over_baseline": ratios}, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
