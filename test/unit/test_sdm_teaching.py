"""The report writer's teacher: its cases cover what the findings model gives, every teacher draft passes the
sentence check unchanged, wording varies, held-out cases are disjoint, and the check catches wrong drafts."""
import json
import random
from collections import Counter

import pytest

from tango2_ros.builder.recipe import TeacherConfig
from tango2_ros.builder.teachers import corrections, write_sets
from tango2_ros.sdm import teaching
from tango2_ros.sdm.labels import LABEL_NAMES
from tango2_ros.sdm.report import TERM_PATTERNS


def test_cases_cover_every_label_assessed_and_present_and_are_fixed_by_their_seed():
    cases = [teaching.findings_case(seed) for seed in range(400)]
    assert teaching.findings_case(3) == teaching.findings_case(3) != teaching.findings_case(4)
    present = Counter(f.label for case in cases for f in case if f.present)
    sizes = Counter(sum(f.present for f in case) for case in cases)
    assert set(present) == set(LABEL_NAMES) and set(sizes) == {0, 1, 2, 3, 4, 5}
    assert any(not f.assessed for case in cases for f in case) and any(all(f.assessed for f in case) for case in cases)
    for case in cases:  # a finding is present exactly when its probability reaches the threshold
        assert all(f.present == (f.assessed and f.probability >= f.threshold) for f in case)


def test_every_teacher_draft_passes_the_sentence_check_unchanged():
    rows = teaching.report_rows(range(400), ("en",), random.Random(2))
    failed = [(r["messages"][1]["content"], corrections(r["messages"][1]["content"], r["check"])) for r in rows
              if corrections(r["messages"][1]["content"], r["check"])]
    assert failed == []


def test_each_phrasing_names_its_own_finding_and_no_other():
    for label, sentences in teaching.PHRASINGS.items():
        for sentence in sentences:
            named = {other for other, pattern in TERM_PATTERNS.items() if pattern.search(sentence)}
            assert named == {label}, sentence


def test_drafts_vary_their_wording_and_rank_the_impression_by_importance():
    case = next(c for c in map(teaching.findings_case, range(100)) if sum(f.present for f in c) >= 3)
    answers = [teaching.teacher_answer(case, random.Random(seed)) for seed in range(12)]
    assert len({json.dumps(a) for a in answers}) >= 6
    ranked = sorted((f.label for f in case if f.present), key=teaching.IMPORTANCE.index)
    for answer in answers:
        positions = [answer["impression"].lower().find(teaching.BY_NAME[label].impression.lower()) for label in ranked]
        assert -1 not in positions and positions == sorted(positions)


def test_held_out_cases_share_none_with_training(tmp_path):
    train, held_out = write_sets(TeacherConfig("sdm-report", train=40, eval=10, seed=1), tmp_path)

    def cases(path):
        return {json.loads(line)["check"]["case"] for line in path.read_text().splitlines()}

    assert len(cases(train)) == 40 and len(cases(held_out)) == 10 and not cases(train) & cases(held_out)


@pytest.mark.parametrize("change, words", [
    (lambda a: a["sentences"].pop(), "left it out"),  # a present finding left out of the FINDINGS
    (lambda a: a.update(impression="No pleural effusion. No consolidation."), "impression was replaced"),
    (lambda a: a["sentences"][0].update(sentence="There is no abnormality."), "does not state"),
    (lambda a: a["sentences"][0].update(sentence=a["sentences"][0]["sentence"] + " Also emphysema."), "emphysema"),
])
def test_the_check_catches_wrong_drafts(change, words):
    case = next(c for c in map(teaching.findings_case, range(100))
                if sum(f.present for f in c) >= 2 and not any(f.present for f in c if f.label == "Emphysema")
                and any(f.label == "Emphysema" and f.assessed for f in c))
    row = teaching.report_row(case, random.Random(0), "case")
    answer = json.loads(row["messages"][1]["content"])
    change(answer)
    found = corrections(json.dumps(answer), row["check"])
    assert found and words in " ".join(found), found


@pytest.mark.parametrize("output", ["", "not json", "[]", '{"sentences": 3, "impression": ""}', "{" * 5000,
                                    '{"sentences": [1, null], "impression": "x"}'])
def test_malformed_drafts_are_corrections_not_crashes(output):
    row = teaching.report_row(teaching.findings_case(5), random.Random(0), "case")
    assert corrections(output, row["check"])


def test_a_shadow_writer_is_judged_by_the_sentence_check():
    """In shadow a writer agrees when its raw draft passes the check, is refused when it is not the JSON asked for,
    and is retired at once when its raw text states a finding nobody found."""
    from tango2_ros.core.shadow import PROMOTE, ShadowGate, ShadowScore
    from tango2_ros.sdm.shadowing import judge_draft

    case = next(c for c in map(teaching.findings_case, range(100))
                if sum(f.present for f in c) >= 2 and any(f.assessed and not f.present for f in c))
    good = json.dumps(teaching.teacher_answer(case, random.Random(0)))
    absent = next(f.label for f in case if f.assessed and not f.present)
    gate = ShadowGate(decisions=3, min_agreement_pct=60.0, max_refused_pct=40.0, max_unanswered_pct=30.0)
    score = ShadowScore("writer@2")
    for answer, error in ((good, ""), (good, ""), ("not json", ""), ("", "no answer within 120 s")):
        judge_draft(score, case, answer, 0.5, error)
    assert (score.asked, score.decisions, score.agreed, score.refused) == (4, 3, 2, 1)
    assert score.settle(gate) == PROMOTE and score.promoted

    wrong = json.loads(good)
    wrong["impression"] += f" {teaching.BY_NAME[absent].impression}."
    rogue = ShadowScore("writer@3")
    judge_draft(rogue, case, json.dumps(wrong), 0.5)
    assert rogue.would_violate == 1 and rogue.settle(gate).startswith("retired") and rogue.retired
