"""Test-wide settings: keep DDS traffic on loopback and in a domain of this test run only."""
import os
import random
import sys
from pathlib import Path

# Before any rclpy import or node start: other ROS processes on the machine must not join our graph.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(20, 99)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))
