"""Collect /diagnostics statuses of one node."""
from __future__ import annotations

import threading

from diagnostic_msgs.msg import DiagnosticArray

from helpers.ros import wait_until


class DiagnosticsWatcher:
    def __init__(self, node, fqn: str) -> None:
        self.fqn = fqn
        self._lock = threading.Lock()
        self.statuses = []
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_message, 50)

    def _on_message(self, message: DiagnosticArray) -> None:
        with self._lock:
            self.statuses += [s for s in message.status if s.name == self.fqn]

    def wait_for(self, predicate, timeout: float):
        """The first status (oldest first) for which predicate(status) holds, waiting up to timeout."""
        def find():
            with self._lock:
                return next((s for s in self.statuses if predicate(s)), None)
        assert wait_until(lambda: find() is not None, timeout), (
            f"no matching status from {self.fqn}; last: {[(s.level, s.message) for s in self.statuses[-3:]]}"
        )
        return find()

    def values(self, status) -> dict[str, str]:
        return {kv.key: kv.value for kv in status.values}
