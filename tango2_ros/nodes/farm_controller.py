"""farm_controller: proposes actuator commands for every greenhouse state: the large action model (`lam`, the LLM
runtime's `Generate` action with the tools' JSON Schema), the `baseline` rules or the adversarial `random` one.

Subscribes `sdf/state`, `sdf/forecast` and `sdf/command` (the actuators as the supervisor last set them, for the
model's prompt); publishes `ActuatorCommand` proposals (verdict PENDING) on `sdf/proposal`, stamped with the state
they answer. It never reaches an actuator: only the safety supervisor publishes `sdf/command`. A model answer that
cannot be used (invalid JSON, unknown tool, out-of-range value, refused or failed request) is counted on
/diagnostics with the reason, and nothing is proposed for that state; the supervisor's watchdog then hands the
period to the baseline. With `shadow_llm_action` (a candidate model in an llm_node of its own) the candidate is
asked the same question after the serving model has answered (and cancelled when the next state comes first:
tango2_ros.ros.llm_client.ShadowQuestions), and its proposal goes to `sdf/shadow_proposal`, where the supervisor
judges it and never applies it (an unusable or missing answer goes there too, without set-points).
"""
from __future__ import annotations

import collections

from tango2_msgs.msg import ActuatorCommand, GreenhouseState, WeatherForecast
from tango2_ros.nodes.base import OK, WARN, Tango2Node, run_node
from tango2_ros.ros.conversions.farm import forecast_pairs, observation_from_state, proposal_message
from tango2_ros.ros.llm_client import LlmAnswer, LlmClient, ShadowQuestions
from tango2_ros.sdf.controllers import BaselineController, RandomController
from tango2_ros.sdf.crops import PRESETS
from tango2_ros.sdf.lam import ANSWER_TOKENS, LamError, answer_schema, parse_answer, prompt

CONTROLLERS = ("lam", "baseline", "random")


class FarmController(Tango2Node):
    def __init__(self) -> None:
        super().__init__("farm_controller")
        self.declare("controller", "lam", "lam, baseline or random.")
        self.declare("crop", "tomato", "Crop preset: " + ", ".join(PRESETS) + ".")
        self.declare("llm_action", "/tango2/llm/generate", "Generate action of the llm_node (for lam).")
        self.declare("max_tokens", ANSWER_TOKENS, "Longest model answer.", min_value=16, max_value=2048)
        self.declare("timeout_s", 60.0, "Give up on the model's answer after this (the supervisor's watchdog then "
                     "keeps the greenhouse safe).", min_value=1.0, max_value=3600.0)
        self.declare("utc_offset_h", 0.0, "Local time = stamp + this (hour of day for the rules).", min_value=-14.0,
                     max_value=14.0)
        self.declare("random_seed", 0, "Seed of the random controller.", min_value=0, max_value=2**31 - 1)
        self.declare("shadow_llm_action", "", "Generate action of a candidate model in shadow (lam only), asked after "
                     "the serving model; empty = none.")
        self._sequence = 0
        self._counts = {"states": 0, "proposals": 0, "unusable_answers": 0, "no_observation": 0}
        self._history: collections.deque = collections.deque(maxlen=6)
        self._forecast: WeatherForecast | None = None
        self._actuators: dict[str, float] = {}
        self._shadow_model = ""

    def executor_threads(self) -> int:
        return 1

    def configure(self) -> None:
        kind, crop = self.param("controller"), self.param("crop")
        if kind not in CONTROLLERS:
            raise ValueError(f"controller {kind!r}: use one of {', '.join(CONTROLLERS)}")
        if crop not in PRESETS:
            raise ValueError(f"crop {crop!r}: use one of {', '.join(PRESETS)}")
        self._preset = PRESETS[crop]
        self._rules = {"baseline": lambda: BaselineController(self._preset),
                       "random": lambda: RandomController(self.param("random_seed"))}.get(kind, lambda: None)()
        self._llm = LlmClient(self, self.param("llm_action")) if kind == "lam" else None
        shadow = self.param("shadow_llm_action")
        self._shadow = ShadowQuestions(LlmClient(self, shadow), self._on_shadow_answer, timeout_s=self.param(
            "timeout_s"), max_tokens=self.param("max_tokens")) if kind == "lam" and shadow else None
        self._shadow_model = shadow  # until the candidate answers with its name
        self._proposals = self.create_publisher(ActuatorCommand, "sdf/proposal", 10)
        self._shadow_proposals = self.create_publisher(ActuatorCommand, "sdf/shadow_proposal", 10)
        self.create_subscription(GreenhouseState, "sdf/state", self._on_state, 10)
        self.create_subscription(WeatherForecast, "sdf/forecast", lambda m: setattr(self, "_forecast", m), 10)
        self.create_subscription(ActuatorCommand, "sdf/command", self._on_command, 10)
        self.set_status(OK, f"{kind} controller for {crop}")

    def _on_command(self, message: ActuatorCommand) -> None:
        self._actuators = {s.name: float(s.approved_value) for s in message.setpoints}

    def _on_state(self, state: GreenhouseState) -> None:
        if self._shadow is not None:
            self._shadow.preempt()  # the serving model goes first
        self._counts["states"] += 1
        seen = observation_from_state(state, self.param("utc_offset_h"))
        if seen is None:
            self._counts["no_observation"] += 1
            self.set_values(**self._counts)
            return  # the supervisor puts the greenhouse in its safe state
        if self._rules is not None:
            self._publish(self._rules.propose(seen), "", "", state.header.stamp)
            return
        text = prompt(self._preset, seen, list(self._history)[::2], forecast_pairs(self._forecast), self._actuators)
        self._history.append(seen)
        if not self._llm.ready():
            self._unusable(f"{self.param('llm_action')} is not available")
            return
        self._llm.ask(lambda answer: self._on_answer(answer, state.header.stamp, text),
                      timeout_s=self.param("timeout_s"), user=text, schema=answer_schema(),
                      max_tokens=self.param("max_tokens"))

    def _on_answer(self, answer: LlmAnswer, stamp, text: str) -> None:
        try:
            proposal, rationale = _usable(answer)
        except LamError as exc:
            self._unusable(str(exc))
        else:
            self._publish(proposal, rationale, answer.model, stamp)
        if self._shadow is not None:
            self._shadow.ask(text, answer_schema(), stamp)

    def _on_shadow_answer(self, answer: LlmAnswer, stamp) -> None:
        """To the supervisor, under the candidate's name (the last it answered with, for an answer that failed)."""
        self._shadow_model = answer.model or self._shadow_model
        try:
            proposal, rationale = _usable(answer)
            reasons = []
        except LamError as exc:
            proposal, rationale, reasons = {}, "", [f"unusable: {exc}"[:300]]
        message = proposal_message(proposal, self.param("controller"), self._shadow_model, rationale, stamp,
                                   self._sequence)
        message.reasons = reasons
        self._shadow_proposals.publish(message)

    def _unusable(self, reason: str) -> None:
        self._counts["unusable_answers"] += 1
        self.set_status(WARN, "the last model answer was unusable: the supervisor falls back", **self._counts,
                        last_reason=reason[:200])

    def _publish(self, proposal: dict, rationale: str, model: str, stamp) -> None:
        self._sequence += 1
        self._proposals.publish(proposal_message(proposal, self.param("controller"), model, rationale, stamp,
                                                 self._sequence))
        self._counts["proposals"] += 1
        self.set_status(OK, f"{self.param('controller')} controller proposing", **self._counts)


def _usable(answer: LlmAnswer) -> tuple[dict, str]:
    """The proposal and rationale of a model's answer; LamError with the reason when there is none to use."""
    if not answer.ok:
        raise LamError(answer.error)
    return parse_answer(answer.text)


def main(args: list[str] | None = None) -> int:
    return run_node(FarmController, args)


if __name__ == "__main__":
    raise SystemExit(main())
