"""Resolve interface type names and convert messages to and from plain Python data.

rclpy 9 from PyPI has no rosidl_runtime_py, so the CLI (`tango2 topic echo`, `tango2 service call`) and the
tests use these instead. Conversion errors name the offending field.
"""
from __future__ import annotations

import array
import importlib
import math
from typing import Any

import numpy

from tango2_ros.errors import UserError

KINDS = ("msg", "srv", "action")


def import_interface(type_name: str) -> type:
    """`pkg/msg/Name`, `pkg/srv/Name`, `pkg/action/Name` (or `pkg/Name` for a message) -> its Python class."""
    parts = type_name.strip().split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or parts[1] not in KINDS or not all(parts):
        raise UserError(f"invalid interface type '{type_name}' (expected package/msg|srv|action/Name)")
    package, kind, name = parts
    try:
        module = importlib.import_module(f"{package}.{kind}")
        return getattr(module, name)
    except (ImportError, AttributeError):
        raise UserError(f"unknown interface type '{type_name}'") from None


def to_data(value: Any) -> Any:
    """A message (or field value) as plain dicts, lists, numbers and strings, in field order."""
    if hasattr(value, "get_fields_and_field_types"):
        return {name: to_data(getattr(value, name)) for name in value.get_fields_and_field_types()}
    if isinstance(value, (list, tuple, array.array, numpy.ndarray)):
        return [to_data(v) for v in value]
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, numpy.generic):
        return value.item()
    return value


def json_safe(value: Any) -> Any:
    """to_data() output with NaN and infinities turned into None, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def fill(message: Any, data: Any, path: str = "") -> Any:
    """Set the fields of `message` from a mapping; unknown fields and wrong types raise UserError."""
    if data is None:
        return message
    if not isinstance(data, dict):
        raise UserError(f"{path or type(message).__name__}: expected a mapping of field values, got {data!r}")
    fields = message.get_fields_and_field_types()
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            raise UserError(f"{where}: no such field in {type(message).__name__} (fields: {', '.join(fields)})")
        current = getattr(message, key)
        try:
            if hasattr(current, "get_fields_and_field_types"):
                fill(current, value, where)
            elif _is_message_sequence(message, key):
                element_type = _sequence_element_class(message, key)
                setattr(message, key, [fill(element_type(), item, f"{where}[{i}]") for i, item in enumerate(value)])
            else:
                setattr(message, key, value)
        except UserError:
            raise
        except (TypeError, ValueError, AssertionError) as exc:
            raise UserError(f"{where}: cannot set {value!r}: {exc}") from None
    return message


def _is_message_sequence(message: Any, field: str) -> bool:
    type_name = message.get_fields_and_field_types()[field]
    return "sequence<" in type_name and "/" in type_name or ("[" in type_name and "/" in type_name)


def _sequence_element_class(message: Any, field: str) -> type:
    type_name = message.get_fields_and_field_types()[field]
    inner = type_name.split("<", 1)[1].split(",")[0].rstrip(">") if "<" in type_name else type_name.split("[")[0]
    package, name = inner.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)
