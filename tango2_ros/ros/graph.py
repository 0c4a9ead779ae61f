"""The live ROS graph (nodes, topics, services, actions) as plain data, for `tango2 launch` and the CLI."""
from __future__ import annotations

import time
from dataclasses import dataclass

from rclpy.action import get_action_names_and_types
from rclpy.node import Node

HIDDEN_SERVICE_SUFFIXES = (
    "/describe_parameters", "/get_parameter_types", "/get_parameters", "/list_parameters", "/set_parameters",
    "/set_parameters_atomically", "/get_type_description",
)


@dataclass
class Graph:
    nodes: list[str]
    topics: dict[str, list[str]]
    services: dict[str, list[str]]
    actions: dict[str, list[str]]

    def as_dict(self) -> dict:
        return {"nodes": self.nodes, "topics": self.topics, "services": self.services, "actions": self.actions}

    def format(self) -> str:
        lines = [f"nodes ({len(self.nodes)}):", *[f"  {n}" for n in self.nodes]]
        for title, entries in (("topics", self.topics), ("services", self.services), ("actions", self.actions)):
            lines.append(f"{title} ({len(entries)}):")
            lines += [f"  {name}  [{', '.join(types)}]" for name, types in entries.items()]
        return "\n".join(lines)


def snapshot(node: Node, *, include_hidden: bool = False, exclude_self: bool = True) -> Graph:
    """What the node currently sees of the graph; parameter and action-internal services are hidden by default."""
    own = node.get_fully_qualified_name()
    nodes = sorted(
        f"{ns.rstrip('/')}/{name}" for name, ns in node.get_node_names_and_namespaces()
        if not (exclude_self and f"{ns.rstrip('/')}/{name}" == own)
    )
    topics = {name: types for name, types in sorted(node.get_topic_names_and_types())
              if include_hidden or "/_action/" not in name}
    services = {name: types for name, types in sorted(node.get_service_names_and_types())
                if include_hidden or ("/_action/" not in name and not name.endswith(HIDDEN_SERVICE_SUFFIXES))}
    actions = {name: types for name, types in sorted(get_action_names_and_types(node))}
    return Graph(nodes=nodes, topics=topics, services=services, actions=actions)


def wait_for_nodes(node: Node, names: list[str], timeout_s: float, settle_s: float = 0.5) -> bool:
    """Wait until every named node is discovered and the graph has stopped changing for settle_s.

    DDS discovery has no completion event, and a node's topics and services arrive after the node itself.
    """
    deadline = time.monotonic() + timeout_s
    previous, stable_since = None, time.monotonic()
    while time.monotonic() < deadline:
        current = snapshot(node).as_dict()
        if current != previous:
            previous, stable_since = current, time.monotonic()
        elif set(names) <= set(current["nodes"]) and time.monotonic() - stable_since >= settle_s:
            return True
        time.sleep(0.05)
    return False


def settled_snapshot(node: Node, *, min_wait_s: float = 2.0, max_wait_s: float = 8.0, settle_s: float = 1.5) -> Graph:
    """The graph once discovery has gone quiet: unchanged for settle_s, after at least min_wait_s.

    Until some other node has been discovered the graph may just not have arrived yet (a loaded machine can
    take seconds), so an empty graph is only returned after max_wait_s.
    """
    started = time.monotonic()
    previous, stable_since = None, started
    while True:
        current = snapshot(node)
        now = time.monotonic()
        if previous is None or current.as_dict() != previous.as_dict():
            previous, stable_since = current, now
        elif current.nodes and now - started >= min_wait_s and now - stable_since >= settle_s \
                and _endpoints_known(node, current.nodes):
            return current
        if now - started >= max_wait_s:
            return current
        time.sleep(0.1)


def _endpoints_known(node: Node, names: list[str]) -> bool:
    """Every discovered node's publishers are known too: a node arrives before its endpoints, and every rclpy or
    rclcpp node publishes at least /rosout, so a node seen without any publisher is still being discovered."""
    for name in names:
        namespace, _, base = name.rpartition("/")
        try:
            if not node.get_publisher_names_and_types_by_node(base, namespace or "/"):
                return False
        except Exception:  # noqa: BLE001 - a node that left meanwhile: its absence is the answer
            continue
    return True
