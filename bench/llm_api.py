"""The OpenAI-style HTTP API against the Generate action and raw llama-cpp-python, measured in one run.

Same model (the embedded SmolLM2-135M-Instruct Q4_1), chat, threads and greedy sampling. Measures:
  1. tokens/s of one request at a time: raw `Llama.create_chat_completion`, the Generate action, the endpoint
     through the official `openai` client (alternating rounds, medians);
  2. aggregate tokens/s with N concurrent clients (action clients, then `openai` streams), and that every
     request is answered exactly once.
Run: .venv/bin/python bench/llm_api.py [--json] [--rounds N] [--max-tokens N] [--clients N]
"""
from __future__ import annotations

import socket
import sys
import threading
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
from tango2_msgs.msg import ChatMessage  # noqa: E402
from tango2_ros.core.runtime.default_models import default_llm_path  # noqa: E402

NAMESPACE = "/bench_api"
QUESTION = "Describe a busy container port at night: the ships, the cranes and the people who work there."


def raw_run(llama, max_tokens: int) -> tuple[float, int]:
    started = time.perf_counter()
    answer = llama.create_chat_completion([{"role": "user", "content": QUESTION}], max_tokens=max_tokens,
                                          temperature=0.0)
    return answer["usage"]["completion_tokens"] / (time.perf_counter() - started), answer["usage"]["completion_tokens"]


def action_run(client, max_tokens: int) -> tuple[float, int]:
    started = time.perf_counter()
    goal = Generate.Goal(messages=[ChatMessage(role="user", content=QUESTION)], max_tokens=max_tokens)
    result = goal_response(result_of(client.send_goal_async(goal), 60), 600).result
    if result.finish_reason == "error":
        raise RuntimeError(result.error)
    return result.tokens / (time.perf_counter() - started), result.tokens


def api_run(client, model: str, max_tokens: int, stream: bool = False) -> tuple[float, int]:
    started = time.perf_counter()
    if stream:
        chunks = list(client.chat.completions.create(model=model, max_tokens=max_tokens, stream=True,
                                                     stream_options={"include_usage": True},
                                                     messages=[{"role": "user", "content": QUESTION}]))
        tokens = chunks[-1].usage.completion_tokens
    else:
        tokens = client.chat.completions.create(model=model, max_tokens=max_tokens, messages=[
            {"role": "user", "content": QUESTION}]).usage.completion_tokens
    return tokens / (time.perf_counter() - started), tokens


def concurrently(runs: list) -> dict:
    """Each callable once, all at the same time: aggregate tokens/s, answered and failed counts."""
    answered, failed, tokens = [], [0], [0]
    lock = threading.Lock()

    def worker(index: int, run) -> None:
        try:
            _, n = run()
        except Exception:  # noqa: BLE001 - a failed request is counted, never silently dropped
            with lock:
                failed[0] += 1
            return
        with lock:
            answered.append(index)
            tokens[0] += n

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i, run)) for i, run in enumerate(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"requests": len(runs), "answered": len(answered), "answered_once": len(set(answered)) == len(answered),
            "failed": failed[0], "tokens_per_s": tokens[0] / wall}


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import llama_cpp
    import openai

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    llm = spawn(["-m", "tango2_ros.nodes.llm_node", "--ros-args", "-r", f"__ns:={NAMESPACE}", "-p",
                 f"n_threads:={args.threads}", "-p", f"n_parallel:={args.clients}", "-p", "n_ctx_per_seq:=1024",
                 "-p", "stream_interval_tokens:=4"])
    api = spawn(["-m", "tango2_ros.nodes.llm_api", "--ros-args", "-r", f"__ns:={NAMESPACE}", "-p", f"port:={port}",
                 "-p", f"llm_action:={NAMESPACE}/llm/generate", "-p", f"llm_node:={NAMESPACE}/llm_node"])
    try:
        with ros_node("api_bench") as node:
            bring_up(node, f"{NAMESPACE}/llm_node")
            bring_up(node, f"{NAMESPACE}/llm_api")
            actions = [ActionClient(node, Generate, f"{NAMESPACE}/llm/generate") for _ in range(args.clients)]
            for action in actions:
                action.wait_for_server(timeout_sec=30)
            time.sleep(3.0)  # let discovery settle: responses to clients the server has not discovered are lost
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="local", max_retries=0,
                                   timeout=600)
            deadline = time.monotonic() + 30
            while not client.models.list().data and time.monotonic() < deadline:
                time.sleep(0.5)
            model = client.models.list().data[0].id
            llama = llama_cpp.Llama(str(default_llm_path()), n_ctx=1024, n_threads=args.threads,
                                    n_threads_batch=args.threads, verbose=False)
            raw_run(llama, 8), action_run(actions[0], 8), api_run(client, model, 8)
            raw, action, endpoint = [], [], []
            for _ in range(args.rounds):  # alternate so drift affects all three alike
                raw.append(raw_run(llama, args.max_tokens)[0])
                action.append(action_run(actions[0], args.max_tokens)[0])
                endpoint.append(api_run(client, model, args.max_tokens)[0])
            llama.close()
            by_action = concurrently([lambda a=a: action_run(a, args.max_tokens) for a in actions])
            by_api = concurrently([lambda: api_run(client, model, args.max_tokens, stream=True)
                                   for _ in range(args.clients)])
    finally:
        stop(api)
        stop(llm)
    data = {"model": model, "max_tokens": args.max_tokens, "rounds": args.rounds, "threads": args.threads,
            "raw_tokens_per_s": median(raw), "action_tokens_per_s": median(action),
            "api_tokens_per_s": median(endpoint), "api_vs_action": median(endpoint) / median(action),
            "api_vs_raw": median(endpoint) / median(raw), "concurrent_action": by_action, "concurrent_api": by_api,
            "concurrent_api_vs_action": by_api["tokens_per_s"] / by_action["tokens_per_s"]}
    report(args, data, printed(data))
    return 0


def printed(data: dict) -> list[str]:
    by_action, by_api = data["concurrent_action"], data["concurrent_api"]
    return [f"{data['model']}, {data['threads']} threads, greedy, {data['max_tokens']} tokens, median of "
            f"{data['rounds']}",
            f"one request  raw {data['raw_tokens_per_s']:6.1f} tok/s   action {data['action_tokens_per_s']:6.1f}   "
            f"endpoint {data['api_tokens_per_s']:6.1f}   endpoint/action {data['api_vs_action']:.3f}   "
            f"endpoint/raw {data['api_vs_raw']:.3f}",
            f"{by_action['requests']} at once   action {by_action['tokens_per_s']:6.1f} tok/s ({by_action['answered']}/"
            f"{by_action['requests']} answered)   endpoint streams {by_api['tokens_per_s']:6.1f} tok/s "
            f"({by_api['answered']}/{by_api['requests']} answered, once each: {by_api['answered_once']})   "
            f"ratio {data['concurrent_api_vs_action']:.3f}"]


if __name__ == "__main__":
    sys.exit(main())
