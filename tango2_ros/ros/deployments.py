"""A model manager's deployments as programs see them: waiting for them (a program that brings up a profile waits
before it asks the models anything: the first deployment loads a model beside the embedded one, and competes for
the cores), and each slot as people read it (the console's models page, `tango2 models status`)."""
from __future__ import annotations

import time

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile

from tango2_msgs.msg import ModelInfo, ModelStatus
from tango2_ros.core.shadow import SHADOW_KEY, shadow_score

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


def slot_rows(events: dict[str, ModelStatus], listed: list[ModelInfo], shadows: dict[str, dict]) -> list[dict]:
    """Each slot from its latest event: the version serving, its state and last event, the versions the registry
    has of its model, and the score of the candidate it serves when it is a shadow slot (`shadows`: name@version ->
    the judging node's score, tango2_ros.core.shadow)."""
    rows = []
    for slot, event in sorted(events.items()):
        model = event.model
        rows.append({"slot": slot, "model": model.name, "state": model.state, "event": event.event,
                     "active_version": model.version if model.state == ModelInfo.STATE_ACTIVE else event.previous_version,
                     "reason": model.reason, "versions": sorted({m.version for m in listed if m.name == model.name}),
                     "shadow": shadows.get(f"{model.name}@{model.version}")})
    return rows


def reported_shadow_scores(message) -> list[tuple[str, dict]]:
    """(judging node, score) for each status of a /diagnostics message that reports a candidate in shadow."""
    found = []
    for status in message.status:
        score = shadow_score(next((kv.value for kv in status.values if kv.key == SHADOW_KEY), ""))
        if score is not None:
            found.append((status.name, score))
    return found
