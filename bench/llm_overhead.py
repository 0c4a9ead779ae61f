"""LLM runtime benchmark: the ROS 2 action versus raw llama-cpp-python, measured in one run.

Measures, with the embedded SmolLM2-135M-Instruct Q4_1 model and greedy sampling:
  1. tokens/s and time to first token through /tango2/llm/generate versus raw `Llama.create_completion`
     (same model file, prompt, threads, sampling), alternating rounds and taking medians;
  2. resident memory of the node process versus the model file size;
  3. aggregate throughput and p50/p99 latency with 1, 4 and 16 concurrent clients;
  4. tokens/s with a JSON Schema (grammar-constrained) versus without.
Run: .venv/bin/python bench/llm_overhead.py [--json] [--rounds N] [--max-tokens N]
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "test"))
from common import median, parser, percentile, report, setup_env  # noqa: E402

setup_env()

from rclpy.action import ActionClient  # noqa: E402

from helpers.lifecycle import bring_up, set_parameter  # noqa: E402
from helpers.ros import goal_response, result_of, ros_node, spawn, stop  # noqa: E402
from tango2_msgs.action import Generate  # noqa: E402
from tango2_ros.core.runtime.base import resident_memory_bytes  # noqa: E402
from tango2_ros.core.runtime.default_models import default_llm_path  # noqa: E402

NAMESPACE = "/bench"
PROMPT = ("<|im_start|>user\nWrite a detailed description of a busy container port at night, the ships, "
          "the cranes and the people who work there.<|im_end|>\n<|im_start|>assistant\n")
SCHEMA = {"type": "object", "properties": {
    "summary": {"type": "string", "maxLength": 200},
    "ships": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 4},
    "busy": {"type": "boolean"}}, "required": ["summary", "ships", "busy"]}


def raw_run(llama, max_tokens: int) -> tuple[float, float, int]:
    """(tokens/s after the first token, time to first token, tokens) for raw llama-cpp-python streaming."""
    started = time.perf_counter()
    first = None
    tokens = 0
    for _chunk in llama.create_completion(PROMPT, max_tokens=max_tokens, temperature=0.0, stream=True):
        tokens += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    return (tokens - 1) / (end - first), first - started, tokens


def action_run(client, max_tokens: int, schema: str = "") -> tuple[float, float, int, float]:
    """(tokens/s after the first token, time to first token, tokens, total latency) through the action."""
    first = []
    started = time.perf_counter()
    goal = Generate.Goal(prompt=PROMPT, raw=True, max_tokens=max_tokens, temperature=0.0, json_schema=schema)
    handle = result_of(client.send_goal_async(goal, feedback_callback=lambda _m: first or first.append(
        time.perf_counter())), 60)
    result = goal_response(handle, 600).result
    end = time.perf_counter()
    if result.finish_reason == "error":
        raise RuntimeError(result.error)
    if not first:  # no feedback (stream_interval_tokens = 0): rate over the whole request
        return result.tokens / (end - started), float("nan"), result.tokens, end - started
    return (result.tokens - 1) / (end - first[0]), first[0] - started, result.tokens, end - started


def concurrent(actions: list, requests_per_client: int, max_tokens: int) -> dict:
    """Each of the action clients sends requests_per_client goals, one after the other."""
    latencies: list[float] = []
    tokens = [0]
    lock = threading.Lock()

    failures = [0]

    def worker(action):
        for _ in range(requests_per_client):
            try:
                _, _, n, latency = action_run(action, max_tokens)
            except (AssertionError, RuntimeError):  # unanswered or failed: counted, never silently dropped
                with lock:
                    failures[0] += 1
                continue
            with lock:
                latencies.append(latency)
                tokens[0] += n

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(a,)) for a in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"clients": len(actions), "requests": len(latencies), "failed": failures[0], "tokens_per_s": tokens[0] / wall,
            "latency_p50_s": percentile(latencies, 50), "latency_p99_s": percentile(latencies, 99)}


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import llama_cpp

    model = default_llm_path()
    node = spawn(["-m", "tango2_ros.nodes.llm_node", "--ros-args", "-r", f"__ns:={NAMESPACE}",
                  "-p", f"n_threads:={args.threads}", "-p", "n_parallel:=4", "-p", "max_queue:=64",
                  "-p", "stream_interval_tokens:=1", "-p", "n_ctx_per_seq:=1024"])
    try:
        with ros_node("llm_bench") as client_node:
            bring_up(client_node, f"{NAMESPACE}/llm_node")
            client = ActionClient(client_node, Generate, f"{NAMESPACE}/llm/generate")
            client.wait_for_server(timeout_sec=30)
            llama = llama_cpp.Llama(str(model), n_ctx=1024, n_threads=args.threads, n_threads_batch=args.threads,
                                    verbose=False)
            raw_run(llama, 8)
            action_run(client, 8)
            raw, ros = [], []
            for _ in range(args.rounds):  # alternate so drift affects both alike
                raw.append(raw_run(llama, args.max_tokens))
                ros.append(action_run(client, args.max_tokens))
            llama.close()
            raw_tps, ros_tps = median([r[0] for r in raw]), median([r[0] for r in ros])
            raw_ttft, ros_ttft = median([r[1] for r in raw]), median([r[1] for r in ros])
            node_rss = resident_memory_bytes(node.pid)
            # streaming every token to 16 clients floods their executors (each action client receives all
            # feedback of the action); the load phase measures generation with feedback off
            set_parameter(client_node, f"{NAMESPACE}/llm_node", "stream_interval_tokens", 0)
            # clients are created once: destroying them while the executor spins can stop it
            actions = [ActionClient(client_node, Generate, f"{NAMESPACE}/llm/generate") for _ in range(16)]
            for action in actions:
                action.wait_for_server(timeout_sec=30)
            # wait_for_server only says the client sees the server; until the server has discovered the new
            # clients too, its responses to them are lost (a ROS 2 discovery race), so let discovery settle
            time.sleep(5.0)
            levels = [concurrent(actions[:c], r, args.max_tokens) for c, r in ((1, 4), (4, 2), (16, 1))]
            # alternating rounds, as above; the schema bounds the output below 192 tokens, so no constrained
            # answer is cut off
            pairs = [(action_run(client, args.max_tokens)[0], action_run(client, 192, json.dumps(SCHEMA))[0])
                     for _ in range(args.rounds)]
            plain, constrained = median([p for p, _ in pairs]), median([c for _, c in pairs])
    finally:
        stop(node)
    data = {
        "model": model.name, "model_bytes": model.stat().st_size, "threads": args.threads,
        "max_tokens": args.max_tokens, "rounds": args.rounds,
        "raw_tokens_per_s": raw_tps, "ros_tokens_per_s": ros_tps, "throughput_ratio": ros_tps / raw_tps,
        "raw_ttft_ms": raw_ttft * 1e3, "ros_ttft_ms": ros_ttft * 1e3, "ttft_overhead_ms": (ros_ttft - raw_ttft) * 1e3,
        "node_rss_bytes": node_rss, "rss_to_model_ratio": node_rss / model.stat().st_size,
        "concurrency": levels,
        "concurrency_4_vs_1": levels[1]["tokens_per_s"] / levels[0]["tokens_per_s"],
        "plain_tokens_per_s": plain, "schema_tokens_per_s": constrained, "schema_ratio": constrained / plain,
    }
    report(args, data, printed(data))
    return 0


def printed(data: dict) -> list[str]:
    levels = data["concurrency"]
    return [
        f"model {data['model']} ({data['model_bytes'] / 2**20:.0f} MiB), {data['threads']} threads, greedy, "
        f"{data['max_tokens']} tokens, median of {data['rounds']}",
        f"tokens/s    raw llama-cpp-python {data['raw_tokens_per_s']:7.1f}   ROS action {data['ros_tokens_per_s']:7.1f}"
        f"   ratio {data['throughput_ratio']:.3f}",
        f"first token raw {data['raw_ttft_ms']:7.1f} ms   ROS action {data['ros_ttft_ms']:7.1f} ms   overhead "
        f"{data['ttft_overhead_ms']:+.1f} ms",
        f"node RSS {data['node_rss_bytes'] / 2**20:.0f} MiB = {data['rss_to_model_ratio']:.2f} x model file",
        "clients  requests  failed  tokens/s  p50 s  p99 s",
        *[f"{c['clients']:7d}  {c['requests']:8d}  {c['failed']:6d}  {c['tokens_per_s']:8.1f}  "
          f"{c['latency_p50_s']:5.2f}  {c['latency_p99_s']:5.2f}" for c in levels],
        f"4 clients vs 1: {data['concurrency_4_vs_1']:.2f}x aggregate throughput",
        f"JSON Schema {data['schema_tokens_per_s']:.1f} tok/s vs plain {data['plain_tokens_per_s']:.1f} tok/s: "
        f"ratio {data['schema_ratio']:.2f}",
    ]


if __name__ == "__main__":
    sys.exit(main())
