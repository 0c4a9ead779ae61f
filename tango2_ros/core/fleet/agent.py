"""A device's side of the fleet, without ROS or MQTT: the telemetry of each window from the serving node's
cumulative counters, and what to do about the release the fleet wants.

The serving node reports, per model it serves, cumulative counts on /diagnostics (`model_requests`, `model_errors`,
`model_seconds`: the time spent answering; they start at 0 when a model is loaded). The device agent closes a
window every few seconds and sends the differences, numbered, so the fleet controller can drop what QoS 1 delivers
twice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tango2_ros.core.fleet.messages import Desired, Telemetry


@dataclass(frozen=True)
class _Cumulative:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0


class TelemetryWindow:
    """Counts since the last window for the release serving now, from cumulative counters."""

    def __init__(self, device: str, slot: str) -> None:
        self.device, self.slot, self.sequence = device, slot, 0
        self._seen: dict[str, _Cumulative] = {}  # release -> its cumulative counters at the last window
        self._now: dict[str, _Cumulative] = {}
        self._rejections = self._corrections = 0

    def counters(self, release: str, requests: int, errors: int, seconds: float) -> None:
        """The serving node's cumulative counters for `release` (smaller numbers: it was loaded again)."""
        self._now[release] = _Cumulative(requests, errors, seconds)

    def checked(self, *, refused: bool = False, corrected: bool = False) -> None:
        """One answer seen by the domain's checker, and what the checker did."""
        self._rejections += refused
        self._corrections += corrected

    def close(self, release: str, window_s: float, clock: float) -> Telemetry:
        """The window's telemetry for `release`, and a new window."""
        now = self._now.get(release, _Cumulative())
        before = self._seen.get(release, _Cumulative())
        if now.requests < before.requests:  # loaded again: its counters started over
            before = _Cumulative()
        self._seen[release] = now
        self.sequence += 1
        requests = now.requests - before.requests
        seconds = now.seconds - before.seconds
        report = Telemetry(device=self.device, sequence=self.sequence, release=release, slot=self.slot,
                           window_s=window_s, requests=requests, errors=max(0, min(now.errors - before.errors, requests)),
                           latency_s=seconds / requests if requests and seconds >= 0 else math.nan,
                           supervisor_rejections=self._rejections, check_corrections=self._corrections,
                           sent_at=clock)
        self._rejections = self._corrections = 0
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
