"""Deterministic, non-default sample instances of any ROS message type (for round-trip tests)."""
from __future__ import annotations

import importlib
import inspect

from rosidl_parser import definition as d


def interface_classes(package: str, kind: str) -> dict[str, type]:
    """The package's interfaces of one kind (msg, srv, action), without generated helper types like *_Event."""
    module = importlib.import_module(f"{package}.{kind}")
    marker = {"msg": "get_fields_and_field_types", "srv": "Request", "action": "Goal"}[kind]
    return {
        name: cls for name, cls in inspect.getmembers(module, inspect.isclass)
        if not name.startswith("_") and "_" not in name and hasattr(cls, marker)
    }


def sample(cls: type):
    message = cls()
    for (name, _), slot_type in zip(cls.get_fields_and_field_types().items(), cls.SLOT_TYPES):
        setattr(message, name, _value(slot_type, name))
    return message


def _value(slot_type, name: str):
    if isinstance(slot_type, d.AbstractNestedType):
        count = slot_type.size if isinstance(slot_type, d.Array) else 2
        values = [_value(slot_type.value_type, f"{name}{i}") for i in range(count)]
        return values
    if isinstance(slot_type, d.NamespacedType):
        module = importlib.import_module(".".join(slot_type.namespaces))
        return sample(getattr(module, slot_type.name))
    if isinstance(slot_type, (d.AbstractString, d.AbstractWString)):
        return f"{name}-é✓"
    typename = slot_type.typename
    if typename == "boolean":
        return True
    if typename in ("float", "double"):
        return 1.5
    if typename in ("octet",):
        return b"\x07"
    if typename == "char":
        return "c"
    return 7
