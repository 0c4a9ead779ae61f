"""A candidate scene describer in shadow: once the serving model's description of a picture is out, the candidate is
asked the same question; its raw description is judged by the fact check against the same facts and is never
published (tango2_ros.core.shadow keeps the score and the gate).

For a describer, "agrees" means its raw description passes the fact check unchanged (the serving description is no
reference: after the check every description agrees with the facts), "refused" an answer that is not the JSON
object asked for, "changed" a description the check corrected (a number, a target left out or invented), and
"would violate" one that contradicts the navigator's decision itself: the advice's direction, a target's
encounter or side, or our role towards it. Unchecked, such a sentence would tell the crew to do something else
than the COLREG navigator decided.
"""
from __future__ import annotations

import json

from tango2_ros.core.shadow import ShadowScore
from tango2_ros.sds import scene


def judge_description(score: ShadowScore, picture: tuple, answer: str, latency_s: float, error: str = "") -> None:
    """Record one shadow answer about `picture` = (targets, action, language); `error`, or no text: none usable in
    time."""
    if error or not answer.strip():
        score.record(False, latency_s)
        return
    targets, action, language = picture
    _, corrections = scene.checked_text(answer, targets, action, language)
    try:
        raw = json.loads(answer)
    except json.JSONDecodeError:
        raw = None
    unusable = not isinstance(raw, dict)
    score.record(True, latency_s, agreed=not corrections, refused=unusable, changed=bool(corrections),
                 would_violate=not unusable and bool(decision_contradictions(raw, targets, action)))


def decision_contradictions(answer: dict, targets: list[scene.TargetFact], action: scene.ActionFact) -> list[str]:
    """What a raw description says against the decision: the advice's direction, and per target it describes its
    encounter, side or our role."""
    found = []
    advice = answer.get("advice") if isinstance(answer.get("advice"), dict) else {}
    if advice.get("direction") != action.direction:
        found.append(f"advice {advice.get('direction')!r} (decision: {action.direction})")
    facts = {t.id: t for t in targets}
    items = answer.get("targets") if isinstance(answer.get("targets"), list) else []
    for item in (i for i in items if isinstance(i, dict) and i.get("id") in facts):
        found += [f"{item['id']}: {claim}" for claim in scene.claims_against(item, facts[item["id"]])]
    return found
