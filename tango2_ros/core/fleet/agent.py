"""A device's side of the fleet, without ROS or MQTT: the telemetry of each window from the serving node's
cumulative counters, and what to do about the release the fleet wants.

The serving node reports, per model it serves, cumulative request and error counts on /diagnostics
(`model_requests`, `model_errors`; they start at 0 when a model is loaded). The device agent closes a window every
few seconds and sends the differences, numbered, so the fleet controller can drop what QoS 1 delivers twice.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from tango2_ros.core.fleet.messages import Desired, Telemetry


class TelemetryWindow:
    """Counts since the last window for the release serving now, from cumulative counters."""

    def __init__(self, device: str, slot: str) -> None:
        self.device, self.slot, self.sequence = device, slot, 0
        self._seen: dict[str, tuple[int, int]] = {}  # release -> cumulative (requests, errors) at the last window
        self._now: dict[str, tuple[int, int]] = {}
        self._latencies: list[float] = []
        self._rejections = self._corrections = 0

    def counters(self, release: str, requests: int, errors: int) -> None:
        """The serving node's cumulative counters for `release` (a smaller number: it was loaded again)."""
        self._now[release] = (requests, errors)

    def answered(self, latency_s: float, *, refused: bool = False, corrected: bool = False) -> None:
        """One answer seen by the domain's checker: its latency and what the checker did."""
        if math.isfinite(latency_s):
            self._latencies.append(latency_s)
        self._rejections += refused
        self._corrections += corrected

    def close(self, release: str, window_s: float, clock: float) -> Telemetry:
        """The window's telemetry for `release`, and a new window."""
        requests, errors = self._now.get(release, (0, 0))
        before_requests, before_errors = self._seen.get(release, (0, 0))
        if requests < before_requests:  # loaded again: its counters started over
            before_requests = before_errors = 0
        self._seen[release] = (requests, errors)
        self.sequence += 1
        report = Telemetry(device=self.device, sequence=self.sequence, release=release, slot=self.slot,
                           window_s=window_s, requests=requests - before_requests,
                           errors=max(0, min(errors - before_errors, requests - before_requests)),
                           latency_p50_s=statistics.median(self._latencies) if self._latencies else math.nan,
                           supervisor_rejections=self._rejections, check_corrections=self._corrections,
                           sent_at=clock)
        self._latencies, self._rejections, self._corrections = [], 0, 0
        return report


@dataclass(frozen=True)
class SwapRequest:
    name: str
    version: str
    slot: str


class DesiredFollower:
    """Asks for a swap when the fleet wants another release than the slot serves, once per wish, and again after
    `retry_s` when it failed (a registry that is down now may be up later); the slot serves on meanwhile."""

    def __init__(self, slot: str, retry_s: float = 30.0) -> None:
        self.slot, self.retry_s = slot, retry_s
        self.wanted: Desired | None = None
        self._asked_at: float | None = None

    def want(self, desired: Desired) -> None:
        if desired.slot == self.slot and desired != self.wanted:
            self.wanted, self._asked_at = desired, None

    def next_swap(self, serving: str, now: float) -> SwapRequest | None:
        """The swap to ask for now, if any (`serving`: the release the slot serves)."""
        if self.wanted is None or self.wanted.release == serving:
            return None
        if self._asked_at is not None and now - self._asked_at < self.retry_s:
            return None
        self._asked_at = now
        name, _, version = self.wanted.release.partition("@")
        return SwapRequest(name=name, version=version, slot=self.slot)
