"""safety_supervisor: the only publisher of `sdf/command`, so the only path from a controller to the actuators
(tango2_ros.sdf.supervisor: hard limits, rate limits, on/off durations, interlocks; deterministic).

For each `sdf/state` it waits up to `proposal_timeout_s` for a proposal on `sdf/proposal` stamped with that state
(from the `controller` it serves); the proposal is reviewed and the command published with the verdict and its
reasons. The watchdog: when the controller is silent or late, the built-in baseline controller proposes for that
state instead (published with controller "baseline" and the reason). Sensor silence for `stale_after_s`, or a
state whose air temperature is invalid, gives the safe state. `sdf/emergency_stop` (std_msgs/Bool, true = stop)
turns every output off until it is released. Counts on /diagnostics; swaps are held (`swap_hold`) while the
commands are not the controller's own. A candidate model in shadow proposes on `sdf/shadow_proposal`: each such
proposal is judged as this supervisor was before that period (tango2_ros.sdf.shadowing), never applied, and the
candidate's score (`shadow` on /diagnostics, JSON) is promoted or retired by the `shadow.*` gate. With
`decision_log_dir` every decided period is written to the farm's decision log (tango2_ros.sdf.decision_log) once
the next state shows its outcome: the continual-learning input, and what a fleet_agent sends to the fleet.
"""
from __future__ import annotations

import copy
import datetime
import json
import time
from pathlib import Path

from rclpy.time import Time
from std_msgs.msg import Bool

from tango2_msgs.msg import ActuatorCommand, GreenhouseState, WeatherForecast
from tango2_ros.core.shadow import SHADOW_KEY, ShadowGate
from tango2_ros.nodes.base import ERROR, OK, WARN, Tango2Node, run_node
from tango2_ros.ros.conversions.farm import (command_message, conditions_from_state, forecast_pairs,
                                             observation_from_state, proposal_from_message)
from tango2_ros.ros.conversions.stamps import stamp_to_seconds
from tango2_ros.sdf.crops import PRESETS
from tango2_ros.sdf.decision_log import DecisionLog
from tango2_ros.sdf.shadowing import ShadowDesk
from tango2_ros.sdf.supervisor import SafetySupervisor, SupervisorLimits, Verdict
from tango2_ros.sdf.watchdog import Watchdog


class SafetySupervisorNode(Tango2Node):
    def __init__(self) -> None:
        super().__init__("safety_supervisor")
        self.declare("crop", "tomato", "Crop preset: " + ", ".join(PRESETS) + ".")
        self.declare("controller", "lam", "Whose proposals are reviewed (the others are ignored).")
        self.declare("proposal_timeout_s", 30.0, "Wait this long for a proposal, then the baseline decides.",
                     min_value=0.01, max_value=3600.0)
        self.declare("stale_after_s", 180.0, "No sensor state for this long: safe state.", min_value=1.0,
                     max_value=86400.0)
        self.declare("utc_offset_h", 0.0, "Local time = stamp + this.", min_value=-14.0, max_value=14.0)
        self.declare("decision_log_dir", "", "Write the decision log (one JSON Lines file per local day) here; "
                     "empty = none.", read_only=True)
        self.declare_settings(SupervisorLimits)
        self.declare_settings(ShadowGate, "shadow.")
        self._pending: tuple | None = None  # (state, deadline)
        # a proposal for a state not yet heard: the state and the proposal made from it travel different paths,
        # so the proposal can come first; it waits for its state instead of being dropped
        self._early_proposal: ActuatorCommand | None = None
        self._last_state_wall = time.monotonic()
        self._last_stamp_s = 0.0
        self._sequence = 0
        self._decision_log: DecisionLog | None = None
        self._forecast: WeatherForecast | None = None
        self._actuators: dict[str, float] = {}  # what the last command set
        self._counts = {"states": 0, "proposals": 0, "accepted": 0, "clamped": 0, "rejected": 0, "fallbacks": 0,
                        "safe_states": 0, "ignored_proposals": 0}

    def executor_threads(self) -> int:
        return 1

    def configure(self) -> None:
        crop = self.param("crop")
        if crop not in PRESETS:
            raise ValueError(f"crop {crop!r}: use one of {', '.join(PRESETS)}")
        self._supervisor = SafetySupervisor(PRESETS[crop], self.settings(SupervisorLimits))
        self._shadows = ShadowDesk(self.settings(ShadowGate, "shadow."))
        self._watchdog = Watchdog(PRESETS[crop], self._supervisor)
        self._commands = self.create_publisher(ActuatorCommand, "sdf/command", 10)
        self.create_subscription(GreenhouseState, "sdf/state", self._on_state, 10)
        self.create_subscription(ActuatorCommand, "sdf/proposal", self._on_proposal, 10)
        self.create_subscription(ActuatorCommand, "sdf/shadow_proposal", self._on_shadow_proposal, 10)
        if self.param("decision_log_dir"):
            self._decision_log = DecisionLog(Path(self.param("decision_log_dir")), PRESETS[crop])
            self.create_subscription(WeatherForecast, "sdf/forecast", lambda m: setattr(self, "_forecast", m), 10)
        # volatile, so any publisher is heard (a transient-local subscription would silently ignore volatile ones);
        # publish the stop transient-local (latched) and a restarted supervisor hears it too
        self.create_subscription(Bool, "sdf/emergency_stop", self._on_emergency_stop, 10)
        self.create_timer(0.05, self._on_timer)
        self.set_status(WARN, "waiting for the greenhouse state")

    def _on_emergency_stop(self, message: Bool) -> None:
        self._supervisor.emergency_stop = bool(message.data)
        if message.data:
            self._decide(None, self._pending[0] if self._pending else None, "supervisor")

    def _on_state(self, state: GreenhouseState) -> None:
        if self._pending is not None:  # the previous state got no proposal in time and was not yet handled
            self._fallback("a newer state arrived")
        self._counts["states"] += 1
        self._last_state_wall, self._last_stamp_s = time.monotonic(), stamp_to_seconds(state.header.stamp)
        if conditions_from_state(state) is None:
            self._decide(None, state, "supervisor")
            return
        seen = observation_from_state(state, self.param("utc_offset_h"))
        self._watchdog.observe(seen)
        if self._decision_log is not None and seen is not None:
            self._decision_log.observed(seen)  # the outcome of the period before
        self._pending = (state, time.monotonic() + self.param("proposal_timeout_s"))
        early, self._early_proposal = self._early_proposal, None
        if early is not None:
            self._on_proposal(early)

    def _on_proposal(self, message: ActuatorCommand) -> None:
        pending = self._pending
        stamp_s = stamp_to_seconds(message.header.stamp)
        if message.controller != self.param("controller"):
            self._counts["ignored_proposals"] += 1  # another controller's
            return
        if pending is None or abs(stamp_s - stamp_to_seconds(pending[0].header.stamp)) > 1e-6:
            if stamp_s > self._last_stamp_s:
                self._early_proposal = message  # ahead of its state
            else:
                self._counts["ignored_proposals"] += 1  # for a state already decided
            return
        self._counts["proposals"] += 1
        self._pending = None
        self._decide(proposal_from_message(message), pending[0], message.controller, message.model,
                     message.rationale)

    def _on_shadow_proposal(self, message: ActuatorCommand) -> None:
        """A candidate model's proposal (never applied): judged as this supervisor was before that period."""
        proposal = proposal_from_message(message) if message.setpoints else None  # none: unusable or late
        self._shadows.gate = self.settings(ShadowGate, "shadow.")  # `tango2 models shadow --samples` sets it live
        score = self._shadows.review(message.model, stamp_to_seconds(message.header.stamp), proposal,
                                     time.monotonic())
        if score is not None:
            self.set_values(**{SHADOW_KEY: json.dumps(score.as_dict())})

    def _on_timer(self) -> None:
        if self._pending is not None and time.monotonic() > self._pending[1]:
            self._fallback(f"no proposal from {self.param('controller')} within {self.param('proposal_timeout_s')} s")
        silent = time.monotonic() - self._last_state_wall
        if silent > self.param("stale_after_s"):
            self._last_state_wall = time.monotonic()  # one safe-state command per stale period
            self._decide(None, None, "supervisor", stale_for_s=silent)

    def _fallback(self, why: str) -> None:
        state = self._pending[0]
        self._pending = None
        self._counts["fallbacks"] += 1
        before = copy.deepcopy(self._supervisor)
        proposal, verdict = self._watchdog.take_over(conditions_from_state(state), stamp_to_seconds(state.header.stamp))
        self._publish(verdict, before, proposal, state, "baseline",
                      rationale=f"watchdog: {why}; the baseline controller decides")

    def _decide(self, proposal: dict | None, state: GreenhouseState | None, controller: str, model: str = "",
                rationale: str = "", stale_for_s: float = 0.0) -> None:
        conditions = conditions_from_state(state) if state is not None else None
        now_s = stamp_to_seconds(state.header.stamp) if state is not None else self._last_stamp_s + stale_for_s
        before = copy.deepcopy(self._supervisor)  # what a shadow's proposal for this period is judged by
        verdict = self._supervisor.review(proposal, conditions, now_s)
        if state is None and not self._supervisor.emergency_stop:
            verdict.reasons.insert(0, f"no greenhouse state for {stale_for_s:.0f} s")
        self._publish(verdict, before, proposal, state, controller, model, rationale, now_s)

    def _publish(self, verdict: Verdict, before: SafetySupervisor, proposal: dict | None,
                 state: GreenhouseState | None, controller: str, model: str = "", rationale: str = "",
                 now_s: float = 0.0) -> None:
        """Publish a decided command; `before` (the supervisor before this decision) judges a shadow's proposal
        for the same state."""
        conditions = conditions_from_state(state) if state is not None else None
        if state is not None:
            self._shadows.decided(stamp_to_seconds(state.header.stamp), before, conditions, verdict.command,
                                  self._last_state_wall)
        if conditions is None or self._supervisor.emergency_stop:
            self._counts["safe_states"] += 1
        self._counts[verdict.verdict] += 1
        self._sequence += 1
        # a command without a state is stamped in the states' time base (the last stamp plus the silence), so the
        # actuator side's "never older than what I hold" check keeps working in simulated time too
        stamp = state.header.stamp if state is not None else Time(nanoseconds=round(now_s * 1e9)).to_msg()
        self._commands.publish(command_message(verdict.command, proposal, verdict.verdict, verdict.reasons,
                                               controller, model, stamp, self._sequence, rationale))
        if self._decision_log is not None and state is not None:
            self._log_decision(state, proposal, verdict, controller, model, rationale)
        self._actuators = dict(verdict.command)
        if self._supervisor.emergency_stop:
            level, text = ERROR, "EMERGENCY STOP: every output off"
        elif conditions is None:
            level, text = WARN, "safe state: no valid greenhouse state"
        else:
            level, text = (OK if controller == self.param("controller") else WARN), f"commands from {controller}"
        self.set_status(level, text, **self._counts, last_reasons="; ".join(verdict.reasons)[:300])
        self.hold_swaps(text if level != OK else "")  # no model changes in an emergency stop, safe state or fallback


    def _log_decision(self, state: GreenhouseState, proposal: dict | None, verdict: Verdict, controller: str,
                      model: str, rationale: str) -> None:
        seen = observation_from_state(state, self.param("utc_offset_h"))
        if seen is None:  # readings a controller needs are invalid: nothing a model could learn from
            return
        t_s = stamp_to_seconds(state.header.stamp)
        moment = datetime.datetime.fromtimestamp(t_s, datetime.timezone.utc) + \
            datetime.timedelta(hours=self.param("utc_offset_h"))
        self._decision_log.decided(t_s, moment, seen, self._actuators, forecast_pairs(self._forecast),
                                   controller=controller, model=model, proposal=proposal, rationale=rationale,
                                   verdict=verdict.verdict, reasons=verdict.reasons, command=verdict.command)
        self._counts["decisions_logged"] = self._decision_log.written


def main(args: list[str] | None = None) -> int:
    return run_node(SafetySupervisorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
