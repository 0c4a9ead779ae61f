"""Our nodes must not overwrite rclpy's own node attributes: a node that assigned `self._services` lost its
lifecycle services (they vanished from the executor's wait set and the node stopped answering), and a method
named `_parameters` hid rclpy's parameter table."""
import re
from pathlib import Path

import rclpy
from rclpy.lifecycle import LifecycleNode

NODES = Path(__file__).resolve().parents[2] / "tango2_ros" / "nodes"


def test_no_node_attribute_shadows_an_rclpy_one():
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = LifecycleNode("attribute_probe", context=context)
        rclpy_names = set(vars(node)) | {name for name in dir(LifecycleNode) if not name.startswith("__")}
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    sources = [path.read_text() for path in NODES.glob("*.py")]
    assigned = {name for text in sources for name in re.findall(r"self\.(\w+)\s*(?::[^=]+)?=(?!=)", text)}
    private_methods = {name for text in sources for name in re.findall(r"\n    def (_\w+)\(", text)}
    ours = assigned | (private_methods - {"__init__"})
    assert assigned and not ours & rclpy_names, sorted(ours & rclpy_names)
