"""Printing for the CLI: human text by default, a single JSON object with --json."""
from __future__ import annotations

import json
import sys
from typing import Any

from tango2_ros.ros.interfaces import json_safe


def emit(args: Any, data: Any, human: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(json_safe(data), ensure_ascii=False))
    else:
        print(human)
    sys.stdout.flush()


class ProgressBar:
    """Progress on stderr: a redrawn bar on a terminal, a line every 10 % otherwise (logs stay readable)."""

    def __init__(self, label: str, stream=None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self._last_tenth = -1
        self._shown = False

    def update(self, done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        if self.interactive:
            filled = int(30 * fraction)
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {fraction:6.1%} "
                              f"{done / 2**20:.1f}/{total / 2**20:.1f} MiB")
        elif int(fraction * 10) > self._last_tenth:
            self._last_tenth = int(fraction * 10)
            self.stream.write(f"{self.label}: {fraction:.0%} of {total / 2**20:.1f} MiB\n")
        else:
            return
        self._shown = True
        self.stream.flush()

    def close(self) -> None:
        if self._shown and self.interactive:
            self.stream.write("\n")
            self.stream.flush()
