"""A short-lived rclpy context and node for command-line tools."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import rclpy
from rclpy.node import Node


@contextmanager
def ros_session(name: str) -> Iterator[Node]:
    """Init rclpy (the default context: a CLI command is its own process), yield a node, always shut down."""
    rclpy.init()
    node = rclpy.create_node(name, start_parameter_services=False)
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
