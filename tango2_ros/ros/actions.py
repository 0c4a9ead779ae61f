"""Action helpers: a server that answers every goal it holds, and clients that get a result despite a race.

rclpy's action server answers a result request for a goal it has accepted but not yet registered with status
UNKNOWN and an empty result (a race seen under CPU load: "Sending result response for unknown or expired goal
ID"). A client must ask again instead of taking that empty result for the answer.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

import rclpy
from action_msgs.msg import GoalStatus
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.qos import QoSProfile

RETRY_DELAY_S = 0.05


def queue_server(node, action_type, name: str, execute, cancel, held_goals: int, result_timeout_s: int,
                 callback_group) -> ActionServer:
    """A server that accepts every goal (a goal it cannot serve is aborted with its reason: a rejection carries
    no message), with room for `held_goals` requests and results kept `result_timeout_s`.

    Services keep only 10 requests by default: a burst of goals beyond that would vanish unanswered. rclpy keeps
    results only 10 s by default: a client still busy with other goals would find a refused goal's result gone
    and see status UNKNOWN instead."""
    def on_cancel(handle) -> CancelResponse:
        cancel(handle)
        return CancelResponse.ACCEPT

    requests = QoSProfile(depth=held_goals)
    return ActionServer(node, action_type, name, execute_callback=execute,
                        goal_callback=lambda _goal: GoalResponse.ACCEPT, cancel_callback=on_cancel,
                        callback_group=callback_group, goal_service_qos_profile=requests,
                        result_service_qos_profile=requests, cancel_service_qos_profile=requests,
                        result_timeout=result_timeout_s)


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


def wait_until_serving(node, action_name: str, timeout_s: float) -> str:
    """Wait until the node that serves `action_name` can take goals; '' then, else the reason.

    A TANGO2 node says so on /diagnostics: lifecycle `active` and a status that is not ERROR (llm_node: a model is
    loaded). A server that publishes no diagnostics of its own is taken as ready once it is there. This is the
    pattern for any client that starts with the system: goals sent before are aborted with the reason.
    """
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.action import get_action_server_names_and_types_by_node

    deadline = time.monotonic() + timeout_s
    statuses: dict[str, DiagnosticStatus] = {}
    subscription = node.create_subscription(
        DiagnosticArray, "/diagnostics", lambda message: statuses.update({s.name: s for s in message.status}), 50)
    try:
        server, first_seen = "", None
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
            if not server:
                server = next((f"{namespace.rstrip('/')}/{name}" for name, namespace in node.get_node_names_and_namespaces()
                               if any(a == action_name for a, _ in get_action_server_names_and_types_by_node(
                                   node, name, namespace))), "")
                first_seen = time.monotonic() if server else None
                continue
            status = statuses.get(server)
            if status is None:
                if time.monotonic() - first_seen > 3.0:
                    return ""  # not one of ours: no readiness to wait for
                continue
            values = {kv.key: kv.value for kv in status.values}
            if values.get("lifecycle") == "active" and status.level != DiagnosticStatus.ERROR:
                return ""
        if not server:
            return f"no node serves {action_name}"
        status = statuses.get(server)
        if status is None:
            return f"{server} is not ready: no status on /diagnostics"
        lifecycle = {kv.key: kv.value for kv in status.values}.get("lifecycle", "?")
        return f"{server} is not ready: {status.message} (lifecycle {lifecycle})"
    finally:
        node.destroy_subscription(subscription)
