"""A device's side of the fleet, without ROS or MQTT: the telemetry of each window from the serving node's
cumulative counters, what to do about the release the fleet wants, and the new lines of the decision logs.

The serving node reports, per model it serves, cumulative counts on /diagnostics (`model_requests`, `model_errors`,
`model_seconds`: the time spent answering; they start at 0 when a model is loaded), and the domain's checker its
cumulative refusals and corrections (the farm's safety supervisor: `rejected`, `clamped`). The device agent closes
a window every few seconds and sends the differences, numbered, so the fleet controller can drop what QoS 1
delivers twice.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from tango2_ros.core.fleet.messages import LOG_FILE, MAX_PAYLOAD_BYTES, DecisionBatch, Desired, Telemetry


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
        self._checker_now = self._checker_seen = (0, 0)  # the checker's cumulative (refused, corrected)

    def counters(self, release: str, requests: int, errors: int, seconds: float) -> None:
        """The serving node's cumulative counters for `release` (smaller numbers: it was loaded again)."""
        self._now[release] = _Cumulative(requests, errors, seconds)

    def checker_counters(self, refused: int, corrected: int) -> None:
        """The domain checker's cumulative counts of answers it refused and corrected (smaller: it restarted)."""
        self._checker_now = (refused, corrected)

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
        refused, corrected = (now_count - (seen if now_count >= seen else 0)
                              for now_count, seen in zip(self._checker_now, self._checker_seen))
        self._checker_seen = self._checker_now
        report = Telemetry(device=self.device, sequence=self.sequence, release=release, slot=self.slot,
                           window_s=window_s, requests=requests, errors=max(0, min(now.errors - before.errors, requests)),
                           latency_s=seconds / requests if requests and seconds >= 0 else math.nan,
                           supervisor_rejections=refused, check_corrections=corrected, sent_at=clock)
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


@dataclass(frozen=True)
class _Position:
    offset: int = 0  # bytes of the file shipped
    line: int = 0  # lines of the file shipped


class DecisionLogShipper:
    """New complete lines of the decision logs (`*.jsonl`, append-only, a new name per day or run) in `folder`, in
    batches that fit a message. A file's position moves on, and is kept in `folder/.fleet-shipped.json`, only once
    the device's broker has the batch, so an agent that restarts sends at most the batch in flight again (the
    collector drops repeats by line number). A line that is not a JSON object (a torn write) is sent as
    {"unreadable": its start}, so the numbering holds."""

    STATE_FILE = ".fleet-shipped.json"

    def __init__(self, device: str, folder: Path, max_bytes: int = MAX_PAYLOAD_BYTES // 2) -> None:
        self.device, self.folder, self.max_bytes = device, folder, max_bytes
        self._positions = self._load()
        self._in_flight: dict[str, _Position] = {}  # file -> where it will be once its batch is delivered

    def _load(self) -> dict[str, _Position]:
        try:
            saved = json.loads((self.folder / self.STATE_FILE).read_text())
            return {name: _Position(int(p["offset"]), int(p["line"])) for name, p in saved.items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}  # none yet, or unreadable: from the start (the collector drops what it has)

    def batches(self) -> list[DecisionBatch]:
        """One batch per file with new lines and none in flight."""
        found = []
        for path in sorted(self.folder.glob("*.jsonl")):
            if path.name in self._in_flight or not LOG_FILE.match(path.name):
                continue
            start = self._positions.get(path.name, _Position())
            try:
                if path.stat().st_size < start.offset:  # replaced by a shorter file: from its start
                    start = _Position()
                lines, size = self._read(path, start.offset)
            except OSError:  # removed or unreadable since the listing: next time
                continue
            if lines:
                self._in_flight[path.name] = _Position(start.offset + size, start.line + len(lines))
                found.append(DecisionBatch(self.device, path.name, start.line, tuple(lines)))
        return found

    def _read(self, path: Path, offset: int) -> tuple[list[str], int]:
        """Complete lines from `offset` that fit a batch, and the bytes they took."""
        lines, used = [], 0
        with path.open("rb") as log:
            log.seek(offset)
            for raw in log:
                if not raw.endswith(b"\n") or (lines and used + len(raw) > self.max_bytes):
                    break
                used += len(raw)
                lines.append(_readable(raw))
        return lines, used

    def delivered(self, name: str) -> None:
        """The broker has the file's batch in flight."""
        if name in self._in_flight:
            self._positions[name] = self._in_flight.pop(name)
            state = self.folder / self.STATE_FILE
            temporary = state.with_suffix(".tmp")
            temporary.write_text(json.dumps({n: {"offset": p.offset, "line": p.line}
                                             for n, p in self._positions.items()}))
            os.replace(temporary, state)

    def undelivered(self, name: str) -> None:
        """The batch in flight was not taken: it is read again next time."""
        self._in_flight.pop(name, None)


def _readable(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    try:
        if isinstance(json.loads(text), dict):
            return text
    except json.JSONDecodeError:
        pass
    return json.dumps({"unreadable": text[:200]})
