"""The domain packages import no ROS: every module of core, sds, sdf, sdm, builder and console imports in a process where
rclpy and the message packages cannot be imported (the ROS side lives in tango2_ros.ros, .nodes and .sim)."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOMAIN_PACKAGES = ("core", "sds", "sdf", "sdm", "builder", "console")

PROBE = """
import importlib, pkgutil, sys
sys.path.insert(0, {test!r})
from helpers.ros_free import block_ros
block_ros()
import tango2_ros
failed = []
for package in {packages!r}:
    root = importlib.import_module("tango2_ros." + package)
    for module in pkgutil.walk_packages(root.__path__, root.__name__ + "."):
        try:
            importlib.import_module(module.name)
        except ImportError as exc:
            failed.append(f"{{module.name}}: {{exc}}")
print("\\n".join(failed))
"""


def test_no_domain_module_imports_ros():
    probe = PROBE.format(test=str(REPO / "test"), packages=DOMAIN_PACKAGES)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "", f"modules that import ROS:\n{result.stdout}"


def test_the_blocker_really_blocks():
    probe = f"import sys; sys.path.insert(0, {str(REPO / 'test')!r}); from helpers.ros_free import block_ros; " \
            "block_ros(); import tango2_msgs.msg"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no ROS may be" in result.stderr
