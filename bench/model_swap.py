"""Model swap under continuous load: does a hot swap drop or fail requests, and what does it cost?

An open-loop client sends Generate goals at a fixed rate (default 5/s for 30 s) to a real llm_node while the
model_manager swaps the served model twice: 1.0.0 -> 1.1.0 (pulled from the local signed registry for the
first time: download + verify) and back to 1.0.0 (already cached). Same SmolLM2-135M file in both versions,
so the numbers are the mechanism's cost, not a model difference.

Reports: requests sent / succeeded / failed / unanswered, which version answered, p50/p99 latency of
requests sent before the first swap (the baseline, same run) versus those sent while a swap was in progress
or within 2 s after it (ratio), and each swap's time broken down into pull (resolve, download, verify),
load, warm-up and health check.
Run: .venv/bin/python bench/model_swap.py [--json] [--rate 5] [--duration 30]
"""
from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "test"))
from common import parser, percentile, report, setup_env  # noqa: E402

setup_env()

from rclpy.action import ActionClient  # noqa: E402

from helpers.lifecycle import bring_up  # noqa: E402
from helpers.registry import llm_arguments, make_keys, manager_arguments, publish  # noqa: E402
from helpers.ros import result_of, ros_node, spawn, stop, wait_until  # noqa: E402
from tango2_msgs.action import Generate  # noqa: E402
from tango2_msgs.srv import SwapModel  # noqa: E402
from tango2_ros.core.runtime.default_models import default_llm_path  # noqa: E402

NAMESPACE = "/bench_swap"
MODEL = "smollm2-135m-instruct"
RECOVERY_S = 2.0
PROMPT = "<|im_start|>user\nName three kinds of ships.<|im_end|>\n<|im_start|>assistant\n"


class OpenLoopClient:
    """Sends a goal every 1/rate seconds whatever the answers do, and records each one's fate."""

    def __init__(self, action: ActionClient, rate: float, max_tokens: int) -> None:
        self.action, self.period, self.max_tokens = action, 1.0 / rate, max_tokens
        self.records: list[dict] = []
        self._lock = threading.Lock()

    def run(self, duration: float) -> None:
        start = time.monotonic()
        for index in range(int(duration / self.period)):
            wait = start + index * self.period - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            record = {"sent": time.monotonic(), "done": None, "finish": "", "model": "", "error": ""}
            with self._lock:
                self.records.append(record)
            goal = Generate.Goal(prompt=PROMPT, max_tokens=self.max_tokens)
            self.action.send_goal_async(goal).add_done_callback(lambda future, r=record: self._accepted(future, r))

    def _accepted(self, future, record: dict) -> None:
        handle = future.result()
        if not handle.accepted:
            record.update(done=time.monotonic(), finish="rejected")
            return
        handle.get_result_async().add_done_callback(lambda f, r=record: self._finished(f, r))

    @staticmethod
    def _finished(future, record: dict) -> None:
        result = future.result().result
        record.update(done=time.monotonic(), finish=result.finish_reason, model=result.model, error=result.error)


def swap(swap_client, version: str) -> dict:
    started = time.monotonic()
    response = result_of(swap_client.call_async(SwapModel.Request(name=MODEL, version=version)), 300)
    return {"to": version, "success": response.success, "message": response.message, "start": started,
            "end": time.monotonic(), "wall_s": time.monotonic() - started, "pull_s": response.pull_s,
            "load_s": response.load_s, "warmup_s": response.warmup_s, "health_s": response.health_s}


def latency_stats(records: list[dict]) -> dict:
    latencies = [r["done"] - r["sent"] for r in records if r["done"] is not None]
    return {"n": len(latencies), "p50_s": percentile(latencies, 50), "p99_s": percentile(latencies, 99)}


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=5.0, help="requests per second (default 5)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    p.add_argument("--max-tokens", type=int, default=16)
    args = p.parse_args()
    records, swaps = swap_under_load(args)
    data, lines = summary(args, records, swaps)
    report(args, data, lines)
    return 0 if not data["failed"] and not data["unanswered"] and all(s["success"] for s in swaps) else 1


def swap_under_load(args) -> tuple[list[dict], list[dict]]:
    """Open-loop load on a real llm_node while the model manager swaps 1.0.0 -> 1.1.0 -> 1.0.0: every request's
    record and each swap's timings."""
    with tempfile.TemporaryDirectory(prefix="tango2-swap-bench-") as scratch:
        root = Path(scratch)
        make_keys(root, "fleet")
        for version in ("1.0.0", "1.1.0"):
            publish(root, MODEL, version, default_llm_path())
        llm = spawn(llm_arguments(NAMESPACE, "n_parallel:=4", "n_ctx_per_seq:=512", "stream_interval_tokens:=0"))
        manager = spawn(manager_arguments(root, NAMESPACE, MODEL, **{"llm.version": "1.0.0", "llm.health_budget_s": 30.0,
                                                                      "llm.rollback_window_s": 0.0}))
        try:
            with ros_node("swap_bench") as node:
                bring_up(node, f"{NAMESPACE}/llm_node")
                bring_up(node, f"{NAMESPACE}/models")
                action = ActionClient(node, Generate, f"{NAMESPACE}/llm/generate")
                swap_client = node.create_client(SwapModel, f"{NAMESPACE}/models/swap")
                assert action.wait_for_server(timeout_sec=30) and swap_client.wait_for_service(timeout_sec=30)
                time.sleep(5.0)  # discovery settles: a brand-new client can lose its first answers
                assert wait_until(lambda: swap(swap_client, "1.0.0")["message"].find("already serving") >= 0, 60)

                client = OpenLoopClient(action, args.rate, args.max_tokens)
                load = threading.Thread(target=client.run, args=(args.duration,))
                load_started = time.monotonic()
                load.start()
                swaps = []
                for fraction, version in ((1 / 3, "1.1.0"), (2 / 3, "1.0.0")):
                    time.sleep(max(0.0, load_started + fraction * args.duration - time.monotonic()))
                    swaps.append(swap(swap_client, version))
                load.join()
                wait_until(lambda: all(r["done"] is not None for r in client.records), 60)
        finally:
            stop(manager)
            stop(llm)
    return client.records, swaps


def summary(args, records: list[dict], swaps: list[dict]) -> tuple[dict, list[str]]:
    # baseline: sent before the first swap began; during: sent while a swap ran or in the RECOVERY_S after it
    # (the backlog a swap leaves); after: the rest
    baseline = [r for r in records if r["sent"] < swaps[0]["start"]]
    during = [r for r in records if any(s["start"] <= r["sent"] <= s["end"] + RECOVERY_S for s in swaps)]
    after = [r for r in records if r not in baseline and r not in during]
    ok = [r for r in records if r["finish"] in ("stop", "length")]
    failed = [r for r in records if r["done"] is not None and r not in ok]
    unanswered = [r for r in records if r["done"] is None]
    base, swapping, rest = latency_stats(baseline), latency_stats(during), latency_stats(after)
    versions = {}
    for r in ok:
        versions[r["model"]] = versions.get(r["model"], 0) + 1
    data = {
        "rate_per_s": args.rate, "duration_s": args.duration, "max_tokens": args.max_tokens,
        "sent": len(records), "succeeded": len(ok), "failed": len(failed), "unanswered": len(unanswered),
        "failures": [f"{r['finish']}: {r['error']}" for r in failed][:5], "served_by": versions,
        "latency_before_swaps": base, "latency_during_swaps": swapping, "latency_between_and_after": rest,
        "recovery_window_s": RECOVERY_S,
        "p99_ratio_during_vs_before": swapping["p99_s"] / base["p99_s"] if base["n"] and swapping["n"] else None,
        "swaps": [{k: v for k, v in s.items() if k not in ("start", "end")} for s in swaps],
    }
    lines = [
        f"{len(records)} requests at {args.rate:g}/s for {args.duration:g} s: {len(ok)} succeeded, {len(failed)} failed, "
        f"{len(unanswered)} unanswered; served by {versions}",
        f"latency before the swaps: p50 {base['p50_s']:.3f} s, p99 {base['p99_s']:.3f} s (n={base['n']})",
        f"latency during swaps (+{RECOVERY_S:g} s): p50 {swapping['p50_s']:.3f} s, p99 {swapping['p99_s']:.3f} s "
        f"(n={swapping['n']}); p99 ratio {data['p99_ratio_during_vs_before'] or float('nan'):.2f}",
        f"latency between and after: p50 {rest['p50_s']:.3f} s, p99 {rest['p99_s']:.3f} s (n={rest['n']})",
    ]
    for s in data["swaps"]:
        lines.append(f"swap to {s['to']}: {'ok' if s['success'] else 'FAILED ' + s['message']} in {s['wall_s']:.2f} s "
                     f"(pull {s['pull_s']:.2f}, load {s['load_s']:.2f}, warm-up {s['warmup_s']:.2f}, "
                     f"health {s['health_s']:.2f})")
    return data, lines


if __name__ == "__main__":
    raise SystemExit(main())
