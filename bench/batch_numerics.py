"""Logits of tokens decoded together in one llama.cpp batch against the same tokens decoded one at a time.

Speculative decoding verifies a draft in one batch; continuous batching decodes several requests in one batch.
Either gives the answer of one-at-a-time greedy decoding only where the logits agree exactly, so this measures,
per context length, the largest difference of any logit over a few positions and whether the best token changed.
Run: .venv/bin/python bench/batch_numerics.py [--json] [--contexts 32,128,256,384,768] [--tokens 6]
"""
from __future__ import annotations

import sys
from pathlib import Path

import llama_cpp
import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, report  # noqa: E402

from tango2_ros.core.runtime.default_models import default_llm_path  # noqa: E402
from tango2_ros.core.runtime.llama_engine import LlamaEngine  # noqa: E402

TEXT = ("The pilot boards the container ship at the fairway buoy. Tugs make fast fore and aft, the bridge team "
        "reports the engine ready, and the ship turns into the channel against the ebb. ")


def logits(engine: LlamaEngine, tokens: list[int], at: int, together: bool) -> list[numpy.ndarray]:
    """The logits after each of `tokens`, fed at positions from `at` in one batch or one by one."""
    rows = []
    for group in ([tokens] if together else [[t] for t in tokens]):
        engine._batch_clear()
        for token in group:
            engine._batch_add(token, at, 0, True)
            at += 1
        if llama_cpp.llama_decode(engine.ctx, engine.batch) != 0:
            raise RuntimeError("llama_decode failed")
        rows += [numpy.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(engine.ctx, i), shape=(engine.n_vocab,))
                 .copy() for i in range(len(group))]
    return rows


def compare(engine: LlamaEngine, context: int, n: int) -> dict:
    tokens = engine.tokenize(TEXT * (context // 20 + 2))[:context + n]
    prefix, tail = tokens[:context], tokens[context:]
    engine._batch_clear()
    for position, token in enumerate(prefix):
        engine._batch_add(token, position, 0, False)
    if llama_cpp.llama_decode(engine.ctx, engine.batch) != 0:
        raise RuntimeError("llama_decode failed on the context")
    together = logits(engine, tail, context, True)
    llama_cpp.llama_memory_seq_rm(engine.memory, 0, context, -1)
    alone = logits(engine, tail, context, False)
    llama_cpp.llama_memory_seq_rm(engine.memory, 0, 0, -1)
    return {"context": context, "tokens": n,
            "max_logit_difference": round(float(max(numpy.abs(a - b).max() for a, b in zip(together, alone))), 4),
            "best_token_changed": sum(int(a.argmax() != b.argmax()) for a, b in zip(together, alone))}


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--contexts", default="32,128,256,384,768")
    p.add_argument("--tokens", type=int, default=6)
    args = p.parse_args()
    engine = LlamaEngine(str(default_llm_path()), n_parallel=1, n_ctx_per_seq=2048, n_batch=1024)
    try:
        rows = [compare(engine, int(c), args.tokens) for c in args.contexts.split(",")]
    finally:
        engine.close(drain=False)
    lines = [f"{args.tokens} tokens in one batch vs one at a time, {Path(engine.model_path).name}",
             f"{'context':>7} {'max |logit difference|':>22} {'best token changed':>18}"]
    lines += [f"{r['context']:>7} {r['max_logit_difference']:>22} {r['best_token_changed']:>18}" for r in rows]
    report(args, {"model": Path(engine.model_path).name, "rows": rows}, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
