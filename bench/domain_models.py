"""The domains' learned models against the base model in service, in one run on held-out data.

The ship: the bridge assistant (`sds-bridge`, a LoRA on SmolLM2-135M-Instruct) and the untrained base model
describe the 22 Imazu and 5 textbook encounters, each turned and moved by a random amount (cases the teacher
never uses), in English and Korean, and answer one generated question per case and language. Each answer is
judged by the nodes' own checks: a description or answer "passes raw" when the check changes nothing. Reported
per model: raw pass of the descriptions per language, question accuracy per language, tokens/s and mean latency
per answer, and the learned model's ratios to the base.
Run: .venv/bin/python bench/domain_models.py [--json] [--release sds-bridge@1.0.0-lora] [--cases N]
"""
from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, report  # noqa: E402

from tango2_ros.builder.evaluate import evaluate_in_subprocess  # noqa: E402
from tango2_ros.cli.model_files import model_files  # noqa: E402
from tango2_ros.errors import UserError  # noqa: E402
from tango2_ros.sds import teaching  # noqa: E402

GROUPS = ("sds-describe/en", "sds-describe/ko", "sds-ask/en", "sds-ask/ko")


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--release", default="sds-bridge@1.0.0-lora", help="the learned model (NAME@SPEC)")
    p.add_argument("--base", default="smollm2-135m-instruct@1.0.0", help="the model in service before it")
    p.add_argument("--cases", type=int, default=27, help="how many of the 27 held-out cases (default all)")
    p.add_argument("--seed", type=int, default=0, help="of the turns and moves and of the questions")
    args = p.parse_args()
    cases = teaching.held_out_cases(args.seed)[:args.cases]
    rows = teaching.scenario_rows(cases, ("en", "ko"), random.Random(args.seed), questions_each=1)
    results = {}
    with tempfile.TemporaryDirectory(prefix="tango2-domain-bench-") as scratch:
        held_out = Path(scratch) / "held-out.jsonl"
        held_out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        for label, reference in (("base", args.base), ("learned", args.release)):
            try:
                model, adapter, _, _ = model_files(reference)
            except UserError as exc:  # e.g. no release yet: `tango2 learn recipes/sds-bridge/recipe.yaml`
                print(f"domain_models: {exc}", file=sys.stderr)
                return 2
            results[label] = evaluate_in_subprocess(model, adapter, held_out, "fact_check", 720, timeout_s=7200)
    base, learned = results["base"], results["learned"]
    data = {"domain": "sds", "cases": [c.name for c in cases], "answers": len(rows), "base": args.base,
            "release": args.release, "models": {}}
    lines = [f"sds bridge assistant on {len(cases)} held-out cases (Imazu + textbook, turned and moved), "
             f"{len(rows)} answers per model",
             f"{'model':<30} {'describe en':>11} {'describe ko':>11} {'ask en':>7} {'ask ko':>7} {'tok/s':>6} "
             f"{'latency s':>9}"]
    for label, reference in (("base", args.base), ("learned", args.release)):
        e = results[label]
        data["models"][label] = {"reference": reference, **{g: e.groups.get(g) for g in GROUPS},
                                 "all": e.metric, "tokens_per_s": e.tokens_per_s, "latency_s": e.latency_s,
                                 "peak_memory_mb": e.peak_memory_mb}
        lines.append(f"{reference:<30} " + " ".join(f"{e.groups.get(g, 0):{w}.0%}" for g, w in zip(GROUPS, (11, 11, 7, 7)))
                     + f" {e.tokens_per_s:6.1f} {e.latency_s:9.2f}")
    data["ratios"] = {"tokens_per_s": learned.tokens_per_s / base.tokens_per_s,
                      "latency_s": learned.latency_s / base.latency_s}
    lines.append(f"learned / base: tokens/s x{data['ratios']['tokens_per_s']:.2f}, latency x{data['ratios']['latency_s']:.2f}")
    report(args, data, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
