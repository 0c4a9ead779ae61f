"""Deciding in one process (no ROS): a controller proposes, the supervisor decides, and the supervisor's watchdog
hands the period to the baseline controller when the proposing controller is silent, late or invalid.

The same pieces run as ROS nodes (farm_controller, safety_supervisor); this path is for `--in-process` runs, the
continual-learning evaluation and tests.
"""
from __future__ import annotations

import collections
import copy
import json
import time
from typing import Callable

from tango2_ros.core.runtime.llm import ChatTurn
from tango2_ros.core.runtime.schema import compile_schema
from tango2_ros.core.shadow import PROMOTE, WATCH, ShadowGate, ShadowScore
from tango2_ros.sdf.controllers import BaselineController, Observation
from tango2_ros.sdf.crops import CropPreset
from tango2_ros.sdf.greenhouse import Climate
from tango2_ros.sdf.lam import ANSWER_TOKENS, LamError, answer_schema, parse_answer, prompt
from tango2_ros.sdf.simulation import Step, observation
from tango2_ros.sdf.shadowing import judge
from tango2_ros.sdf.supervisor import Conditions, SafetySupervisor, SupervisorLimits
from tango2_ros.sdf.watchdog import Watchdog

FALLBACK = "fallback"


class LamController:
    """The action model through the LLM runtime (llama.cpp, in process), constrained by the tools' JSON Schema.
    `propose` returns None when the model is late (over `budget_s`) or its answer is unusable (`last_error`)."""

    name = "lam"

    def __init__(self, runtime, preset: CropPreset, forecast: Callable[[], list[tuple[float, float]]],
                 budget_s: float = 30.0, max_tokens: int = ANSWER_TOKENS) -> None:
        self.runtime, self.preset, self.forecast, self.budget_s = runtime, preset, forecast, budget_s
        self.max_tokens = max_tokens
        self.schema = compile_schema(json.dumps(answer_schema()))
        self.history: collections.deque[Observation] = collections.deque(maxlen=6)
        self.actuators: dict[str, float] = {}
        self.last_rationale, self.last_error = "", ""
        self.model = runtime.identity.label

    def propose(self, observation: Observation) -> dict | None:
        text = prompt(self.preset, observation, list(self.history)[::2], self.forecast(), self.actuators)
        self.history.append(observation)
        started = time.monotonic()
        result = self.runtime.generate(self.runtime.chat_prompt([ChatTurn("user", text)]),
                                       max_tokens=self.max_tokens, schema=self.schema)
        if time.monotonic() - started > self.budget_s:
            self.last_error = f"late: answered after {time.monotonic() - started:.1f} s"
            return None
        try:
            proposal, self.last_rationale = parse_answer(result.text)
        except LamError as exc:
            self.last_error = str(exc)
            return None
        self.last_error = ""
        return proposal


class LocalDecider:
    """controller -> supervisor, in process; the `decide` function of `simulation.run`.

    With a `shadow` controller (a candidate model), every period the shadow proposes too, after the serving
    controller has decided (the serving path never waits for it): its proposal is reviewed by a copy of the
    supervisor as it was before this period, compared with the command applied, and never applied. The score
    promotes the shadow to serving controller once `gate` holds, or retires it with the reason."""

    def __init__(self, preset: CropPreset, controller, limits: SupervisorLimits = SupervisorLimits(),
                 shadow=None, gate: ShadowGate = ShadowGate()) -> None:
        self.controller, self.shadow, self.gate = controller, shadow, gate
        self.supervisor = SafetySupervisor(preset, limits)
        self.watchdog = Watchdog(preset, self.supervisor)
        self.score = ShadowScore(getattr(shadow, "model", "")) if shadow is not None else None

    def __call__(self, t_s: float, climate: Climate, seen: Observation) -> Step:
        self.watchdog.observe(seen)
        before = copy.deepcopy(self.supervisor) if self.shadow is not None else None
        conditions = Conditions(climate.air_temperature_c, climate.is_day, climate.global_radiation_w_m2)
        step = self._decide(self.controller, seen, conditions, t_s)
        if before is not None:
            self._shadow(before, seen, conditions, t_s, step.command)
        return step

    def _decide(self, controller, seen: Observation, conditions: Conditions, t_s: float) -> Step:
        proposal = controller.propose(seen)
        if proposal is None:  # nothing valid in time
            why = getattr(controller, "last_error", "") or "no proposal"
            _, verdict = self.watchdog.take_over(conditions, t_s)
            return Step(verdict.command, FALLBACK, [f"{controller.name}: {why}; baseline decides"] + verdict.reasons,
                        verdict.clamps, None, "", getattr(controller, "model", ""))
        verdict = self.supervisor.review(proposal, conditions, t_s)
        if hasattr(controller, "actuators"):
            controller.actuators = dict(verdict.command)
        return Step(verdict.command, verdict.verdict, verdict.reasons, verdict.clamps, proposal,
                    getattr(controller, "last_rationale", ""), getattr(controller, "model", ""))

    def _shadow(self, before: SafetySupervisor, seen: Observation, conditions: Conditions, t_s: float,
                applied: dict[str, float]) -> None:
        shadow = self.shadow
        started = time.monotonic()
        proposal = shadow.propose(seen)
        latency = time.monotonic() - started
        if hasattr(shadow, "actuators"):
            shadow.actuators = dict(applied)  # the shadow sees the plant as it really is
        judge(self.score, before, proposal, conditions, t_s, applied, latency)
        outcome = self.score.settle(self.gate)
        if outcome == PROMOTE:
            self.controller, self.shadow = shadow, None
        elif outcome != WATCH:
            self.shadow = None


def spin_up(greenhouse) -> None:
    """Run the greenhouse through its spin-up hours (t < 0) under the baseline, then zero its totals."""
    decider = LocalDecider(greenhouse.preset, BaselineController(greenhouse.preset))
    while greenhouse.t_s < -1e-6:
        climate = greenhouse.climate()
        greenhouse.apply(decider(greenhouse.t_s, climate, observation(greenhouse, climate)).command)
        greenhouse.advance()
    greenhouse.reset_totals()
