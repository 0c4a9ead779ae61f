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

    def __init__(self, label: str, stream=None, unit: str = "MiB") -> None:
        self.label = label
        self.unit = unit  # "MiB": done/total are bytes; anything else: counts of that unit
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self._last_tenth = -1
        self._shown = False

    def update(self, done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        scale, digits = (2**20, 1) if self.unit == "MiB" else (1, 0)
        amount = f"{done / scale:.{digits}f}/{total / scale:.{digits}f} {self.unit}"
        if self.interactive:
            filled = int(30 * fraction)
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {fraction:6.1%} {amount}")
        elif int(fraction * 10) > self._last_tenth:
            self._last_tenth = int(fraction * 10)
            self.stream.write(f"{self.label}: {fraction:.0%} ({amount})\n")
        else:
            return
        self._shown = True
        self.stream.flush()

    def close(self) -> None:
        if self._shown and self.interactive:
            self.stream.write("\n")
            self.stream.flush()
