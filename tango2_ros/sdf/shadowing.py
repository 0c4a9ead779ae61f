"""A candidate action model in shadow on the farm: its proposal for a period is reviewed by the safety supervisor as
the supervisor was before that period's decision, compared with the command applied, checked raw against the
interlocks, and never applied (tango2_ros.core.shadow keeps the score and the gate).

The in-process loop (`deciding.LocalDecider`) and the safety_supervisor node (proposals of a shadow on
`sdf/shadow_proposal`) judge through the same `judge` function; the node keeps the last periods in `ShadowDesk`
because a shadow answers after the serving controller, sometimes after the next state has come.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from tango2_ros.core.shadow import ShadowGate, ShadowScore, open_score
from tango2_ros.sdf.supervisor import ACTUATORS, CLAMPED, REJECTED, Conditions, SafetySupervisor, broken_interlocks

AGREE_WITHIN_PCT = 10.0  # a shadow's command agrees when every output is this close to the one applied
PERIODS_KEPT = 16


def judge(score: ShadowScore, before: SafetySupervisor, proposal: dict | None, conditions: Conditions, t_s: float,
          applied: dict[str, float], latency_s: float) -> None:
    """Record one shadow answer (None: none usable in time). `before` is consumed (reviewing changes it)."""
    if proposal is None:
        score.record(False, latency_s)
        return
    unchecked = {**before.current}
    verdict = before.review(proposal, conditions, t_s)
    unchecked.update({name: float(value) for name, value in proposal.items() if name in ACTUATORS})
    score.record(True, latency_s, refused=verdict.verdict == REJECTED, changed=verdict.verdict == CLAMPED,
                 agreed=all(abs(verdict.command[n] - applied[n]) <= AGREE_WITHIN_PCT for n in ACTUATORS),
                 would_violate=bool(broken_interlocks(unchecked, conditions, before.preset, before.limits)))


@dataclass
class _Period:
    before: SafetySupervisor
    conditions: Conditions
    applied: dict[str, float]
    received_s: float  # monotonic time the state arrived


@dataclass
class ShadowDesk:
    """The supervisor node's side: the last periods it decided (its state before each, the conditions, the command
    applied) and a score per shadow model. A model's score is final once promoted or retired."""

    gate: ShadowGate = ShadowGate()
    _periods: dict[float, _Period] = field(default_factory=dict)
    scores: dict[str, ShadowScore] = field(default_factory=dict)

    def decided(self, stamp_s: float, before: SafetySupervisor, conditions: Conditions | None,
                applied: dict[str, float], received_s: float) -> None:
        """A period decided: `before` is a copy of the supervisor taken before it reviewed the serving proposal."""
        if conditions is None:
            return  # a safe state: no proposal was asked for
        self._periods[stamp_s] = _Period(before, conditions, dict(applied), received_s)
        for old in sorted(self._periods)[:-PERIODS_KEPT]:
            del self._periods[old]

    def review(self, model: str, stamp_s: float, proposal: dict | None, now_s: float) -> ShadowScore | None:
        """Judge a shadow's answer for the period stamped `stamp_s`, arriving at monotonic `now_s` (its latency is
        counted from the state: the shadow is asked after the serving model has answered). An answer for a period
        older than those kept counts as none in time. None when the period is not one decided here or the model's
        score is already final."""
        score = open_score(self.scores, model)
        if score is None:
            return None
        period = self._periods.get(stamp_s)
        if period is None:
            if not self._periods or stamp_s > min(self._periods):
                return None
            score.record(False, float("nan"))  # far too late to be of use
        else:
            judge(score, copy.deepcopy(period.before), proposal, period.conditions, stamp_s, period.applied,
                  now_s - period.received_s)
        score.settle(self.gate)
        return score
