"""Unit tests: the domain logic, with no ROS. `scripts/run_tests.sh` runs this folder with TANGO2_NO_ROS=1, which
makes rclpy and every message package unimportable here, so a domain module or unit test that reaches for ROS
fails instead of passing on a machine that happens to have the wheels."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers.ros_free import block_ros  # noqa: E402

if os.environ.get("TANGO2_NO_ROS") == "1":
    block_ros()
