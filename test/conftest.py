"""Test-wide settings (DDS traffic on loopback, in a domain of this test run only) and shared fixtures."""
import os
import random
import sys
from pathlib import Path

import pytest

# Before any rclpy import or node start: other ROS processes on the machine must not join our graph.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(20, 99)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    """A phantom chest CT with a lung nodule and a pleural effusion as a DICOM series (ROS-free)."""
    from tango2_ros.sdm.phantom import render
    from tango2_ros.sdm.study_files import write_dicom_series

    folder = tmp_path_factory.mktemp("series") / "ct"
    write_dicom_series(render(("lung-nodule", "pleural-effusion"), seed=3), folder)
    return folder
