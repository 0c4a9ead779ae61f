"""The standard build path: colcon builds both packages against the venv's ROS 2, as on a ROS 2 machine."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)

pytestmark = pytest.mark.slow


def test_colcon_builds_and_installs_both_packages(tmp_path):
    colcon = VENV / "bin" / "colcon"
    env = {**os.environ, "AMENT_PREFIX_PATH": str(VENV), "CMAKE_PREFIX_PATH": str(VENV),
           "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}"}
    build = subprocess.run(
        [str(colcon), "--log-base", str(tmp_path / "log"), "build", "--base-paths", ".", "tango2_msgs",
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install"),
         "--cmake-args", "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "2 packages finished" in build.stdout
    install = tmp_path / "install"
    assert (install / "tango2_ros" / "lib" / "tango2_ros" / "llm_node").is_file()  # `ros2 run tango2_ros llm_node`
    assert (install / "tango2_ros" / "share" / "tango2_ros" / "launch" / "llm.launch.py").is_file()
    assert (install / "tango2_ros" / "share" / "tango2_ros" / "config" / "profiles" / "llm.yaml").is_file()
    releases = install / "tango2_ros" / "share" / "tango2_ros" / "models" / "releases"
    assert (releases / "ct-findings-phantom" / "1.1.0-f32" / "manifest.json").is_file()  # set-up's import finds it
    assert (install / "tango2_ros" / "share" / "ament_index" / "resource_index" / "packages" / "tango2_ros").is_file()
    # the colcon-built messages import from the install space, as after `source install/setup.bash`
    site = next((install / "tango2_msgs" / "lib").glob("python3*/site-packages"))
    probe = subprocess.run(
        [sys.executable, "-c", "import tango2_msgs.msg, tango2_msgs; print(tango2_msgs.__file__)"],
        env={**env, "PYTHONPATH": str(site), "LD_LIBRARY_PATH": f"{install / 'tango2_msgs' / 'lib'}"},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    assert str(install) in probe.stdout
