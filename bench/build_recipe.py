"""The builder on SmolLM2-135M: a LoRA fine-tune plus quantisations of the COLREG recipe, each candidate
measured against the untouched base model in the same run.

Runs `tango2 build recipes/colreg-assistant/recipe.yaml --no-publish --json` (nothing is published) and reports
per candidate: the metric (and its change against the base), size, tokens/s and peak memory as ratios to the
base, plus the wall time of the whole build.
Run: .venv/bin/python bench/build_recipe.py [--json] [--recipe PATH]
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, report  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--recipe", type=Path, default=REPO / "recipes" / "colreg-assistant" / "recipe.yaml")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="tango2-build-bench-") as out:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "tango2_ros.cli", "build", str(args.recipe), "--no-publish",
                               "--json", "--out", out], capture_output=True, text=True)
        wall = time.monotonic() - started
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    build = json.loads(done.stdout)
    base = next(c for c in build["candidates"] if c["label"] == "base")
    rows = []
    for c in build["candidates"]:
        rows.append({
            "label": c["label"], "metric": c["metric"], "metric_change": c["metric"] - base["metric"],
            "ship_mb": c["ship_mb"], "device_mb": c["device_mb"], "size_ratio": c["device_mb"] / base["device_mb"],
            "tokens_per_s": c["tokens_per_s"], "speed_ratio": c["tokens_per_s"] / base["tokens_per_s"],
            "peak_memory_mb": c["peak_memory_mb"], "memory_ratio": c["peak_memory_mb"] / base["peak_memory_mb"],
            "passes_gates": not c["failures"] if c["label"] != "base" else None, "profiles": c["profiles"],
        })
    data = {"recipe": str(args.recipe), "wall_s": wall, "finetune_steps": len(build["losses"]),
            "loss_first": build["losses"][0] if build["losses"] else None,
            "loss_last": build["losses"][-1] if build["losses"] else None, "candidates": rows}
    lines = [f"build of {args.recipe.name}: {wall:.0f} s wall, {len(build['losses'])} LoRA steps"
             + (f", loss {build['losses'][0]:.3f} -> {build['losses'][-1]:.3f}" if build["losses"] else ""),
             f"{'candidate':<9} {'metric':>6} {'vs base':>8} {'ships MB':>9} {'device MB':>10} {'size x':>7} "
             f"{'tok/s':>6} {'speed x':>8} {'peak MB':>8} {'mem x':>6}  gates"]
    for r in rows:
        gate = "baseline" if r["passes_gates"] is None else ("pass" if r["passes_gates"] else "fail")
        lines.append(f"{r['label']:<9} {r['metric']:6.2f} {r['metric_change']:+8.2f} {r['ship_mb']:9.1f} "
                     f"{r['device_mb']:10.1f} {r['size_ratio']:7.2f} {r['tokens_per_s']:6.1f} {r['speed_ratio']:8.2f} "
                     f"{r['peak_memory_mb']:8.0f} {r['memory_ratio']:6.2f}  {gate}")
    report(args, data, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
