"""A candidate report writer in shadow: once the serving writer's draft of a study is out, the candidate is asked
the same question; its raw draft is judged by the sentence check against the study's findings and is never
stored, published or sent to the PACS (tango2_ros.core.shadow keeps the score and the gate).

For a writer, "agrees" means its raw draft passes the check unchanged (the serving draft is no reference: after
the check every draft agrees with the findings), "refused" an answer that is not the JSON asked for, "changed" a
draft the check corrected, and "would violate" a raw draft that states a finding the findings model gives as
absent or not assessed, or denies a present one: unchecked, the report would say what nobody found.
"""
from __future__ import annotations

from tango2_ros.core.shadow import ShadowScore
from tango2_ros.sdm.findings import Finding
from tango2_ros.sdm.report import checked_draft


def judge_draft(score: ShadowScore, findings: list[Finding], answer: str, latency_s: float, error: str = "") -> None:
    """Record one shadow answer (`error`, or no text: none usable in time)."""
    if error or not answer.strip():
        score.record(False, latency_s)
        return
    draft = checked_draft(answer, findings, score.model)
    score.record(True, latency_s, agreed=not draft.corrections, refused=draft.unusable,
                 changed=bool(draft.corrections), would_violate=draft.contradicted)
