"""Recording live ROS 2 topics into an MCAP file, readable by Foxglove, `ros2 bag` (rosbag2's MCAP storage) and
the `mcap` Python packages (`ros2 bag record` itself cannot be installed from PyPI).

Messages are stored as received, serialized CDR, on one channel per topic; each topic's schema is its `.msg`
definition with every nested type appended (the `ros2msg` encoding rosbag2 writes), read from the interface
packages' share folders.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable

from mcap.writer import Writer
from rclpy.qos import QoSProfile

from tango2_ros.errors import UserError

PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
              "int64", "uint64", "string", "wstring"}
SEPARATOR = "=" * 80


class RecordingError(UserError):
    """A topic's type or definition cannot be found, or the file cannot be written."""


def message_definition(type_name: str) -> str:
    """`pkg/msg/Type` -> the ros2msg schema text: its definition, then each nested type as `MSG: pkg/Type`."""
    root = _normalise(type_name)
    texts, order, pending = {}, [], [root]
    while pending:
        name = pending.pop(0)
        if name in texts:
            continue
        texts[name] = _definition_text(name)
        order.append(name)
        pending.extend(_field_types(texts[name], name.split("/")[0]))
    parts = [texts[root]]
    for name in order[1:]:
        parts += [SEPARATOR, f"MSG: {name}", texts[name]]
    return "\n".join(part.rstrip("\n") for part in parts) + "\n"


def _normalise(type_name: str) -> str:
    """`pkg/msg/Type` or `pkg/Type` -> `pkg/Type`."""
    parts = type_name.split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return f"{parts[0]}/{parts[2]}"
    if len(parts) == 2:
        return type_name
    raise RecordingError(f"{type_name!r} is not a message type (pkg/msg/Type)")


def _definition_text(name: str) -> str:
    """From the ament prefixes (a sourced ROS 2) or this interpreter's prefix (the PyPI wheels install there)."""
    package, message = name.split("/")
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    for prefix in prefixes:
        path = Path(prefix) / "share" / package / "msg" / f"{message}.msg"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise RecordingError(f"no definition of {name} under {', '.join(prefixes)}")


def _field_types(text: str, package: str) -> list[str]:
    """The non-primitive field types of a definition, as `pkg/Type`."""
    found = []
    for line in text.splitlines():
        tokens = line.split("#", 1)[0].split()
        if len(tokens) < 2 or "=" in tokens[1]:
            continue  # blank, comment or constant (NAME=value)
        base = re.match(r"[A-Za-z0-9_/]*", tokens[0]).group(0)  # without [N], [<=N] or <=N bounds
        if base in PRIMITIVES:
            continue
        if base == "Header":
            found.append("std_msgs/Header")
        else:
            found.append(_normalise(base) if "/" in base else f"{package}/{base}")
    return found


def message_class(type_name: str):
    """`pkg/msg/Type` -> the generated Python class."""
    package, message = _normalise(type_name).split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), message)
    except (ImportError, AttributeError) as exc:
        raise RecordingError(f"message type {type_name} cannot be imported: {exc}") from exc


class McapRecorder:
    """Subscribes to topics of a node's graph and writes what arrives while the node is spun.

    `clock` gives each message's log time in nanoseconds (default: the wall clock; the simulator passes its own
    simulated time so a recording replays at the simulated pace)."""

    def __init__(self, node, path: Path, topics: list[tuple[str, str]], *,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.node, self.path, self.clock = node, Path(path), clock
        self.counts: dict[str, int] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = self.path.open("wb")
        except OSError as exc:
            raise RecordingError(f"cannot write {self.path}: {exc}") from exc
        self._writer = Writer(self._file)
        self._writer.start(profile="ros2", library="tango2-ros")
        self._subscriptions = []
        for topic, type_name in topics:
            schema = self._writer.register_schema(name=_normalise(type_name), encoding="ros2msg",
                                                  data=message_definition(type_name).encode())
            channel = self._writer.register_channel(topic=topic, message_encoding="cdr", schema_id=schema)
            self.counts[topic] = 0
            self._subscriptions.append(node.create_subscription(
                message_class(type_name), topic, lambda data, c=channel, t=topic: self._write(c, t, data),
                QoSProfile(depth=100), raw=True))

    def _write(self, channel: int, topic: str, data: bytes) -> None:
        now = self.clock()
        self._writer.add_message(channel_id=channel, log_time=now, data=data, publish_time=now,
                                 sequence=self.counts[topic])
        self.counts[topic] += 1

    def close(self) -> None:
        for subscription in self._subscriptions:
            self.node.destroy_subscription(subscription)
        self._subscriptions = []
        self._writer.finish()
        self._file.close()
