"""Markdown table of Imazu runs for the README, from `tango2 sds simulate imazu --json` output on stdin.

    .venv/bin/tango2 sds simulate imazu --json --plot-dir docs/sds | .venv/bin/python scripts/imazu_table.py
"""
import json
import sys


def main() -> int:
    runs = [json.loads(line) for line in sys.stdin if line.startswith("{")]
    print("| case | targets at the start: encounter (own role) | min distance (NM) | alterations (t s: course deg, "
          "speed kn) | extra path % | goal in 90 min | plot |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for run in runs:
        targets = ", ".join(f"{t['id']} {t['encounter']} ({t['role']})" for t in run["targets"])
        alterations = "; ".join(f"{m['t_s']:.0f}: {m['course_change_deg']:+.0f}, {m['speed_change_kn']:+.1f}"
                                for m in run["maneuvers"]) or "none"
        case = run["scenario"].removeprefix("imazu-")
        print(f"| {case} | {targets} | {run['min_distance_nm']:.2f} | {alterations} | "
              f"{run['path_extra_distance_pct']:.1f} | {'yes' if run['reached_goal'] else 'no'} | "
              f"[png](docs/sds/{run['scenario']}.png) |")
    if runs:
        print(f"\n{len(runs)} runs, {sum(r['collision'] for r in runs)} collisions, smallest distance "
              f"{min(r['min_distance_nm'] for r in runs):.3f} NM, through: {runs[0]['through']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
