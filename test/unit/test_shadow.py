"""Shadow evaluation: the score's verdicts, and a shadow controller in the farm's in-process loop that is judged by
the supervisor, never applied, promoted when its gate holds and retired when it would break an interlock."""
import datetime

from tango2_ros.core.shadow import PROMOTE, WATCH, ShadowGate, ShadowScore
from tango2_ros.sdf.controllers import BaselineController, RandomController
from tango2_ros.sdf.crops import PRESETS
from tango2_ros.sdf.deciding import LocalDecider
from tango2_ros.sdf.greenhouse import Greenhouse
from tango2_ros.sdf.simulation import run

GATE = ShadowGate(decisions=4, min_agreement_pct=75.0, max_refused_pct=25.0, max_unanswered_pct=50.0)


def test_the_score_promotes_only_over_enough_good_decisions_and_says_why_it_retires():
    score = ShadowScore("lam@2.0.0")
    for _ in range(3):
        score.record(True, 0.5, agreed=True)
    assert score.verdict(GATE) == WATCH  # not judged before `decisions` answers
    score.record(True, 0.7, agreed=False, changed=True)
    assert score.verdict(GATE) == PROMOTE and score.agreement_pct == 75.0
    assert score.as_dict() == {"model": "lam@2.0.0", "decisions": 4, "asked": 4, "agreement_pct": 75.0,
                               "supervisor_rejections": 0, "supervisor_clamps": 1, "would_violate": 0,
                               "latency_s_p50": 0.5, "promoted": False, "retired": ""}
    disagreeing = ShadowScore("m")
    for agreed in (True, False, False, True):
        disagreeing.record(True, 0.1, agreed=agreed)
    assert disagreeing.verdict(GATE) == "retired: agreed with what was done in 50 % (at least 75 %)"
    refused = ShadowScore("m")
    for rejected in (True, True, False, False):
        refused.record(True, 0.1, agreed=True, refused=rejected)
    assert refused.verdict(GATE).startswith("retired: the checker refused 50 %") and refused.changed == 0
    silent = ShadowScore("m")
    for answered in (False, False, False, True):
        silent.record(answered, 30.0, agreed=True)
    assert silent.verdict(GATE) == "retired: no usable answer in time for 3 of 4 decisions"
    dangerous = ShadowScore("m")
    dangerous.record(True, 0.1, agreed=True, would_violate=True)
    assert dangerous.verdict(GATE).startswith("retired: 1 answer(s) would have broken a rule")  # at once


def _greenhouse() -> Greenhouse:
    return Greenhouse(PRESETS["tomato"], datetime.date(2009, 11, 10), days=12 * 300 / 86400, period_s=300,
                      spin_up_h=0)


def _commands(decider) -> list[dict]:
    records: list[dict] = []
    run(_greenhouse(), decider, "baseline", on_record=records.append)
    return [r["command"] for r in records]


def test_a_shadow_is_judged_never_applied_and_promoted_or_retired():
    preset = PRESETS["tomato"]
    alone = _commands(LocalDecider(preset, BaselineController(preset)))
    twin = LocalDecider(preset, BaselineController(preset), shadow=BaselineController(preset), gate=GATE)
    assert _commands(twin) == alone
    assert twin.score.promoted and twin.score.decisions == GATE.decisions and twin.score.agreement_pct == 100.0
    assert twin.shadow is None and twin.controller is not None
    hostile = LocalDecider(preset, BaselineController(preset), shadow=RandomController(seed=3), gate=GATE)
    assert _commands(hostile) == alone  # what the shadow proposed never reached the actuators
    assert hostile.score.retired.startswith("retired:") and not hostile.score.promoted, hostile.score.as_dict()
    assert hostile.shadow is None and hostile.score.asked <= len(alone)
