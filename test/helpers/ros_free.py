"""Making ROS unimportable in this process: what a machine without the ROS 2 wheels would see."""
from __future__ import annotations

import importlib.abc
import sys

# the ROS 2 client library and its bindings, bag and launch packages, and every interface package
ROS_PACKAGES = ("rclpy", "rpyutils", "rosbag2_py", "launch", "launch_ros", "ament_index_python")


def is_ros(name: str) -> bool:
    top = name.split(".")[0]
    return top in ROS_PACKAGES or top.startswith("rosidl") or top.endswith(("_msgs", "_srvs", "_interfaces"))


class RosBlocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if is_ros(fullname):
            raise ImportError(f"{fullname} imported where no ROS may be (a ROS-free module or unit test)")
        return None


def block_ros() -> None:
    already = sorted(name for name in sys.modules if is_ros(name))
    if already:
        raise RuntimeError(f"ROS modules already imported: {already[:5]}")
    sys.meta_path.insert(0, RosBlocker())
