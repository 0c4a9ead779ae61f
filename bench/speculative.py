"""Speculative decoding by prompt lookup against plain decoding, on the domains' own requests, in one run.

Workloads, greedy and asked as the nodes ask (chat template, the node's JSON Schema):
  lam     the farm's action model (the embedded SmolLM2) on greenhouse states of a simulated winter day
  report  the report writer (the embedded SmolLM2) on sets of CT findings
  scene   the bridge assistant (the sds-bridge release) describing held-out encounters, English and Korean
  free    free text, no schema: stories and explanations that copy little from their prompts
Each request is answered by two engines of the same model, drafts off (plain) and on, in alternating order;
reported per workload: decoding tokens/s (after the first token, so prompt reuse does not count) over the
requests, the speed-up, the engine's measured cost of a step with a full draft (in one-token steps: which
drafts pay depends on it), the share of draft tokens the model kept, and how many answers were identical.
Run: .venv/bin/python bench/speculative.py [--json] [--requests N] [--draft-tokens N] [--parallel N]
"""
from __future__ import annotations

import collections
import datetime
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, report  # noqa: E402

from tango2_ros.core.runtime.default_models import default_llm_path  # noqa: E402
from tango2_ros.core.runtime.llm import ChatTurn, LlmOptions, LlmRuntime  # noqa: E402
from tango2_ros.core.runtime.schema import compile_schema  # noqa: E402

Request = tuple[str, dict | None, int]  # user message, JSON Schema, max tokens

FREE_TEXT = ["Tell a story about a lighthouse keeper and the ships she guides through the fog.",
             "Explain how a tomato plant uses light, water and carbon dioxide.",
             "Describe a busy container port at night.",
             "Write a letter from a ship's cook to his family.",
             "Why do ships keep to the starboard side of a narrow channel?",
             "Describe the work of a radiologist in a large hospital.",
             "Tell a story about a storm at sea.",
             "Explain what a greenhouse does in winter."]


def lam_requests(n: int) -> list[Request]:
    """The LAM's prompts for states of a simulated day, as LamController builds them (baseline in control)."""
    from tango2_ros.sdf import lam
    from tango2_ros.sdf.controllers import BaselineController
    from tango2_ros.sdf.crops import PRESETS
    from tango2_ros.sdf.deciding import LocalDecider, spin_up
    from tango2_ros.sdf.greenhouse import Greenhouse
    from tango2_ros.sdf.simulation import run

    preset = PRESETS["tomato"]
    plant = Greenhouse(preset, datetime.date(2009, 12, 1), days=1, period_s=900, spin_up_h=24.0)
    spin_up(plant)
    baseline, history, prompts = BaselineController(preset), collections.deque(maxlen=6), []

    class Recording:
        name = "baseline"

        def propose(self, observation):
            forecast = [(t, sun) for _, t, sun in plant.forecast()]
            prompts.append(lam.prompt(preset, observation, list(history)[::2], forecast, {}))
            history.append(observation)
            return baseline.propose(observation)

    run(plant, LocalDecider(preset, Recording()), "baseline")
    step = max(1, len(prompts) // n)
    return [(text, lam.answer_schema(), lam.ANSWER_TOKENS) for text in prompts[::step][:n]]


def report_requests(n: int) -> list[Request]:
    """Findings sets of one to four present labels, as the findings model rates them."""
    from tango2_ros.sdm import report
    from tango2_ros.sdm.findings import Finding
    from tango2_ros.sdm.labels import LABELS

    rng = random.Random(7)
    requests = []
    for _ in range(n):
        present = set(rng.sample(range(len(LABELS)), rng.randint(1, 4)))
        findings = [Finding(label.name, rng.uniform(0.6, 0.99) if i in present else rng.uniform(0.01, 0.3), 0.5,
                            i in present) for i, label in enumerate(LABELS)]
        requests.append((report.prompt(findings), report.schema(findings), 400))
    return requests


def scene_requests(n: int) -> list[Request]:
    from tango2_ros.sds import teaching

    rows = teaching.scenario_rows(teaching.held_out_cases(0), ("en", "ko"), random.Random(0), questions_each=0)
    return [(row["messages"][0]["content"], row["check"]["schema"], 720) for row in rows[:n]]


def measure(runtimes: dict[str, LlmRuntime], requests: list[Request], parallel: int) -> dict:
    """Both runtimes (same model, drafts off and on) answer every request, alternating which goes first (each
    keeps its own prompt cache); parallel > 1 submits that many at once."""
    totals = {mode: {"tokens": 0, "seconds": 0.0} for mode in runtimes}
    drafted = kept = identical = 0
    for first in range(0, len(requests), parallel):
        group = requests[first:first + parallel]
        answers = {}
        for mode in sorted(runtimes, reverse=first % 2 == 1):
            runtime = runtimes[mode]
            handles = [runtime.start(runtime.chat_prompt([ChatTurn("user", text)]), max_tokens=max_tokens,
                                     schema=compile_schema(json.dumps(schema)) if schema else None)
                       for text, schema, max_tokens in group]
            results = [handle.wait(600) for handle in handles]
            answers[mode] = [r.text for r in results]
            for r in results:
                totals[mode]["tokens"] += max(0, r.tokens - 1)
                totals[mode]["seconds"] += r.decode_s
                drafted, kept = drafted + r.drafted_tokens, kept + r.accepted_tokens
        identical += sum(a == b for a, b in zip(answers["plain"], answers["speculative"]))
    rates = {mode: t["tokens"] / t["seconds"] if t["seconds"] else 0.0 for mode, t in totals.items()}
    return {"requests": len(requests), "tokens_per_s_plain": round(rates["plain"], 1),
            "tokens_per_s_speculative": round(rates["speculative"], 1),
            "speedup": round(rates["speculative"] / rates["plain"], 2) if rates["plain"] else None,
            "draft_tokens": drafted, "draft_tokens_kept": round(kept / drafted, 2) if drafted else None,
            "identical_answers": identical, "identical_output": identical == len(requests)}


def runtimes_for(model: str, adapter: str, draft_tokens: int, parallel: int, name: str) -> dict[str, LlmRuntime]:
    def runtime(drafts: int) -> LlmRuntime:
        return LlmRuntime(model, LlmOptions(n_parallel=parallel, n_ctx_per_seq=2048, lora_path=adapter,
                                            draft_tokens=drafts), name=name)

    return {"plain": runtime(0), "speculative": runtime(draft_tokens)}


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=8, help="requests per workload")
    p.add_argument("--draft-tokens", type=int, default=8, help="most draft tokens per step")
    p.add_argument("--parallel", type=int, default=1, help="requests decoded at once (sequences of one engine)")
    p.add_argument("--release", default="sds-bridge@1.0.0-lora", help="the bridge assistant for the scene workload")
    p.add_argument("--workloads", default="lam,report,scene,free")
    args = p.parse_args()
    from tango2_ros.cli.model_files import model_files

    builders = {"lam": lam_requests, "report": report_requests, "scene": scene_requests,
                "free": lambda n: [(text, None, 256) for text in FREE_TEXT[:n]]}
    workloads = []
    for name in args.workloads.split(","):
        if name == "scene":
            model, adapter, _, _ = model_files(args.release)
            runtimes = runtimes_for(str(model), str(adapter or ""), args.draft_tokens, args.parallel, args.release)
        else:
            runtimes = runtimes_for(str(default_llm_path()), "", args.draft_tokens, args.parallel, "")
        try:
            for runtime in runtimes.values():
                runtime.warm_up()
            workloads.append({"name": name, "model": runtimes["plain"].identity.label,
                              "full_draft_step_cost": round(runtimes["speculative"].engine.step_cost.of(
                                  1 + args.draft_tokens), 2),
                              **measure(runtimes, builders[name](args.requests), args.parallel)})
        finally:
            for runtime in runtimes.values():
                runtime.close()
    data = {"draft_tokens": args.draft_tokens, "parallel": args.parallel, "workloads": workloads}
    lines = [f"prompt-lookup speculative decoding, up to {args.draft_tokens} draft tokens, {args.parallel} at once",
             f"{'workload':<8} {'requests':>8} {'plain tok/s':>11} {'spec tok/s':>10} {'speed-up':>8} "
             f"{'cost':>5} {'drafted':>7} {'kept':>5} identical"]
    for w in workloads:
        lines.append(f"{w['name']:<8} {w['requests']:>8} {w['tokens_per_s_plain']:>11} "
                     f"{w['tokens_per_s_speculative']:>10} {w['speedup']:>8} {w['full_draft_step_cost']:>5} "
                     f"{w['draft_tokens']:>7} {w['draft_tokens_kept'] or 0:>5} {w['identical_answers']}/{w['requests']}")
    report(args, data, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
