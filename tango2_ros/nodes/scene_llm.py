"""scene_llm: the situation around own ship in words, and answers to the watch officer's questions, from the
colreg decision's facts and the on-device LLM.

Every `period_s` (and when the decision's state changes) it takes the latest `sds/decision`, builds facts per
target (clock bearing, range from `sds/targets`, encounter, role, rules, CPA/TCPA) and asks the LLM
(`llm_action`, tango2_msgs/action/Generate) for a description in `language` (en, ko, or both as "en,ko": one
message per language, for crews that read both) under a JSON Schema built from those facts. What the model says
is checked against the facts (tango2_ros.sds.scene) and contradictions are replaced and listed in `corrections`;
without a model the text is built from the facts. Publishes `sds/scene` (SceneDescription). The action `sds/ask`
(AskBridge) answers a question about the same picture, checked the same way (tango2_ros.sds.questions). With
`shadow_llm_action` a candidate describer in an llm_node of its own is asked after each description is out
(tango2_ros.sds.shadowing): its raw description is judged by the fact check, never published, and its score
(`shadow` on /diagnostics) is promoted or retired by the `shadow.*` gate, which a shadow slot of the model manager
follows. The model only describes and answers: the colreg node decides.
"""
from __future__ import annotations

import math
import time

from diagnostic_msgs.msg import KeyValue
from rclpy.action import ActionServer

from tango2_msgs.action import AskBridge
from tango2_msgs.msg import NavigationDecision, OwnShipState, SceneDescription, TargetArray
from tango2_ros.core.shadow import ShadowGate
from tango2_ros.errors import UserError
from tango2_ros.nodes.base import OK, WARN, Tango2Node, run_node
from tango2_ros.ros.conversions.ship import scene_facts_from_ros
from tango2_ros.ros.llm_client import LlmClient, ShadowCandidate
from tango2_ros.sds import questions, scene
from tango2_ros.sds.geometry import NM_M
from tango2_ros.sds.shadowing import judge_description


class SceneLlm(Tango2Node):
    def __init__(self) -> None:
        super().__init__("scene_llm")
        self.declare("period_s", 10.0, "Seconds between descriptions (and one at each change of the decision's state).",
                     min_value=0.5, max_value=3600.0)
        self.declare("language", "en", "Language of the descriptions: en, ko, or en,ko for one in each.")
        self.declare("llm_action", "/tango2/llm/generate", "Generate action of the llm_node; empty = templates only.")
        self.declare("max_tokens", 720, "Token budget of one description.", min_value=32, max_value=4096)
        self.declare("timeout_s", 60.0, "Give up on the model after this and describe from the facts.", min_value=1.0,
                     max_value=600.0)
        self.declare("shadow_llm_action", "", "Generate action of a candidate describer in shadow, asked after each "
                     "description is out (in the first language); its descriptions are judged, never published. "
                     "Empty = none.")
        self.declare_settings(ShadowGate, "shadow.")
        self._decision: NavigationDecision | None = None
        self._ranges: dict[str, float] = {}
        self._own = scene.OwnShipFact()
        self._last_state = ""
        self._next_due = 0.0
        self._busy_since: float | None = None
        self._client: LlmClient | None = None
        self._shadow: ShadowCandidate | None = None
        self._ask_server: ActionServer | None = None

    def executor_threads(self) -> int:
        return 2

    def configure(self) -> None:
        self._languages = [language.strip() for language in self.param("language").split(",")]
        if not all(language in scene.LANGUAGE_NAMES for language in self._languages):
            raise ValueError(f"language must be one of {', '.join(scene.LANGUAGE_NAMES)} or several of them separated "
                             f"by commas, not {self.param('language')!r}")
        self._publisher = self.create_publisher(SceneDescription, "sds/scene", 10)
        self.create_subscription(NavigationDecision, "sds/decision", self._on_decision, 10)
        self.create_subscription(TargetArray, "sds/targets", self._on_targets, 10)
        self.create_subscription(OwnShipState, "sds/own_ship", self._on_own_ship, 10)
        if self.param("llm_action"):
            self._client = LlmClient(self, self.param("llm_action"), callback_group=self.coroutine_group)
        if self.param("shadow_llm_action"):
            self._shadow = ShadowCandidate(self, self.param("shadow_llm_action"), judge_description,
                                           timeout_s=self.param("timeout_s"), max_tokens=self.param("max_tokens"))
        self._ask_server = ActionServer(self, AskBridge, "sds/ask", execute_callback=self._answer,
                                        callback_group=self.coroutine_group)
        self.create_timer(0.5, self._tick)
        self.set_status(WARN, "waiting for a decision")

    def _on_decision(self, message: NavigationDecision) -> None:
        if message.status == NavigationDecision.STATUS_NORMAL:
            self._decision = message

    def _on_targets(self, message: TargetArray) -> None:
        self._ranges = {t.id: t.range_m / NM_M for t in message.targets if math.isfinite(t.range_m)}

    def _on_own_ship(self, message: OwnShipState) -> None:
        self._own = scene.OwnShipFact(message.depth_m, message.wind_speed_kn, message.wind_from_deg)

    def _ask(self, max_tokens: int) -> scene.Ask | None:
        """The model as the sds packages want it, or None when it is not configured or not reachable."""
        return self._client.answering(timeout_s=self.param("timeout_s"), max_tokens=max_tokens) if self._client else None

    def _tick(self) -> None:
        decision = self._decision
        if decision is None:
            return
        now = time.monotonic()
        if self._busy_since is not None:
            if now - self._busy_since < self.param("timeout_s"):
                return
            self._busy_since = None  # the model never answered: fall through to the templates next time
        if now < self._next_due and decision.state == self._last_state:
            return
        self._next_due, self._last_state = now + self.param("period_s"), decision.state
        targets, action = scene_facts_from_ros(decision, self._ranges)
        ask = self._ask(self.param("max_tokens"))
        self._busy_since = now
        if self._shadow is not None:
            self._shadow.preempt()  # the serving describer goes first
        if self._client is not None and ask is None:
            self._describe(targets, action, None, ["the language model is not reachable: described from the facts"])
            return
        self.in_background(lambda: self._describe(targets, action, ask, []))

    def _describe(self, targets, action, ask, reasons: list[str]) -> None:
        for language in self._languages:
            started = time.monotonic()
            described = scene.describe(targets, action, language, ask, self._own)
            message = SceneDescription(
                text=described.text, language=language, corrections=reasons + described.corrections,
                model=described.model, facts=self._fact_pairs(targets, action), latency_s=time.monotonic() - started)
            message.header.stamp = self.get_clock().now().to_msg()
            self._publisher.publish(message)
        self._busy_since = None
        if self._shadow is not None and ask is not None:
            first = self._languages[0]
            self._shadow.ask(scene.prompt(targets, action, self._own, first), scene.schema(targets),
                             (targets, action, first))
        self.set_status(OK if not message.corrections else WARN, f"described {len(targets)} target(s)"
                        + (f", {len(message.corrections)} correction(s)" if message.corrections else ""),
                        model=message.model)

    async def _answer(self, goal_handle) -> AskBridge.Result:
        """One question about the present picture, answered in a thread of its own (questions may overlap); one
        that cannot be asked is answered with the reason."""
        goal_handle.publish_feedback(AskBridge.Feedback(stage="asking"))
        result = await self.in_background(lambda: self._result(goal_handle.request))
        goal_handle.succeed()
        return result

    def _result(self, goal: AskBridge.Goal) -> AskBridge.Result:
        started = time.monotonic()
        if self._decision is None:
            return AskBridge.Result(success=False, error="no picture yet: the colreg node has not decided")
        targets, action = scene_facts_from_ros(self._decision, self._ranges)
        try:
            answered = questions.answer(goal.question, goal.language or "en", targets, action, self._ask(256),
                                        self._own)
        except UserError as exc:
            return AskBridge.Result(success=False, error=str(exc), facts=self._fact_pairs(targets, action))
        return AskBridge.Result(
            success=True, answer=answered.answer, raw_answer=answered.raw_answer, ids=answered.ids,
            kind=answered.question.kind, facts=self._fact_pairs(targets, action), corrections=answered.corrections,
            model=answered.model, latency_s=time.monotonic() - started)

    def _fact_pairs(self, targets, action) -> list[KeyValue]:
        return [KeyValue(key=k, value=v) for k, v in scene.facts_as_pairs(targets, action, self._own)]

    def cleanup(self) -> None:
        for entity in (self._ask_server, self._shadow):
            if entity is not None:
                entity.destroy()
        self._ask_server = self._shadow = None


def main(args: list[str] | None = None) -> int:
    return run_node(SceneLlm, args)


if __name__ == "__main__":
    raise SystemExit(main())
