"""A short-lived rclpy context and node for command-line tools."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import rclpy
from rclpy.node import Node


@contextmanager
def ros_session(name: str) -> Iterator[Node]:
    """Init rclpy, yield a node, and always shut down (Ctrl-C included)."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context, start_parameter_services=False)
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
