"""Helpers for tests that run real ROS 2 processes."""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import rclpy
from rclpy.executors import MultiThreadedExecutor

from tango2_ros.core.processes import die_with_parent

REPO = Path(__file__).resolve().parents[2]


class Process(subprocess.Popen):
    """A child process whose output lines are collected by a reader thread (select() and buffered pipes mix badly)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.stdout:
            self.lines.put(line.rstrip("\n"))

    def output(self) -> str:
        """Every line printed so far."""
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return "\n".join(self.seen)


def spawn(module_args: list[str], *, env: dict | None = None, cwd: Path = REPO) -> Process:
    """Start `python ...` in its own process group with output captured."""
    return Process(
        [sys.executable, *module_args], cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        preexec_fn=die_with_parent,
    )


def stop(process: Process, timeout: float = 15.0) -> str:
    """SIGINT the process group, wait, escalate; return everything it printed."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    time.sleep(0.2)  # let the reader thread take the last lines
    return process.output()


def wait_for_line(process: Process, needle: str, timeout: float) -> list[str]:
    """Wait for an output line containing `needle`; return the lines since the previous call."""
    new: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = process.lines.get(timeout=0.1)
        except queue.Empty:
            if process.poll() is not None and process.lines.empty():
                break
            continue
        process.seen.append(line)
        new.append(line)
        if needle in line:
            return new
    raise AssertionError(f"'{needle}' not seen within {timeout} s; output:\n" + "\n".join(new))


@contextmanager
def ros_node(name: str) -> Iterator:
    """A node in its own context, spun by a background executor.

    rclpy adds an ActionClient to the node's wait set before its constructor has finished; an executor spinning
    in another thread can then fail on the half-built client. The spin loop here survives that and goes on.
    """
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    stopping = threading.Event()

    def spin() -> None:
        while not stopping.is_set() and context.ok():
            try:
                executor.spin_once(timeout_sec=0.1)
            except AttributeError:
                continue

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        stopping.set()
        thread.join(timeout=2.0)
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


def goal_response(handle, timeout: float):
    """The result response of an accepted goal (status and result); see tango2_ros.ros.actions."""
    from tango2_ros.ros.actions import goal_result

    response = goal_result(handle, lambda future, seconds: wait_until(future.done, seconds), timeout)
    assert response is not None, f"no result within {timeout} s"
    return response
