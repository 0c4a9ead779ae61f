"""One release's way through a fleet: to a canary device first, to every device once the canary has been healthy
for its window, or back to the canary's previous release when it is not.

ROS-free and transport-free: the fleet controller feeds it the devices' state and telemetry messages with the time
they arrived (its own clock; a device's clock is never trusted), asks `step(now)` for the phase, and publishes
`desired()` per device (retained, so a device that is offline now catches up when it returns). A device that
cannot reach the registry, or fails to load the release, keeps serving what it has: its state says so.

Why the canary is judged on its own counts: its errors, the domain checker's refusals and corrections, and its
latency against its own latency on the previous release (devices differ; a fleet-wide figure hides one slow box).
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from tango2_ros.core.fleet.messages import DeviceState, Desired, Telemetry
from tango2_ros.core.settings import setting


@dataclass(frozen=True)
class CanaryPolicy:
    window_s: float = setting(60.0, "Seconds the canary must serve the release healthily before the rollout "
                                    "widens.", 1.0, 86400.0)
    min_requests: int = setting(5, "Requests the canary must have answered on the release to be judged.", 1,
                                1000000)
    max_error_pct: float = setting(5.0, "Roll back when more of the canary's requests fail.", 0.0, 100.0)
    max_checker_pct: float = setting(20.0, "Roll back when the domain's checker refuses or corrects more of the "
                                           "canary's answers.", 0.0, 100.0)
    max_latency_ratio: float = setting(2.0, "Roll back when the canary's mean latency exceeds its own on the "
                                            "previous release by this factor.", 1.0, 100.0)
    silent_after_s: float = setting(60.0, "Roll back when the canary sends no telemetry this long.", 1.0, 86400.0)
    load_timeout_s: float = setting(300.0, "Roll back when the canary does not serve the release this long after "
                                           "the rollout began.", 1.0, 86400.0)


class Phase(str, enum.Enum):
    CANARY = "canary"
    WIDENING = "widening"
    DONE = "done"
    ROLLED_BACK = "rolled_back"


@dataclass
class _Counts:
    requests: int = 0
    errors: int = 0
    checker: int = 0  # refused or corrected
    latency_weighted_s: float = 0.0  # sum of window mean latency x requests
    latency_requests: int = 0

    def add(self, report: Telemetry) -> None:
        self.requests += report.requests
        self.errors += report.errors
        self.checker += report.supervisor_rejections + report.check_corrections
        if report.requests and not math.isnan(report.latency_s):
            self.latency_weighted_s += report.latency_s * report.requests
            self.latency_requests += report.requests

    @property
    def latency_s(self) -> float | None:
        """The mean latency over all windows' requests (None without any)."""
        return self.latency_weighted_s / self.latency_requests if self.latency_requests else None

    def pct(self, count: int) -> float:
        return 100.0 * count / self.requests if self.requests else 0.0


@dataclass
class _Device:
    serving: str = ""
    failed: str = ""
    heard_at: float | None = None
    updated_at: float | None = None  # when it first said it serves the release
    sequences: set[int] = field(default_factory=set)


class Rollout:
    """The rollout of `release` to `slot` on `devices`; `states` are the devices' last states (their releases now)."""

    def __init__(self, release: str, slot: str, devices: list[str], states: dict[str, DeviceState], now: float,
                 policy: CanaryPolicy | None = None, canary: str | None = None, rollout_id: str = "") -> None:
        if not devices:
            raise ValueError("a rollout needs at least one device")
        self.release, self.slot, self.policy = release, slot, policy or CanaryPolicy()
        self.rollout_id = rollout_id or release.replace("@", "-").replace(".", "-")
        self.started_at = now
        self.devices = {device: _Device() for device in devices}
        for device, state in states.items():
            if device in self.devices:
                self.observe_state(state, now)
        self.previous = {device: self.devices[device].serving for device in devices}
        self.canary = canary or self._pick_canary()
        if self.canary not in self.devices:
            raise ValueError(f"canary {self.canary!r} is not one of the devices")
        if not self.previous[self.canary] or self.previous[self.canary] == release:
            raise ValueError(f"canary {self.canary}: it must serve another release now, to roll back to")
        self.phase, self.reason = Phase.CANARY, ""
        self.canary_counts, self.canary_before = _Counts(), _Counts()

    def _pick_canary(self) -> str:
        """The first device (by id) that has been heard and serves another release: one that is online now."""
        for device in sorted(self.devices):
            if self.devices[device].heard_at is not None and self.previous[device] not in ("", self.release):
                return device
        raise ValueError("no device is online with another release to roll back to: no canary")

    def observe_state(self, state: DeviceState, now: float) -> None:
        device = self.devices.get(state.device)
        if device is None or state.slot != self.slot:
            return
        device.serving, device.failed, device.heard_at = state.release, state.failed, now
        if state.release == self.release and device.updated_at is None:
            device.updated_at = now

    def observe_telemetry(self, report: Telemetry, now: float) -> None:
        """Counts for the canary; a repeat (same sequence) is dropped."""
        device = self.devices.get(report.device)
        if device is None or report.slot != self.slot or report.sequence in device.sequences:
            return
        device.sequences.add(report.sequence)
        device.heard_at = now
        if report.device == self.canary:
            if report.release == self.release:
                self.canary_counts.add(report)
            elif report.release == self.previous[self.canary]:
                self.canary_before.add(report)

    def step(self, now: float) -> Phase:
        """Judge the canary and move on: CANARY -> WIDENING -> DONE, or CANARY -> ROLLED_BACK with the reason."""
        if self.phase is Phase.CANARY:
            problem = self._canary_problem(now)
            if problem:
                self.phase, self.reason = Phase.ROLLED_BACK, problem
            elif self._canary_proven(now):
                self.phase = Phase.WIDENING
        if self.phase is Phase.WIDENING and all(d.serving == self.release for d in self.devices.values()):
            self.phase = Phase.DONE
        return self.phase

    def _canary_problem(self, now: float) -> str:
        canary, policy, counts = self.devices[self.canary], self.policy, self.canary_counts
        if canary.updated_at is None:
            if canary.failed:
                return f"the canary {self.canary} could not serve {self.release}: {canary.failed}"
            if now - self.started_at > policy.load_timeout_s:
                return f"the canary {self.canary} did not serve {self.release} within {policy.load_timeout_s:g} s"
            return ""
        if canary.serving != self.release:
            return f"the canary {self.canary} left {self.release} for {canary.serving or 'nothing'}"
        if now - max(canary.heard_at or 0.0, canary.updated_at) > policy.silent_after_s:
            return f"the canary {self.canary} has sent nothing for {policy.silent_after_s:g} s"
        if counts.requests < policy.min_requests:
            return ""
        if counts.pct(counts.errors) > policy.max_error_pct:
            return (f"{counts.errors} of {counts.requests} requests failed on the canary "
                    f"({counts.pct(counts.errors):.0f} % > {policy.max_error_pct:g} %)")
        if counts.pct(counts.checker) > policy.max_checker_pct:
            return (f"the checker refused or corrected {counts.checker} of {counts.requests} answers on the canary "
                    f"({counts.pct(counts.checker):.0f} % > {policy.max_checker_pct:g} %)")
        before, after = self.canary_before.latency_s, counts.latency_s
        if before and after and after > policy.max_latency_ratio * before:
            return (f"the canary's mean latency {after:.3f} s is {after / before:.1f}x its {before:.3f} s on "
                    f"{self.previous[self.canary]}")
        return ""

    def _canary_proven(self, now: float) -> bool:
        updated_at = self.devices[self.canary].updated_at
        return updated_at is not None and now - updated_at >= self.policy.window_s and \
            self.canary_counts.requests >= self.policy.min_requests

    def desired(self) -> dict[str, Desired]:
        """What each device should serve now (devices left out: what they serve)."""
        if self.phase is Phase.CANARY:
            wanted = {self.canary: self.release}
        elif self.phase is Phase.ROLLED_BACK:
            wanted = {self.canary: self.previous[self.canary]}
        else:
            wanted = dict.fromkeys(self.devices, self.release)
        return {device: Desired(release=release, slot=self.slot, rollout=self.rollout_id)
                for device, release in wanted.items()}

    def report(self) -> dict:
        counts = self.canary_counts
        return {"release": self.release, "slot": self.slot, "canary": self.canary, "phase": self.phase.value,
                "rolled_back": self.phase is Phase.ROLLED_BACK, "reason": self.reason,
                "canary_counts": {"requests": counts.requests, "errors": counts.errors, "checker": counts.checker,
                                  "latency_s": counts.latency_s,
                                  "latency_s_before": self.canary_before.latency_s},
                "devices": [{"id": device, "previous_version": self.previous[device], "final_version": d.serving,
                             "updated_at_s": None if d.updated_at is None else round(d.updated_at - self.started_at, 3),
                             "failed": d.failed}
                            for device, d in sorted(self.devices.items())]}
