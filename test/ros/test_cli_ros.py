"""The `ros2`-like tools of the tango2 CLI against a live node brought up by `tango2 launch`."""
import json
import os
import subprocess
import sys

import pytest

from helpers.ros import spawn, stop, wait_for_line, wait_until

pytestmark = pytest.mark.ros

PROFILE = """\
description: CLI test
nodes:
  - name: llm_node
    executable: llm_node
    namespace: /t2cli
    parameters: {n_parallel: 1, n_ctx_per_seq: 512, diagnostics_period_s: 0.2}
"""


def tango2_json(*args: str, timeout: float = 60):
    result = subprocess.run([sys.executable, "-m", "tango2_ros.cli", *args, "--json"], capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def live_node(tmp_path_factory):
    profile = tmp_path_factory.mktemp("cli") / "clitest.yaml"
    profile.write_text(PROFILE)
    launcher = spawn(["-m", "tango2_ros.cli", "launch", str(profile)])
    try:
        wait_for_line(launcher, "llm_node: active", timeout=120)
        yield launcher
    finally:
        stop(launcher)


def test_node_and_action_lists(live_node):
    # discovery of a node by a new process takes longer on a loaded machine: ask again rather than once
    assert wait_until(lambda: "/t2cli/llm_node" in tango2_json("node", "list")[0]["nodes"], 60, interval=1.0)
    actions = tango2_json("action", "list")[0]["actions"]
    assert actions["/t2cli/llm/generate"] == ["tango2_msgs/action/Generate"]
    graph = tango2_json("graph")[0]
    assert "/diagnostics" in graph["topics"] and "/t2cli/llm_node/get_state" in graph["services"]


def test_action_send_goal(live_node):
    (result,) = tango2_json("action", "send_goal", "/t2cli/llm/generate", "tango2_msgs/action/Generate",
                            "{prompt: 'The sea is', max_tokens: 4}")
    assert result["finish_reason"] in ("stop", "length") and result["model"].startswith("SmolLM2")


def test_a_goal_sent_while_the_node_comes_up_waits_until_it_serves(tmp_path):
    profile = tmp_path / "early.yaml"
    profile.write_text(PROFILE.replace("/t2cli", "/t2early"))
    launcher = spawn(["-m", "tango2_ros.cli", "launch", str(profile)])
    try:  # sent at once: the llm_node is not even started yet
        (result,) = tango2_json("action", "send_goal", "/t2early/llm/generate", "tango2_msgs/action/Generate",
                                "{prompt: 'The sea is', max_tokens: 4}", "--wait-ready", "120", timeout=180)
        assert result["finish_reason"] in ("stop", "length") and not result["error"], result
    finally:
        stop(launcher)
    gone = subprocess.run([sys.executable, "-m", "tango2_ros.cli", "action", "send_goal", "/t2nobody/llm/generate",
                           "tango2_msgs/action/Generate", "{prompt: x}", "--wait-ready", "2"], capture_output=True,
                          text=True, timeout=60)
    assert gone.returncode == 2 and "is not available" in gone.stderr


def test_service_call(live_node):
    (response,) = tango2_json("service", "call", "/t2cli/llm_node/get_state", "lifecycle_msgs/srv/GetState")
    assert response["current_state"]["label"] == "active"


def test_topic_echo_and_hz(live_node):
    messages = tango2_json("topic", "echo", "/diagnostics", "--count", "2", "--timeout", "20")
    assert len(messages) == 2
    assert any(s["name"] == "/t2cli/llm_node" for m in messages for s in m["status"])
    (rate,) = tango2_json("topic", "hz", "/diagnostics", "--duration", "3")
    assert rate["messages"] >= 5 and 2.0 < rate["rate_hz"] < 20.0  # published every 0.2 s


def test_demo_deploys_the_signed_default_model_and_answers(tmp_path):
    """What `make demo` runs, in a private models folder: the manager deploys the signed default from the local
    registry before the questions, and every answer (action and HTTP) comes from that deployment."""
    env = {**os.environ, "TANGO2_MODELS_DIR": str(tmp_path / "models")}
    subprocess.run([sys.executable, "-m", "tango2_ros.cli", "models", "import-defaults"], env=env, check=True,
                   capture_output=True, timeout=120)
    result = subprocess.run([sys.executable, "-m", "tango2_ros.cli", "demo", "--json"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["deployment"]["state"] == "active"
    assert report["deployment"]["model"] == "smollm2-135m-instruct@1.0.0"
    # the third answer came through the OpenAI-style HTTP API (llm_api), from the same deployment
    assert [a["model"] for a in report["answers"]] == ["smollm2-135m-instruct@1.0.0"] * 3
    assert report["answers"][2]["via"] == "http" and report["answers"][2]["text"]
    answer = json.loads(report["answers"][1]["text"])
    assert answer["vessel"] in ("container ship", "fishing vessel", "sailing yacht", "tug")
