"""Shared pieces of the benchmarks: statistics, process memory, output as text or one JSON object."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Any

BENCH_ENV = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def setup_env() -> None:
    """Keep benchmark DDS traffic on loopback, in its own domain."""
    for key, value in BENCH_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def report(args, data: dict[str, Any], lines: list[str]) -> None:
    if args.json:
        print(json.dumps(data, indent=None))
    else:
        print("\n".join(lines))
    sys.stdout.flush()
