"""llm_node memory per configuration: resident memory against the model file, and what a smaller context or a
quantised KV cache costs in speed and changes in the answers, against the node's defaults measured in the same run.

For each configuration a real llm_node is started with the embedded SmolLM2-135M-Instruct Q4_1 model, answers the
same questions greedily (through /tango2/llm/generate), and its RSS is read after them. The baseline is the
node's default configuration (n_ctx_per_seq 2048, n_parallel 4, f16 KV cache); each other configuration reports
`rss_ratio` (its RSS / the baseline's), `tokens_per_s_ratio` and `identical_answers` (greedy answers equal to
the baseline's, of all questions).
Run: .venv/bin/python bench/llm_memory.py [--json] [--max-tokens N]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "test"))
from common import median, parser, report, setup_env  # noqa: E402

setup_env()

from rclpy.action import ActionClient  # noqa: E402

from helpers.lifecycle import bring_up  # noqa: E402
from helpers.ros import goal_response, result_of, ros_node, spawn, stop  # noqa: E402
from tango2_msgs.action import Generate  # noqa: E402
from tango2_ros.core.runtime.base import resident_memory_bytes  # noqa: E402
from tango2_ros.core.runtime.default_models import default_llm_path  # noqa: E402

NAMESPACE = "/bench_memory"
QUESTIONS = ["Describe a harbour at dawn in three sentences.",
             "What does a lighthouse keeper do during a storm?",
             "Give three tips for growing tomatoes in a greenhouse.",
             "Explain what a radiologist looks for in a chest CT."]
# name, n_ctx_per_seq, n_parallel, kv_cache_type; the first is the node's default and the baseline
CONFIGURATIONS = [("default 2048x4 f16", 2048, 4, "f16"), ("context 512x4 f16", 512, 4, "f16"),
                  ("2048x4 q8_0", 2048, 4, "q8_0"), ("512x4 q8_0", 512, 4, "q8_0"), ("512x4 q4_0", 512, 4, "q4_0")]


def answer(client, question: str, max_tokens: int) -> tuple[str, float]:
    started = time.perf_counter()
    goal = Generate.Goal(prompt=question, max_tokens=max_tokens, temperature=0.0)
    result = goal_response(result_of(client.send_goal_async(goal), 60), 600).result
    if result.finish_reason == "error":
        raise RuntimeError(result.error)
    return result.text, result.tokens / (time.perf_counter() - started)


def measure(name: str, n_ctx: int, n_parallel: int, kv: str, max_tokens: int) -> dict:
    node = spawn(["-m", "tango2_ros.nodes.llm_node", "--ros-args", "-r", f"__ns:={NAMESPACE}",
                  "-p", f"n_ctx_per_seq:={n_ctx}", "-p", f"n_parallel:={n_parallel}", "-p", f"kv_cache_type:={kv}",
                  "-p", "stream_interval_tokens:=0"])
    try:
        with ros_node("memory_bench") as client_node:
            bring_up(client_node, f"{NAMESPACE}/llm_node")
            client = ActionClient(client_node, Generate, f"{NAMESPACE}/llm/generate")
            client.wait_for_server(timeout_sec=30)
            time.sleep(2.0)  # discovery settles
            answer(client, QUESTIONS[0], 4)
            runs = [answer(client, q, max_tokens) for q in QUESTIONS]
            rss = resident_memory_bytes(node.pid)
    finally:
        stop(node)
    return {"name": name, "n_ctx_per_seq": n_ctx, "n_parallel": n_parallel, "kv_cache_type": kv, "rss_bytes": rss,
            "tokens_per_s": median([tps for _, tps in runs]), "answers": [text for text, _ in runs]}


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--max-tokens", type=int, default=64)
    args = p.parse_args()
    model_bytes = default_llm_path().stat().st_size
    rows = [measure(*configuration, args.max_tokens) for configuration in CONFIGURATIONS]
    base = rows[0]
    for row in rows:
        row["rss_to_model_ratio"] = row["rss_bytes"] / model_bytes
        row["rss_ratio"] = row["rss_bytes"] / base["rss_bytes"]
        row["tokens_per_s_ratio"] = row["tokens_per_s"] / base["tokens_per_s"]
        row["identical_answers"] = sum(a == b for a, b in zip(row["answers"], base["answers"])) / len(QUESTIONS)
    data = {"model_bytes": model_bytes, "questions": len(QUESTIONS), "max_tokens": args.max_tokens,
            "configurations": rows}
    lines = [f"model file {model_bytes / 2**20:.1f} MiB; {len(QUESTIONS)} questions, {args.max_tokens} tokens, greedy"]
    for row in rows:
        lines.append(f"{row['name']:<20} RSS {row['rss_bytes'] / 2**20:6.0f} MiB ({row['rss_to_model_ratio']:.2f} x model, "
                     f"{row['rss_ratio']:.2f} x default)  {row['tokens_per_s']:6.1f} tok/s "
                     f"({row['tokens_per_s_ratio']:.2f})  answers as the default: {row['identical_answers']:.2f}")
    report(args, data, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
