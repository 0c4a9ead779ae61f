"""What devices and the fleet controller say to each other over MQTT: the topics and the JSON they carry.

Every device has its own broker; mosquitto bridges it to the fleet broker, so these topics travel with QoS 1 and
wait in the bridge's queue while a link is down. Device -> fleet: `telemetry` (per-deployment counts over a window),
`state` (what it serves, retained) and `decisions` (new lines of the device's decision logs, the learning path's
field data). Fleet -> device: `desired` (the release the device should serve, retained, so a device that was
offline finds it when it returns).

A message is checked field by field and refused with the reason (ValueError subclass `FleetMessageError`): the
fleet controller logs it and goes on. A device's clock is only reported, never used to judge it (a device clock
may be wrong): the controller times everything by when the message arrived.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass

from tango2_ros.core.json_payload import json_object

TOPIC_ROOT = "tango2/fleet"
DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
RELEASE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}@[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
LOG_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.jsonl$")
MAX_PAYLOAD_BYTES = 64 * 1024


class FleetMessageError(ValueError):
    """A message that cannot be used, with the reason."""


def topic(device: str, kind: str) -> str:
    """`tango2/fleet/<device>/<kind>`, kind one of telemetry, state, desired, decisions."""
    return f"{TOPIC_ROOT}/{_device_id(device)}/{kind}"


def every_device(kind: str) -> str:
    """The subscription to one kind of message from every device."""
    return f"{TOPIC_ROOT}/+/{kind}"


def device_of(topic_name: str, kind: str) -> str:
    """The device a topic belongs to; FleetMessageError for a topic of another shape."""
    parts = topic_name.split("/")
    if len(parts) != 4 or "/".join(parts[:2]) != TOPIC_ROOT or parts[3] != kind:
        raise FleetMessageError(f"{topic_name!r} is not a {TOPIC_ROOT}/<device>/{kind} topic")
    return _device_id(parts[2])


@dataclass(frozen=True)
class Telemetry:
    """One deployment's counts over the last window on one device."""

    device: str
    sequence: int  # counts up per device: QoS 1 delivers at least once, so a repeat is recognised and dropped
    release: str  # name@version the slot served over the window
    slot: str
    window_s: float
    requests: int
    errors: int  # requests that failed (no answer, an exception, a time-out)
    latency_s: float  # mean seconds per answered request over the window; NaN when there were none
    supervisor_rejections: int = 0  # answers the domain's checker refused
    check_corrections: int = 0  # ... or corrected
    sent_at: float = 0.0  # the device's clock (reported, not trusted)

    def encode(self) -> bytes:
        body = asdict(self)
        body["latency_s"] = None if math.isnan(self.latency_s) else self.latency_s
        return json.dumps(body).encode()


@dataclass(frozen=True)
class DeviceState:
    """What a device serves now (retained): its release, or '' while it serves nothing; a swap's failure reason."""

    device: str
    release: str
    slot: str
    failed: str = ""  # why the last swap to the desired release failed ('' if it did not)

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()


@dataclass(frozen=True)
class Desired:
    """The release the fleet wants a device's slot to serve (retained), and the rollout that wants it."""

    release: str
    slot: str
    rollout: str

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()


@dataclass(frozen=True)
class DecisionBatch:
    """Lines `first_line`, `first_line + 1`, ... (0-based) of one decision log file of a device; each a JSON object."""

    device: str
    file: str
    first_line: int
    lines: tuple[str, ...]

    def encode(self) -> bytes:
        return json.dumps({**asdict(self), "lines": list(self.lines)}).encode()


def parse_telemetry(topic_name: str, payload: bytes) -> Telemetry:
    body = _object(payload)
    device = _matching_device(topic_name, "telemetry", body)
    counts = {name: _count(body, name) for name in ("sequence", "requests", "errors", "supervisor_rejections",
                                                    "check_corrections")}
    if counts["errors"] > counts["requests"]:
        raise FleetMessageError(f"errors {counts['errors']} > requests {counts['requests']}")
    latency = body.get("latency_s")
    latency = math.nan if latency is None else _number(body, "latency_s", 0.0, 3600.0)
    return Telemetry(device=device, release=_release(body.get("release")), slot=_name(body, "slot"),
                     window_s=_number(body, "window_s", 0.001, 86400.0), latency_s=latency,
                     sent_at=_number(body, "sent_at", 0.0, math.inf) if "sent_at" in body else 0.0, **counts)


def parse_state(topic_name: str, payload: bytes) -> DeviceState:
    body = _object(payload)
    device = _matching_device(topic_name, "state", body)
    release = body.get("release")
    failed = body.get("failed", "")
    if not isinstance(failed, str):
        raise FleetMessageError("failed: not a string")
    return DeviceState(device=device, release="" if release == "" else _release(release), slot=_name(body, "slot"),
                       failed=failed[:500])


def parse_desired(payload: bytes) -> Desired:
    body = _object(payload)
    return Desired(release=_release(body.get("release")), slot=_name(body, "slot"), rollout=_name(body, "rollout"))


def parse_decisions(topic_name: str, payload: bytes) -> DecisionBatch:
    body = _object(payload)
    device = _matching_device(topic_name, "decisions", body)
    name, lines = body.get("file"), body.get("lines")
    if not isinstance(name, str) or not LOG_FILE.match(name):
        raise FleetMessageError(f"file {name!r}: a plain NAME.jsonl")
    if not isinstance(lines, list) or not lines:
        raise FleetMessageError("lines: a non-empty list")
    for number, line in enumerate(lines):
        if not isinstance(line, str) or "\n" in line:
            raise FleetMessageError(f"line {number}: one line of text")
        json_object(line.encode(), FleetMessageError)
    return DecisionBatch(device=device, file=name, first_line=_count(body, "first_line"), lines=tuple(lines))


def _object(payload: bytes) -> dict:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise FleetMessageError(f"{len(payload)} bytes: more than {MAX_PAYLOAD_BYTES}")
    return json_object(payload, FleetMessageError)


def _matching_device(topic_name: str, kind: str, body: dict) -> str:
    """The device named by the topic, which the payload must repeat (a device cannot speak for another)."""
    device = device_of(topic_name, kind)
    if body.get("device") != device:
        raise FleetMessageError(f"device {body.get('device')!r} in a message on {device}'s topic")
    return device


def _device_id(device: object) -> str:
    if not isinstance(device, str) or not DEVICE_ID.match(device):
        raise FleetMessageError(f"device id {device!r}: use 1-63 of a-z, 0-9, '-', '_'")
    return device


def _release(release: object) -> str:
    if not isinstance(release, str) or not RELEASE.match(release):
        raise FleetMessageError(f"release {release!r}: use NAME@VERSION")
    return release


def _name(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not DEVICE_ID.match(value):
        raise FleetMessageError(f"{key} {value!r}: use 1-63 of a-z, 0-9, '-', '_'")
    return value


def _count(body: dict, key: str) -> int:
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
        raise FleetMessageError(f"{key} {value!r}: not a count")
    return value


def _number(body: dict, key: str, low: float, high: float) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise FleetMessageError(f"{key} {value!r}: not a number in {low:g}-{high:g}")
    return float(value)
