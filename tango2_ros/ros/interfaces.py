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


INTEGER_RANGES = {
    "int8": (-2**7, 2**7 - 1), "uint8": (0, 2**8 - 1), "int16": (-2**15, 2**15 - 1), "uint16": (0, 2**16 - 1),
    "int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1), "int64": (-2**63, 2**63 - 1), "uint64": (0, 2**64 - 1),
    "octet": (0, 255), "byte": (0, 255),
}


def fill(message: Any, data: Any, path: str = "") -> Any:
    """Set the fields of `message` from a mapping; unknown fields and values of the wrong type raise UserError.

    rclpy only type-checks field assignments when ROS_PYTHON_CHECK_FIELDS=1, so the check is done here.
    """
    if data is None:
        return message
    if not isinstance(data, dict):
        raise UserError(f"{path or type(message).__name__}: expected a mapping of field values, got {data!r}")
    fields = message.get_fields_and_field_types()
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            raise UserError(f"{where}: no such field in {type(message).__name__} (fields: {', '.join(fields)})")
        setattr(message, key, _convert(fields[key], value, where))
    return message


def _convert(type_name: str, value: Any, where: str) -> Any:
    """A field value of ROS type `type_name` (e.g. 'double', 'sequence<string>', 'std_msgs/Header')."""
    element, is_sequence = _element_type(type_name)
    if is_sequence:
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list for {type_name}, got {value!r}")
        return [_convert(element, item, f"{where}[{i}]") for i, item in enumerate(value)]
    if "/" in element:
        package, name = element.split("/")
        return fill(getattr(importlib.import_module(f"{package}.msg"), name)(), value, where)
    if element.startswith(("string", "wstring")):
        if not isinstance(value, str):
            raise UserError(f"{where}: cannot set {value!r}: expected a string")
        return value
    if element == "boolean":
        if not isinstance(value, bool):
            raise UserError(f"{where}: cannot set {value!r}: expected true or false")
        return value
    if element in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: cannot set {value!r}: expected a number")
        return float(value)
    if element in INTEGER_RANGES:
        low, high = INTEGER_RANGES[element]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise UserError(f"{where}: cannot set {value!r}: expected an integer in [{low}, {high}]")
        return bytes([value]) if element in ("octet", "byte") else value
    return value


def _element_type(type_name: str) -> tuple[str, bool]:
    """('double', True) for 'sequence<double, 5>' or 'double[4]'; ('string<=10', False) for a bounded string."""
    if type_name.startswith("sequence<"):
        return type_name[len("sequence<"):-1].split(",")[0].strip(), True
    if type_name.endswith("]") and "[" in type_name:
        return type_name[: type_name.index("[")], True
    return type_name, False
