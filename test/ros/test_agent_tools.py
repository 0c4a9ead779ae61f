"""An outside agent runs the farm through the standard interfaces: the official `openai` client asks llm_api (the
real llm_node behind it) with the farm's actuator tools, and the calls the model chooses go to the real safety
supervisor as controller `agent`, which decides what the actuators get. Hostile calls propose nothing."""
import json
import math
import socket

import pytest

pytestmark = pytest.mark.ros
NS = "/t21agent"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_agent_with_the_farms_tools_proposes_and_the_supervisor_decides():
    import openai
    from helpers.lifecycle import bring_up
    from helpers.ros import ros_node, spawn, stop, wait_until
    from tango2_msgs.msg import ActuatorCommand, GreenhouseState
    from tango2_ros.ros.agent_tools import AgentTools
    from tango2_ros.sdf.lam import function_tools

    port = _free_port()
    common = ["--ros-args", "-r", f"__ns:={NS}"]
    processes = [
        spawn(["-m", "tango2_ros.nodes.llm_node", *common, "-r", "__node:=llm_node", "-p", "n_parallel:=1",
               "-p", "n_ctx_per_seq:=2048"]),
        spawn(["-m", "tango2_ros.nodes.llm_api", *common, "-r", "__node:=llm_api", "-p", f"port:={port}",
               "-p", f"llm_action:={NS}/llm/generate", "-p", f"llm_node:={NS}/llm_node"]),
        spawn(["-m", "tango2_ros.nodes.safety_supervisor", *common, "-p", "controller:=agent",
               "-p", "proposal_timeout_s:=600.0", "-p", "stale_after_s:=3600.0"]),
    ]
    try:
        with ros_node("agent_probe") as node:
            for name in ("llm_node", "llm_api", "safety_supervisor"):
                bring_up(node, f"{NS}/{name}")
            commands: list[ActuatorCommand] = []
            node.create_subscription(ActuatorCommand, f"{NS}/sdf/command", commands.append, 50)
            states = node.create_publisher(GreenhouseState, f"{NS}/sdf/state", 10)
            tools = AgentTools(node, NS, timeout_s=30.0)
            assert wait_until(lambda: node.count_subscribers(f"{NS}/sdf/state") >= 2, 10)

            def new_state(seconds: int) -> None:
                state = GreenhouseState(crop="tomato", air_temperature_c=12.0, relative_humidity_pct=80.0,
                                        co2_ppm=600.0, is_day=False, global_radiation_w_m2=0.0)
                state.header.stamp.sec = seconds
                states.publish(state)

            new_state(1_000)
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
            assert wait_until(lambda: client.models.list().data, 30)
            model = client.models.list().data[0].id
            asked = client.chat.completions.create(
                model=model, max_tokens=48, tools=function_tools(), tool_choice="required",
                messages=[{"role": "user", "content": "The greenhouse is at 12 C at night, the heating set-point "
                                                      "is 17 C. Set the heating."}])
            calls = [call.model_dump() for call in asked.choices[0].message.tool_calls]
            assert asked.choices[0].finish_reason == "tool_calls" and len(calls) == 1
            (reply,) = tools.run(calls)
            result = json.loads(reply["content"])
            assert reply["tool_call_id"] == calls[0]["id"] and result["decided_by"] == "agent", result
            assert result["verdict"] in ("accepted", "clamped") and set(result["actuators"]) >= {"heating", "vent"}
            # the probe's own subscription hears the command in the executor thread, maybe after run() returned
            assert wait_until(lambda: any(c.controller == "agent" for c in commands), 5)
            decided = [c for c in commands if c.controller == "agent"]
            assert len(decided) == 1 and decided[0].header.stamp.sec == 1_000
            (asked_for,) = [s for s in decided[0].setpoints if math.isfinite(s.value)]  # one actuator proposed
            assert asked_for.name in result["proposed"]

            _hostile_calls_propose_nothing(tools, new_state, commands)
    finally:
        outputs = "".join(stop(process) for process in processes)
    assert "Traceback" not in outputs, outputs[max(0, outputs.find("Traceback") - 2000):][:6000]  # the traceback, if any


def _hostile_calls_propose_nothing(tools, new_state, commands) -> None:
    """A value out of range, an unknown tool, arguments that are not JSON: an error each, nothing proposed; then
    the supervisor serves on, one proposal per state."""
    from helpers.ros import wait_until

    new_state(1_300)
    assert wait_until(lambda: tools.state_stamp == 1_300, 10)
    for call, words in (({"name": "set_heating", "arguments": '{"value": 250}'}, "outside 0-100"),
                        ({"name": "open_airlock", "arguments": "{}"}, "unknown tool 'open_airlock'"),
                        ({"name": "set_vents", "arguments": "{not json"}, "is not a number")):
        (refused,) = tools.run([{"id": "c", "type": "function", "function": call}])
        assert words in json.loads(refused["content"])["error"], refused
    assert len([c for c in commands if c.controller == "agent"]) == 1
    (reply,) = tools.run([{"id": "c4", "function": {"name": "set_vents", "arguments": '{"value": 40}'}}])
    assert json.loads(reply["content"])["proposed"] == {"vent": 40.0}  # and the supervisor serves on
    (again,) = tools.run([{"id": "c5", "function": {"name": "set_vents", "arguments": '{"value": 60}'}}])
    assert "already has the agent's proposal" in json.loads(again["content"])["error"]  # one per state
