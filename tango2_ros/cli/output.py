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
