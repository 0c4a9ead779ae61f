"""An outside agent's tool calls, run on the ROS graph: the domains' tools in the OpenAI function form and what a
call does there.

An agent (LangChain, RAI, anything that speaks the OpenAI-style API of llm_api) gets `definitions()` as its
`tools`, lets a model choose calls and hands them to `run()`, which returns the `tool` messages to send back.
Nothing an agent asks for reaches an actuator or the ship without the deterministic code deciding:
- the farm's actuator tools (tango2_ros.sdf.lam.function_tools) become one proposal for the newest greenhouse
  state on `sdf/proposal`, as controller `agent` (the safety supervisor hears only the controller it is set to,
  `controller:=agent`), and the result is the supervisor's verdict with the values the actuators get;
- `ask_bridge` (tango2_ros.sds.questions.ASK_TOOL) is a goal of the bridge assistant's `sds/ask` action, and the
  result is its checked answer.
A call that cannot be run (unknown tool, arguments that are not JSON, a value out of range, no state yet, no
answer in time) gets a result with an `error`, and nothing is proposed.
"""
from __future__ import annotations

import collections
import json
import threading
import time

from rclpy.action import ActionClient

from tango2_msgs.action import AskBridge
from tango2_msgs.msg import ActuatorCommand, GreenhouseState
from tango2_ros.ros.actions import goal_result, threaded_wait
from tango2_ros.ros.conversions.farm import VERDICT_FROM_ROS, proposal_message
from tango2_ros.ros.conversions.stamps import stamp_to_seconds
from tango2_ros.sdf.lam import TOOLS, LamError, function_tools, proposal_of_calls
from tango2_ros.sds.questions import ASK_TOOL

CONTROLLER = "agent"


class AgentTools:
    """Runs tool calls for one node that an executor spins in another thread (run() blocks while it waits)."""

    def __init__(self, node, namespace: str = "/tango2", timeout_s: float = 60.0) -> None:
        prefix = namespace.rstrip("/")
        self._timeout_s = timeout_s
        self._state: GreenhouseState | None = None
        self._commands: collections.deque = collections.deque(maxlen=50)
        self._sequence = 0
        self._proposed_stamp: float | None = None  # the supervisor takes one proposal per state
        self._changed = threading.Condition()
        node.create_subscription(GreenhouseState, f"{prefix}/sdf/state", self._on_state, 10)
        node.create_subscription(ActuatorCommand, f"{prefix}/sdf/command", self._on_command, 10)
        self._proposals = node.create_publisher(ActuatorCommand, f"{prefix}/sdf/proposal", 10)
        self._ask = ActionClient(node, AskBridge, f"{prefix}/sds/ask")

    @property
    def state_stamp(self) -> float | None:
        """Stamp (s) of the newest greenhouse state heard: what the next farm proposal answers."""
        state = self._state
        return stamp_to_seconds(state.header.stamp) if state is not None else None

    @staticmethod
    def definitions() -> list[dict]:
        return [*function_tools(), ASK_TOOL]

    def run(self, tool_calls: list[dict]) -> list[dict]:
        """The `tool` messages answering `tool_calls` (the API's form: id, function.name, function.arguments).
        The farm calls of one turn are one proposal (an actuator left out keeps its position)."""
        parsed = [(call.get("id", "") if isinstance(call, dict) else "", *_name_and_arguments(call)) for call in tool_calls]
        farm = [(name, arguments) for _, name, arguments in parsed if name in TOOLS]
        farm_result = self._propose(farm) if farm else None
        results = []
        for call_id, name, arguments in parsed:
            if name in TOOLS:
                result = farm_result
            elif name == ASK_TOOL["function"]["name"]:
                result = self._ask_bridge(arguments)
            else:
                known = ", ".join(t["function"]["name"] for t in self.definitions())
                result = {"error": f"unknown tool {name!r}: use one of {known}"}
            results.append({"role": "tool", "tool_call_id": call_id, "content": json.dumps(result, ensure_ascii=False)})
        return results

    def _on_state(self, state: GreenhouseState) -> None:
        with self._changed:
            self._state = state
            self._changed.notify_all()

    def _on_command(self, command: ActuatorCommand) -> None:
        with self._changed:
            self._commands.append(command)
            self._changed.notify_all()

    def _propose(self, calls: list[tuple[str, object]]) -> dict:
        try:
            proposal = proposal_of_calls(calls)
        except LamError as exc:
            return {"error": f"nothing proposed: {exc}"}
        with self._changed:
            if not self._changed.wait_for(lambda: self._state is not None, self._timeout_s):
                return {"error": "nothing proposed: no greenhouse state yet"}
            state = self._state
        stamp = stamp_to_seconds(state.header.stamp)
        if stamp == self._proposed_stamp:
            return {"error": "nothing proposed: this greenhouse state already has the agent's proposal; "
                             "propose again for the next state"}
        self._proposed_stamp = stamp
        self._sequence += 1
        self._proposals.publish(proposal_message(proposal, CONTROLLER, "", "an agent's tool calls", state.header.stamp,
                                                 self._sequence))

        def decided() -> ActuatorCommand | None:
            return next((c for c in reversed(self._commands) if abs(stamp_to_seconds(c.header.stamp) - stamp) < 1e-6),
                        None)

        with self._changed:
            if not self._changed.wait_for(lambda: decided() is not None, self._timeout_s):
                return {"error": f"the safety supervisor decided nothing within {self._timeout_s:g} s"}
            command = decided()
        return {"proposed": proposal, "decided_by": command.controller,
                "verdict": VERDICT_FROM_ROS.get(command.verdict, "rejected"), "reasons": list(command.reasons),
                "actuators": {s.name: round(float(s.approved_value), 1) for s in command.setpoints}}

    def _ask_bridge(self, arguments) -> dict:
        if not isinstance(arguments, dict) or not isinstance(arguments.get("question"), str):
            return {"error": "ask_bridge needs {\"question\": \"...\"}"}
        if not self._ask.wait_for_server(timeout_sec=min(self._timeout_s, 10.0)):
            return {"error": "the bridge assistant (sds/ask) is not running"}
        goal = AskBridge.Goal(question=arguments["question"], language=str(arguments.get("language", "en")))
        sent = self._ask.send_goal_async(goal)
        deadline = time.monotonic() + self._timeout_s
        if not threaded_wait(sent, self._timeout_s) or not sent.result().accepted:
            return {"error": "the bridge assistant did not take the question"}
        response = goal_result(sent.result(), threaded_wait, max(0.0, deadline - time.monotonic()))
        if response is None:
            return {"error": f"no answer within {self._timeout_s:g} s"}
        answer = response.result
        if not answer.success:
            return {"error": answer.error}
        return {"answer": answer.answer, "ids": list(answer.ids), "kind": answer.kind,
                "corrections": list(answer.corrections), "model": answer.model}


def _name_and_arguments(call) -> tuple[str, object]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        return "", None
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            arguments = None
    return str(function.get("name", "")), arguments
