"""`tango2 launch`: processes, lifecycle bring-up, restart with back-off, clean shutdown, live graph."""
import os
import re
import signal

import pytest

from helpers.ros import spawn, stop, wait_for_line

pytestmark = pytest.mark.ros

PROFILE = """\
description: launch test
nodes:
  - name: llm_node
    executable: llm_node
    namespace: /t2launch
    parameters: {n_parallel: 1, n_ctx_per_seq: 256, max_queue: 1}
    restart: {max_restarts: 2, backoff_s: 0.5}
"""


def test_launch_brings_up_restarts_and_stops_cleanly(tmp_path):
    profile = tmp_path / "launchtest.yaml"
    profile.write_text(PROFILE)
    launcher = spawn(["-m", "tango2_ros.cli", "launch", str(profile), "--graph"])
    try:
        lines = wait_for_line(launcher, "llm_node: active", timeout=120)
        first_pid = int(re.search(r"llm_node: started \(pid (\d+)\)", "\n".join(lines)).group(1))
        lines = wait_for_line(launcher, "/t2launch/llm/generate", timeout=30)  # the live graph shows the action
        assert any("/t2launch/llm_node" in line for line in lines)

        os.kill(first_pid, signal.SIGKILL)  # a crash
        lines = wait_for_line(launcher, "llm_node: active", timeout=120)
        text = "\n".join(lines)
        assert "exited with code -9; restarting in 0.5 s" in text
        second_pid = int(re.search(r"llm_node: started \(pid (\d+)\)", text).group(1))
        assert second_pid != first_pid
    finally:
        output = stop(launcher)
    assert launcher.returncode == 0, output
    assert "llm_node: stopped (exit code 0)" in output
    with pytest.raises(ProcessLookupError):
        os.kill(second_pid, 0)


def test_a_node_that_keeps_crashing_is_given_up_after_max_restarts(tmp_path):
    profile = tmp_path / "crashing.yaml"
    # an invalid parameter type makes the node exit at start every time
    profile.write_text(PROFILE.replace("n_parallel: 1", "n_parallel: 'many'").replace("max_restarts: 2", "max_restarts: 1"))
    launcher = spawn(["-m", "tango2_ros.cli", "launch", str(profile)])
    try:
        lines = wait_for_line(launcher, "gave up after 1 restarts", timeout=120)
        assert sum("llm_node: started" in line for line in lines) == 2
    finally:
        stop(launcher)
