"""What a candidate in shadow costs the serving path on the farm, through every node (MQTT -> greenhouse_bridge ->
farm_controller -> safety_supervisor -> modbus_bridge): the time from a state sent to its actuator write, per
period, with the LAM alone and with the same model also running in shadow (its own llm_node at nice 10 on one
thread, asked after the serving answer and cancelled by the next state), alternating in one run. As on a farm,
where periods are minutes apart, the simulation lets the candidate answer before it sends the next state.

    .venv/bin/python bench/shadow_overhead.py [--periods 12] [--rounds 1] [--json]

Prints p50/p95 of the per-period serving time for both, the ratio of the p50s (`p50_ratio_with_vs_without`), and
what the shadow did (answered, agreed, latency from the state to its proposal).
"""
from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, parser, percentile, report, setup_env  # noqa: E402

CANDIDATE = "smollm2-135m-instruct@1.0.0"  # the embedded model as its own candidate: every answer it gives agrees


def one_run(periods: int, shadow: str | None) -> tuple[list[float], dict | None]:
    from tango2_ros.sdf.crops import PRESETS
    from tango2_ros.sdf.greenhouse import Greenhouse
    from tango2_ros.sdf.simulation import run
    from tango2_ros.sim.farm_rig import FarmRig

    plant = Greenhouse(PRESETS["tomato"], datetime.date(2009, 12, 1), days=periods * 300 / 86400, period_s=300,
                       spin_up_h=0)
    rig = FarmRig("lam", "tomato", plant, shadow=shadow, shadow_decisions=100000)  # judged, never promoted here
    try:
        run(plant, rig.loop, "lam")
        time.sleep(2.0)  # the last shadow answer and the supervisor's next heartbeat
        score = rig.shadow_score() if shadow else None
    finally:
        rig.shutdown()
    return rig.loop.serving_s[1:], score  # the first period includes DDS discovery between the nodes


def main() -> None:
    args_parser = parser(__doc__.splitlines()[0])
    args_parser.add_argument("--periods", type=int, default=12)
    args_parser.add_argument("--rounds", type=int, default=1)
    args = args_parser.parse_args()
    setup_env()
    alone: list[float] = []
    shadowed: list[float] = []
    scores = []
    for _ in range(args.rounds):
        alone += one_run(args.periods, None)[0]
        times, score = one_run(args.periods, CANDIDATE)
        shadowed += times
        scores.append(score)
    data = {"periods_per_run": args.periods, "rounds": args.rounds,
            "serving_s_p50_alone": round(median(alone), 3), "serving_s_p95_alone": round(percentile(alone, 95), 3),
            "serving_s_p50_with_shadow": round(median(shadowed), 3),
            "serving_s_p95_with_shadow": round(percentile(shadowed, 95), 3),
            "p50_ratio_with_vs_without": round(median(shadowed) / median(alone), 2), "shadow": scores}
    lines = [f"serving path per period (state -> actuator write), {len(alone)} periods each:",
             f"  alone        p50 {data['serving_s_p50_alone']:.3f} s  p95 {data['serving_s_p95_alone']:.3f} s",
             f"  with shadow  p50 {data['serving_s_p50_with_shadow']:.3f} s  p95 "
             f"{data['serving_s_p95_with_shadow']:.3f} s   ratio (p50) {data['p50_ratio_with_vs_without']:.2f}"]
    for score in scores:
        if score:
            lines.append(f"  shadow: {score['decisions']} of {score['asked']} answered, {score['agreement_pct']} % "
                         f"agreed, latency p50 {score['latency_s_p50']} s, {score['would_violate']} would violate")
    report(args, data, lines)


if __name__ == "__main__":
    main()
