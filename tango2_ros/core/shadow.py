"""Shadow evaluation: a candidate model answers the same live requests as the serving one, its answers are judged
by the domain's own checker and compared with what was done, and it is never acted on. The score decides:
promote the candidate once its gate holds over enough decisions, or retire it with the reason.

ROS-free and domain-neutral: the domain says per decision whether the candidate answered, whether its answer
agrees with the serving one, what the checker did to it and whether, unchecked, it would have broken a rule
(for the farm: tango2_ros.sdf.deciding.LocalDecider with a shadow controller).
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field

from tango2_ros.core.settings import setting

PROMOTE, WATCH = "promote", ""
SHADOW_KEY = "shadow"  # a judging node's /diagnostics value: the candidate's score (`ShadowScore.as_dict`) as JSON


@dataclass(frozen=True)
class ShadowGate:
    decisions: int = setting(20, "Decisions the shadow must answer before it is judged.", 1, 100000)
    min_agreement_pct: float = setting(80.0, "Promote only when it agrees this often with what was done.", 0.0, 100.0)
    max_refused_pct: float = setting(5.0, "Retire when the checker refuses more of its answers than this.", 0.0,
                                     100.0)
    max_unanswered_pct: float = setting(20.0, "Retire when it fails or is late more often than this.", 0.0, 100.0)


@dataclass
class ShadowScore:
    """What a shadow did over the live decisions it was given."""

    model: str
    asked: int = 0
    decisions: int = 0  # answered
    agreed: int = 0
    refused: int = 0  # the checker would have refused the answer
    changed: int = 0  # ... or changed it (clamped, corrected)
    would_violate: int = 0  # unchecked, the answer would have broken a rule
    latencies_s: list[float] = field(default_factory=list)
    promoted: bool = False
    retired: str = ""  # why, once retired

    def record(self, answered: bool, latency_s: float, *, agreed: bool = False, refused: bool = False,
               changed: bool = False, would_violate: bool = False) -> None:
        self.asked += 1
        if math.isfinite(latency_s):  # NaN: no answer came to time
            self.latencies_s.append(latency_s)
        if answered:
            self.decisions += 1
            self.agreed += agreed
            self.refused += refused
            self.changed += changed and not refused
            self.would_violate += would_violate

    def verdict(self, gate: ShadowGate) -> str:
        """PROMOTE, WATCH (not yet judged) or the reason to retire. An answer that would have broken a rule
        retires at once; the rest is judged over `gate.decisions` answers."""
        if self.would_violate:
            return f"retired: {self.would_violate} answer(s) would have broken a rule unchecked"
        unanswered = self.asked - self.decisions
        if self.asked >= gate.decisions and 100.0 * unanswered / self.asked > gate.max_unanswered_pct:
            return f"retired: no usable answer in time for {unanswered} of {self.asked} decisions"
        if self.decisions < gate.decisions:
            return WATCH
        if self.refused_pct > gate.max_refused_pct:
            return f"retired: the checker refused {self.refused_pct:.0f} % (at most {gate.max_refused_pct:g} %)"
        if self.agreement_pct < gate.min_agreement_pct:
            return f"retired: agreed with what was done in {self.agreement_pct:.0f} % (at least " \
                   f"{gate.min_agreement_pct:g} %)"
        return PROMOTE

    @property
    def agreement_pct(self) -> float:
        return 100.0 * self.agreed / self.decisions if self.decisions else 0.0

    @property
    def refused_pct(self) -> float:
        return 100.0 * self.refused / self.decisions if self.decisions else 0.0

    def settle(self, gate: ShadowGate) -> str:
        """The gate's verdict, written into the score once it is final: PROMOTE, WATCH or why it is retired."""
        outcome = self.verdict(gate)
        if outcome == PROMOTE:
            self.promoted = True
        elif outcome != WATCH:
            self.retired = outcome
        return outcome

    def as_dict(self) -> dict:
        return {"model": self.model, "decisions": self.decisions, "asked": self.asked,
                "agreement_pct": round(self.agreement_pct, 1), "supervisor_rejections": self.refused,
                "supervisor_clamps": self.changed, "would_violate": self.would_violate,
                "latency_s_p50": round(statistics.median(self.latencies_s), 3) if self.latencies_s else None,
                "promoted": self.promoted, "retired": self.retired}


def open_score(scores: dict[str, ShadowScore], model: str) -> ShadowScore | None:
    """The score a judge records the model's next answer in (made at its first), or None once it is final: a
    promoted or retired candidate is judged no more."""
    score = scores.setdefault(model, ShadowScore(model))
    return None if score.promoted or score.retired else score


def shadow_score(text: str) -> dict | None:
    """A node's reported shadow score (JSON with at least `model`), or None when absent or not one."""
    if not text:
        return None
    try:
        score = json.loads(text)
    except ValueError:
        return None
    return score if isinstance(score, dict) and isinstance(score.get("model"), str) else None
