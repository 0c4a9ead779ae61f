"""Model artifacts and deployment events as `tango2_msgs` (ModelInfo, ModelStatus)."""
from __future__ import annotations

from tango2_msgs.msg import ModelInfo, ModelStatus
from tango2_ros.core.artifacts.manifest import Manifest
from tango2_ros.core.deployment import Listed, SlotEvent, SwapOutcome


def manifest_to_ros(manifest: Manifest, state: str, node: str = "", reason: str = "") -> ModelInfo:
    return ModelInfo(name=manifest.name, version=manifest.version, task=manifest.task, format=manifest.format,
                     quantization=manifest.quantization, sha256=manifest.digest(), size_bytes=manifest.total_size,
                     state=state, reason=reason, node=node)


def listed_to_ros(listed: Listed) -> ModelInfo:
    return manifest_to_ros(listed.manifest, listed.state, listed.node, listed.reason)


def event_to_ros(event: SlotEvent, stamp) -> ModelStatus:
    if event.manifest is not None:
        info = manifest_to_ros(event.manifest, event.state, event.node, event.reason)
    else:
        info = ModelInfo(name=event.name, version=event.version, state=event.state, reason=event.reason,
                         node=event.node)
    status = ModelStatus(slot=event.slot, model=info, previous_version=event.previous, event=event.event)
    status.header.stamp = stamp
    return status


def outcome_to_ros(outcome: SwapOutcome | str, response):
    """A SwapModel or Rollback response from the deployer's outcome, or from the reason no slot was found."""
    if isinstance(outcome, str):
        response.message = outcome
        return response
    response.success, response.message = outcome.success, outcome.message
    if hasattr(response, "deferred"):
        response.deferred = outcome.deferred
    response.previous_version, response.active_version = outcome.previous, outcome.active
    for key in ("pull", "load", "warmup", "health"):
        if hasattr(response, f"{key}_s"):
            setattr(response, f"{key}_s", outcome.timings.get(key, 0.0))
    return response
