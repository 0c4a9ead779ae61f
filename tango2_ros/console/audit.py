"""The console's audit log: one JSON line per action that changes state or is refused, with who asked.

Appended under a lock and flushed per line, so a crash loses at most the line being written; `tail` reads the last
entries back for the admin's view.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def record(self, user: str, role: str, action: str, outcome: str, **detail) -> None:
        """`outcome`: done, refused, failed or deferred; `detail` says what on (a slot and version, a study)."""
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "user": user, "role": role, "action": action,
                 "outcome": outcome, **detail}
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as out:
                out.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def tail(self, count: int = 100) -> list[dict]:
        if not self.path.exists():
            return []
        with self._lock, self.path.open() as lines:
            last = deque(lines, maxlen=count)
        entries = []
        for line in last:
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash
        return entries
