"""One continual-learning cycle of the farm's action model, measured: the decision log of a simulated week (from
bench/sdf_controllers.py) -> `tango2 sdf learn` -> the current model and the candidate on held-out days.

    .venv/bin/python bench/sdf_learning.py [--log LOG.jsonl ...] [--held-out 2009-12-10] [--days 1]
                                           [--steps 300] [--json]

The default logs are the baseline's and the random controller's weeks (`bench/sdf_controllers.py --controllers
baseline,random`, about 2 minutes): the baseline's decisions teach where the climate is in band, and the baseline
also teaches the states the random controller drove the greenhouse into, and the counterfactual states made from
every logged one (where a learner that only saw the expert's states would be lost).

Prints the baseline controller's (the reference), the current model's and the candidate's held-out results (also
in band over the periods each steered itself, which the gate compares) and the candidate/current ratios. The
candidate is built with --no-publish unless --publish is given (a bench should not change the registry by default).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, report  # noqa: E402

KEYS = ("temp_in_band_pct", "rh_in_band_pct", "co2_in_band_pct", "heating_mj_m2", "proposals",
        "supervisor_rejections", "supervisor_clamps", "fallback_s", "interlock_violations")


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--log", type=Path, nargs="+",
                   default=[Path(f"build/bench/sdf-{name}.jsonl") for name in ("baseline", "random")])
    p.add_argument("--held-out", default="2009-12-10")
    p.add_argument("--days", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--period-s", type=float, default=900.0, help="decision period on the held-out days")
    p.add_argument("--publish", action="store_true")
    args = p.parse_args()
    missing = [str(log) for log in args.log if not log.is_file()]
    if missing:
        print(f"{', '.join(missing)} not found: run bench/sdf_controllers.py first", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "tango2_ros.cli", "sdf", "learn", *map(str, args.log), "--held-out", args.held_out,
               "--held-out-days", str(args.days), "--steps", str(args.steps),
               "--period-s", str(args.period_s), "--version", "1.1.0", "--json",
               "--work", "build/bench/learn"] + ([] if args.publish else ["--no-publish"])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    result = json.loads(done.stdout)
    lines = [f"dataset: {result['dataset']}", f"LoRA loss {result['losses'][0]:.3f} -> {result['losses'][-1]:.3f}",
             f"builder gate (json_valid): {json.dumps(result['builder'])}"]
    ratios = {}
    if "candidate" in result:
        runs = ("reference", "current", "candidate")
        lines.append(f"{'held-out ' + args.held_out:28}" + "".join(f"{run:>12}" for run in runs))
        lines += [f"{key:28}" + "".join(f"{result[run][key]:>12}" for run in runs) for key in KEYS]
        lines += [f"{'steered ' + name + ' %':28}" + "".join(f"{result[run]['steered_in_band_pct'][name]:>12}"
                                                             for run in runs) for name in ("temperature", "humidity", "co2")]
        for key in ("temp_in_band_pct", "rh_in_band_pct", "co2_in_band_pct"):
            base = result["current"][key]
            ratios[key] = round(result["candidate"][key] / base, 3) if base else None
        lines.append("candidate / current: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    lines.append(f"decision: {result['decision']}")
    report(args, {**result, "candidate_over_current": ratios}, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
