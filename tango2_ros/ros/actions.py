"""Action-client helpers.

rclpy's action server answers a result request for a goal it has accepted but not yet registered with status
UNKNOWN and an empty result (a race seen under CPU load: "Sending result response for unknown or expired goal
ID"). A client must ask again instead of taking that empty result for the answer.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from action_msgs.msg import GoalStatus

RETRY_DELAY_S = 0.05


def goal_result(handle, wait: Callable[[Any, float], bool], timeout_s: float):
    """The goal's result response (status and result), asking again while the server says UNKNOWN.

    `wait(future, seconds)` waits for a future (by spinning, or while another thread spins) and says if it is
    done. Returns None when no real answer came within timeout_s.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        future = handle.get_result_async()
        if not wait(future, max(0.0, deadline - time.monotonic())):
            return None
        response = future.result()
        if response.status != GoalStatus.STATUS_UNKNOWN:
            return response
        time.sleep(RETRY_DELAY_S)
    return None


def spinning_wait(node) -> Callable[[Any, float], bool]:
    """A `wait` for goal_result() that spins `node` itself (for single-threaded command-line clients)."""
    import rclpy

    def wait(future, seconds: float) -> bool:
        rclpy.spin_until_future_complete(node, future, timeout_sec=seconds)
        return future.done()

    return wait


def threaded_wait(future, seconds: float) -> bool:
    """A `wait` for goal_result() in a worker thread while the node's executor spins in another."""
    if future.done():
        return True
    done = threading.Event()
    future.add_done_callback(lambda _future: done.set())
    return done.wait(seconds) or future.done()
