"""Reading a JSON object from a message's bytes (MQTT payloads of the farm's sensors and of the fleet)."""
from __future__ import annotations

import json


def json_object(payload: bytes, error: type[ValueError] = ValueError) -> dict:
    """The payload's JSON object; `error` with the reason for bytes that are not JSON or not an object."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise error("not a JSON object")
    return body
