"""Waiting for a model manager's deployments: a program that brings up a profile waits for them before it asks the
models anything (the first deployment loads a model beside the embedded one, and competes for the cores)."""
from __future__ import annotations

import time

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile

from tango2_msgs.msg import ModelInfo, ModelStatus

FINAL = (ModelInfo.STATE_ACTIVE, ModelInfo.STATE_FAILED)


def wait_for_deployments(node, status_topic: str, slots: list[str], timeout_s: float) -> dict[str, ModelStatus | None]:
    """Each slot's latest final event (active or failed) once every slot has one, or at the timeout (None for a slot
    without). The status topic is latched, so events from before the call count."""
    final: dict[str, ModelStatus | None] = {slot: None for slot in slots}

    def on_status(event: ModelStatus) -> None:
        if event.slot in final and event.model.state in FINAL:
            final[event.slot] = event

    latched = QoSProfile(depth=50, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    subscription = node.create_subscription(ModelStatus, status_topic, on_status, latched)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(event is None for event in final.values()):
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_subscription(subscription)
    return final
