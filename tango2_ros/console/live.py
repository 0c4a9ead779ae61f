"""What the console shows, kept up to date by the ROS adapter and read by the page's WebSocket connections.

One JSON-ready dict per channel (ship, farm, medicine, models). Each change bumps the channel's version and wakes
the waiting connections; a connection sends the channels whose version it has not sent yet, so a slow browser
gets the newest picture rather than a backlog. Bounded lists (the climate history, the proposals) keep their last
`keep` items.
"""
from __future__ import annotations

import copy
import threading

CHANNELS = ("ship", "farm", "medicine", "models")
# Which permission a channel needs (see accounts.PERMISSIONS): drafts of chest-CT reports are patient data.
CHANNEL_PERMISSION = {"ship": "view", "farm": "view", "medicine": "patient-data", "models": "view"}


class LiveState:
    def __init__(self) -> None:
        self._data: dict[str, dict] = {channel: {} for channel in CHANNELS}
        self._versions = {channel: 0 for channel in CHANNELS}
        self._changed = threading.Condition()

    def update(self, channel: str, **fields) -> None:
        """Set top-level fields of a channel."""
        with self._changed:
            self._data[channel].update(fields)
            self._bump(channel)

    def append(self, channel: str, name: str, item, keep: int) -> None:
        """Append to a bounded list field of a channel."""
        with self._changed:
            items = self._data[channel].setdefault(name, [])
            items.append(item)
            del items[:-keep]
            self._bump(channel)

    def _bump(self, channel: str) -> None:
        self._versions[channel] += 1
        self._changed.notify_all()

    def versions(self) -> dict[str, int]:
        with self._changed:
            return dict(self._versions)

    def changed_since(self, seen: dict[str, int], channels: tuple[str, ...], timeout_s: float) -> dict[str, dict]:
        """Channels (of `channels`) newer than `seen`, waiting up to `timeout_s` for one; updates `seen`."""
        with self._changed:
            self._changed.wait_for(lambda: any(self._versions[c] != seen.get(c) for c in channels), timeout_s)
            fresh = {c: copy.deepcopy(self._data[c]) for c in channels if self._versions[c] != seen.get(c)}
            seen.update({c: self._versions[c] for c in fresh})
            return fresh

    def snapshot(self, channel: str) -> dict:
        with self._changed:
            return copy.deepcopy(self._data[channel])
