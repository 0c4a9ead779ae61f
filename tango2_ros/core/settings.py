"""Settings that a ROS-free dataclass owns and a node offers as ROS parameters.

A field made with `setting(...)` keeps its default, description and range in one place: the domain code uses the
dataclass directly, and a node declares every such field as a parameter and builds the dataclass from their
values (`Tango2Node.declare_settings` / `settings`), so the two can never disagree on a default.
"""
from __future__ import annotations

from dataclasses import Field, field, fields
from typing import Any


def setting(default: Any, description: str, low: float | None = None, high: float | None = None) -> Any:
    """A dataclass field that is also a node parameter, with its description and (for numbers) its range."""
    return field(default=default, metadata={"description": description, "min_value": low, "max_value": high})


def parameter_fields(cls: type) -> list[Field]:
    """The fields of `cls` made with `setting`, in declaration order."""
    return [f for f in fields(cls) if "description" in f.metadata]
