"""Helpers for tests that run real ROS 2 processes."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import rclpy
from rclpy.executors import MultiThreadedExecutor

REPO = Path(__file__).resolve().parents[2]


def spawn(module_args: list[str], *, env: dict | None = None, cwd: Path = REPO) -> subprocess.Popen:
    """Start `python -m ...` in its own process group with output captured."""
    return subprocess.Popen(
        [sys.executable, *module_args], cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def stop(process: subprocess.Popen, timeout: float = 15.0) -> str:
    """SIGINT the process group, wait, escalate; return everything it printed."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.stdout.read() if process.stdout else ""


def wait_for_line(process: subprocess.Popen, needle: str, timeout: float) -> list[str]:
    """Read the process's output until a line contains `needle`; fail with the output otherwise."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            line = process.stdout.readline()
            if line:
                lines.append(line.rstrip("\n"))
                if needle in line:
                    return lines
                continue
        if process.poll() is not None:
            lines += process.stdout.read().splitlines()
            break
    raise AssertionError(f"'{needle}' not seen within {timeout} s; output:\n" + "\n".join(lines))


@contextmanager
def ros_node(name: str) -> Iterator:
    """A node in its own context, spun by a background executor."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    import threading

    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def result_of(future, timeout: float):
    assert wait_until(future.done, timeout), f"no answer within {timeout} s"
    return future.result()
