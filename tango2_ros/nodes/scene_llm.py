"""scene_llm: the situation around own ship in words, from the colreg decision's facts and the on-device LLM.

Every `period_s` (and when the decision's state changes) it takes the latest `sds/decision`, builds facts per
target (clock bearing, range from `sds/targets`, encounter, role, rules, CPA/TCPA) and asks the LLM
(`llm_action`, tango2_msgs/action/Generate) for a description under a JSON Schema built from those facts. What
the model says is checked against the facts (tango2_ros.sds.scene) and contradictions are replaced and listed
in `corrections`. In Korean, or when the model is unavailable, the text is built from the facts by templates
(the default model writes no usable Korean). Publishes `sds/scene` (SceneDescription). The model only
describes: decisions stay with the colreg node.
"""
from __future__ import annotations

import math
import time

from diagnostic_msgs.msg import KeyValue
from tango2_msgs.msg import NavigationDecision, OwnShipState, SceneDescription, TargetArray
from tango2_ros.nodes.base import OK, WARN, Tango2Node, run_node
from tango2_ros.ros.conversions.ship import ROLE_FROM_ROS
from tango2_ros.ros.llm_client import LlmAnswer, LlmClient
from tango2_ros.sds import scene
from tango2_ros.sds.geometry import NM_M


class SceneLlm(Tango2Node):
    def __init__(self) -> None:
        super().__init__("scene_llm")
        self.declare("period_s", 10.0, "Seconds between descriptions (and one at each change of the decision's state).",
                     min_value=0.5, max_value=3600.0)
        self.declare("language", "en", "en (model + fact check) or ko (built from the facts).")
        self.declare("llm_action", "/tango2/llm/generate", "Generate action of the llm_node; empty = templates only.")
        self.declare("max_tokens", 480, "Token budget of one description.", min_value=32, max_value=4096)
        self.declare("timeout_s", 60.0, "Give up on the model after this and describe from the facts.", min_value=1.0,
                     max_value=600.0)
        self._decision: NavigationDecision | None = None
        self._ranges: dict[str, float] = {}
        self._own = scene.OwnShipFact()
        self._last_state = ""
        self._next_due = 0.0
        self._busy_since: float | None = None
        self._client: LlmClient | None = None

    def executor_threads(self) -> int:
        return 1

    def configure(self) -> None:
        if self.param("language") not in ("en", "ko"):
            raise ValueError(f"language must be en or ko, not {self.param('language')!r}")
        self._publisher = self.create_publisher(SceneDescription, "sds/scene", 10)
        self.create_subscription(NavigationDecision, "sds/decision", self._on_decision, 10)
        self.create_subscription(TargetArray, "sds/targets", self._on_targets, 10)
        self.create_subscription(OwnShipState, "sds/own_ship", self._on_own_ship, 10)
        if self.param("llm_action"):
            self._client = LlmClient(self, self.param("llm_action"))
        self.create_timer(0.5, self._tick)
        self.set_status(WARN, "waiting for a decision")

    def _on_decision(self, message: NavigationDecision) -> None:
        if message.status == NavigationDecision.STATUS_NORMAL:
            self._decision = message

    def _on_targets(self, message: TargetArray) -> None:
        self._ranges = {t.id: t.range_m / NM_M for t in message.targets if math.isfinite(t.range_m)}

    def _on_own_ship(self, message: OwnShipState) -> None:
        self._own = scene.OwnShipFact(message.depth_m, message.wind_speed_kn, message.wind_from_deg)

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
        targets, action = self._facts(decision)
        started = time.monotonic()
        if self.param("language") == "ko" or self._client is None or not self._client.ready():
            reason = [] if self.param("language") == "ko" or self._client is None else \
                ["the language model is not reachable: described from the facts"]
            self._publish(scene.template_text(targets, action, self.param("language"), self._own), reason, targets,
                          action, "", started)
            return
        self._busy_since = now
        self._client.ask(lambda answer: self._on_answer(answer, targets, action, started),
                         timeout_s=self.param("timeout_s"), user=scene.prompt(targets, action, self._own),
                         schema=scene.schema(targets), max_tokens=self.param("max_tokens"))

    def _on_answer(self, answer: LlmAnswer, targets, action, started: float) -> None:
        self._busy_since = None
        if not answer.ok:
            self._publish(scene.template_text(targets, action, own=self._own), [f"{answer.error}: described from the "
                          "facts"], targets, action, answer.model, started)
            return
        text, corrections = scene.checked_text(answer.text, targets, action)
        self._publish(text, corrections, targets, action, answer.model, started)

    def _facts(self, decision: NavigationDecision) -> tuple[list[scene.TargetFact], scene.ActionFact]:
        facts = [scene.TargetFact(
            id=a.target_id, relative_bearing_deg=a.relative_bearing_deg, range_nm=self._ranges.get(a.target_id, math.nan),
            encounter=a.encounter_name, role=ROLE_FROM_ROS.get(a.role, "none"),
            rules=tuple(a.rules), cpa_nm=a.cpa_m / NM_M, tcpa_min=a.tcpa_s / 60.0) for a in decision.assessments]
        return scene.ranked(facts), scene.action_of(decision)

    def _publish(self, text: str, corrections: list[str], targets, action, model: str, started: float) -> None:
        message = SceneDescription(
            text=text, language=self.param("language"), corrections=corrections, model=model or "templates",
            facts=[KeyValue(key=k, value=v) for k, v in scene.facts_as_pairs(targets, action, self._own)],
            latency_s=time.monotonic() - started)
        message.header.stamp = self.get_clock().now().to_msg()
        self._publisher.publish(message)
        self.set_status(OK if not corrections else WARN, f"described {len(targets)} target(s)"
                        + (f", {len(corrections)} correction(s)" if corrections else ""), model=message.model)


def main(args: list[str] | None = None) -> int:
    return run_node(SceneLlm, args)


if __name__ == "__main__":
    raise SystemExit(main())
