"""The ship's teacher and the watch officer's questions: generated encounters cover what they must, the
teacher's answers pass the nodes' own checks, held-out sets share no scenario with training, and the checks
catch wrong answers (ids, numbers, words, malformed and hostile JSON) in English and Korean."""
import json
import random
from collections import Counter

import pytest

from tango2_ros.builder.recipe import TeacherConfig, load_recipe
from tango2_ros.builder.teachers import TEACHERS, corrections, write_sets
from tango2_ros.errors import UserError
from tango2_ros.sds import questions, scene, teaching
from tango2_ros.sds.colreg import CATEGORIES
from tango2_ros.sds.scenario import BUILTIN


def test_encounters_cover_every_kind_category_and_size_and_are_fixed_by_their_seed():
    scenarios = [teaching.encounter(seed) for seed in range(200)]
    assert teaching.encounter(7) == teaching.encounter(7) and teaching.encounter(7) != teaching.encounter(8)
    encounters, categories, sizes = Counter(), Counter(), Counter(len(s.targets) for s in scenarios)
    for scenario in scenarios:
        categories.update(t.category for t in scenario.targets)
        encounters.update(f.encounter for f in teaching.facts(scenario)[0])
    assert set(encounters) == set(scene.ENCOUNTER_WORDS["en"])
    assert set(categories) == set(CATEGORIES) and set(sizes) == {1, 2, 3, 4, 5}
    assert sum(s.visibility_nm < 2.0 for s in scenarios) > 20  # restricted visibility (rule 19)


@pytest.mark.parametrize("language", ["en", "ko"])
def test_every_teacher_answer_passes_the_check_it_teaches_for(language):
    rows = teaching.bridge_rows(range(120), (language,), random.Random(1))
    assert len(rows) == 360 and {r["check"]["task"] for r in rows} == {"sds-describe", "sds-ask"}
    failed = [(r["messages"][1]["content"], corrections(r["messages"][1]["content"], r["check"])) for r in rows
              if corrections(r["messages"][1]["content"], r["check"])]
    assert failed == []
    kinds = Counter(r["check"]["question"]["kind"] for r in rows if r["check"]["task"] == "sds-ask")
    assert set(kinds) == set(questions.KINDS)  # the teacher asks every kind the check knows


def test_answers_vary_their_wording():
    targets, action = teaching.facts(BUILTIN["imazu-05"])
    answers = {json.dumps(teaching.teacher_answer(targets, action, "en", random.Random(seed))) for seed in range(12)}
    assert len(answers) >= 6


def test_held_out_sets_share_no_scenario_with_training(tmp_path):
    train, held_out = write_sets(TeacherConfig("sds-bridge", train=30, eval=10, seed=3, languages=("en", "ko")),
                                 tmp_path)

    def scenarios(path):
        return {json.loads(line)["check"]["scenario"] for line in path.read_text().splitlines()}

    assert len(scenarios(train)) == 30 and len(scenarios(held_out)) == 10
    assert not scenarios(train) & scenarios(held_out)
    assert not any(name.startswith(("imazu", "restricted", "rule18")) for name in scenarios(train))


def test_a_turned_and_moved_encounter_has_the_same_facts():
    original = BUILTIN["imazu-13"]
    moved = teaching.transformed(original, 137.0, 4.5, -2.0)
    assert moved.own.start.course_deg == pytest.approx(137.0)
    (targets, action), (moved_targets, moved_action) = teaching.facts(original), teaching.facts(moved)
    assert moved_action.direction == action.direction and moved_action.rules == action.rules
    for a, b in zip(targets, moved_targets):
        assert (a.id, a.encounter, a.role, a.clock) == (b.id, b.encounter, b.role, b.clock)
        assert a.cpa_nm == pytest.approx(b.cpa_nm, abs=1e-6) and a.range_nm == pytest.approx(b.range_nm, abs=1e-6)


def _describe_check(scenario="imazu-05", language="en"):
    row = teaching.describe_row(*teaching.facts(BUILTIN[scenario]), language, random.Random(0), scenario)
    return json.loads(row["messages"][1]["content"]), row["check"]


@pytest.mark.parametrize("language", ["en", "ko"])
def test_the_description_check_catches_wrong_numbers_words_and_missing_targets(language):
    answer, check = _describe_check(language=language)
    target = answer["targets"][0]
    wrong_number = replace_description(answer, 0, target["description"] + (" 9.9해리" if language == "ko" else " 9.9 NM"))
    assert any("9.9" in c for c in corrections(json.dumps(wrong_number, ensure_ascii=False), check))
    wrong_side = json.loads(json.dumps(answer))
    wrong_side["targets"][0]["side"] = "astern" if target["side"] != "astern" else "ahead"
    assert any("side" in c for c in corrections(json.dumps(wrong_side), check))
    missing = {**answer, "targets": answer["targets"][1:]}
    text, fixed = scene.checked_text(json.dumps(missing, ensure_ascii=False), *teaching.facts_from_check(check), language)
    assert any("left it out" in c for c in fixed) and target["id"] in text
    if language == "ko":
        assert "해리" in text and "NM" not in text  # the replacement speaks the description's language


@pytest.mark.parametrize("language, words", [("en", "Crossing from port, we stand on."),
                                             ("ko", "좌현에서 횡단, 본선 유지")])
def test_a_description_that_puts_a_crossing_on_the_wrong_side_is_replaced(language, words):
    answer, check = _describe_check(language=language)  # imazu-05: TS2 crosses from starboard
    index = next(i for i, t in enumerate(answer["targets"]) if t["encounter"] == "crossing-give-way")
    found = corrections(json.dumps(replace_description(answer, index, words), ensure_ascii=False), check)
    assert any("(fact: crossing-give-way)" in c for c in found), found


@pytest.mark.parametrize("language, words", [("en", "Crossing from starboard; we are the stand-on vessel."),
                                             ("en", "Crossing from starboard; we keep course and speed."),
                                             ("ko", "우현에서 횡단, 본선 유지")])
def test_a_description_that_claims_the_wrong_role_is_replaced(language, words):
    answer, check = _describe_check(language=language)  # imazu-05: TS2 crosses from starboard, we give way
    index = next(i for i, t in enumerate(answer["targets"]) if t["encounter"] == "crossing-give-way")
    found = corrections(json.dumps(replace_description(answer, index, words), ensure_ascii=False), check)
    assert any("(fact: role give-way)" in c for c in found), found
    right = "Crossing from starboard; we give way." if language == "en" else "우현에서 횡단, 본선이 피항"
    assert corrections(json.dumps(replace_description(answer, index, right), ensure_ascii=False), check) == []


def replace_description(answer: dict, index: int, description: str) -> dict:
    changed = json.loads(json.dumps(answer))
    changed["targets"][index]["description"] = description
    return changed


@pytest.mark.parametrize("output", ["", "not json", "[1, 2]", '"text"', '{"targets": "TS1", "advice": 3}',
                                    '{"targets": [1, null, {"id": "TS9"}]}'])
def test_malformed_and_hostile_descriptions_are_corrected_not_raised(output):
    _, check = _describe_check()
    found = corrections(output, check)
    assert found, output
    text, _ = scene.checked_text(output, *teaching.facts_from_check(check))
    assert "TS1" in text and "TS2" in text


@pytest.mark.parametrize("text, language, kind, vessel", [
    ("Which vessels must we give way to?", "en", "give-way", ""),
    ("What is TS2's CPA?", "en", "cpa", "TS2"),
    ("Why are we altering to starboard?", "en", "why", ""),
    ("Where is TS1?", "en", "where", "TS1"),
    ("Which vessel is the most dangerous?", "en", "most-urgent", ""),
    ("왜 우현으로 변침합니까?", "ko", "why", ""),
    ("어떤 선박에 피항해야 합니까?", "ko", "give-way", ""),
    ("TS2의 최근접 거리는?", "ko", "cpa", "TS2"),
    ("Nice weather today?", "en", "other", ""),
])
def test_questions_are_classified_in_both_languages(text, language, kind, vessel):
    targets, _ = teaching.facts(BUILTIN["imazu-05"])
    question = questions.classify(text, language, targets)
    assert (question.kind, question.vessel) == (kind, vessel)


@pytest.mark.parametrize("text, language, words", [
    ("What is TS9's CPA?", "en", "no vessel TS9 in the present picture"),
    ("Where is TS1?", "fr", "unsupported language 'fr'"),
    ("   ", "en", "the question is empty"),
    ("x" * 401, "en", "longer than 400"),
])
def test_questions_that_cannot_be_asked_get_a_clear_error(text, language, words):
    targets, _ = teaching.facts(BUILTIN["imazu-05"])
    with pytest.raises(UserError, match=words):
        questions.classify(text, language, targets)


def test_the_answer_check_wants_the_right_vessels_named_and_the_right_numbers():
    targets, action = teaching.facts(BUILTIN["imazu-05"])
    give_way = questions.classify("Which vessels must we give way to?", "en", targets)
    right = questions.teacher_answer(give_way, targets, action, random.Random(0))
    assert questions.checked_answer(json.dumps(right), give_way, targets, action).corrections == []
    wrong_ids = {"answer": "We give way to nobody.", "ids": []}
    checked = questions.checked_answer(json.dumps(wrong_ids), give_way, targets, action)
    assert checked.corrections and checked.ids == right["ids"]
    cpa = questions.classify("What is TS2's CPA?", "en", targets)
    wrong_number = {"answer": "TS2 comes within 3.4 NM in 12 min.", "ids": ["TS2"]}
    assert any("3.4 NM" in c for c in questions.checked_answer(json.dumps(wrong_number), cpa, targets,
                                                              action).corrections)
    for hostile in ("", "[]", '{"answer": 5, "ids": "TS2"}', '{"answer": "TS2", "ids": ["ZZ1"]}'):
        assert questions.checked_answer(hostile, cpa, targets, action).corrections, hostile


def test_answer_without_a_model_is_built_from_the_facts():
    targets, action = teaching.facts(BUILTIN["imazu-05"])
    answered = questions.answer("TS1는 어디에 있습니까?", "ko", targets, action, ask=None)
    assert answered.model == "templates" and "TS1" in answered.answer and "시 방향" in answered.answer
    failing = questions.answer("Where is TS1?", "en", targets, action, ask=lambda p, s: ("", "m@1", "timed out"))
    assert failing.corrections == ["timed out: answered from the facts"] and failing.ids == ["TS1"]


TEACHER_RECIPE = """name: bridge
version: 1.0.0
base: smollm2-135m-instruct@1.0.0
teacher: {name: sds-bridge, train: 4, eval: 2, languages: [en, ko]}
finetune: {steps: 2}
quantizations: []
evaluation: {metric: fact_check}
gates: {beat_base: true}
"""


@pytest.mark.parametrize("change, words", [
    (("name: sds-bridge", "name: oracle"), "unknown teacher 'oracle'"),
    (("languages: [en, ko]", "languages: [en, fr]"), "teacher.languages must list some of en, ko"),
    (("train: 4", "train: 0"), "teacher.train must be a number"),
    (("eval: 2, ", ""), "teacher.eval must be a number"),
    (("metric: fact_check", "metric: contains"), "metric fact_check is the teacher's check"),
    (("teacher: {", "data: {eval: e.jsonl}\nteacher: {"), "either 'data'"),
    (("teacher: {name", "teacher: {wisdom: 1, name"), "unknown teacher key(s) wisdom"),
    (("base: smollm2-135m-instruct@1.0.0", "base: encoder"), "teacher sds-bridge teaches a language model's answers"),
])
def test_teacher_recipe_errors(tmp_path, change, words):
    (tmp_path / "encoder").mkdir()  # an encoder folder (ONNX), not a language model
    path = tmp_path / "recipe.yaml"
    path.write_text(TEACHER_RECIPE.replace(*change))
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_recipe(path)


def test_a_teacher_recipe_loads(tmp_path):
    (tmp_path / "recipe.yaml").write_text(TEACHER_RECIPE)
    recipe = load_recipe(tmp_path / "recipe.yaml")
    assert recipe.teacher == TeacherConfig("sds-bridge", 4, 2, 0, ("en", "ko")) and recipe.beat_base
    assert recipe.train is None and recipe.eval is None and recipe.metric == "fact_check"
    assert set(TEACHERS["sds-bridge"].languages) == {"en", "ko"}


def test_unknown_check_tasks_are_refused():
    with pytest.raises(UserError, match="no teacher checks answers of task 'poetry'"):
        corrections("{}", {"task": "poetry"})


def test_a_shadow_describer_is_judged_by_the_fact_check_and_retired_for_contradicting_the_decision():
    """Agrees: the raw description passes unchanged; changed: a number or a left-out target; would violate: the
    advice's direction, a target's side or our role against the decision; refused: not a JSON object."""
    from tango2_ros.core.shadow import ShadowScore
    from tango2_ros.sds.shadowing import judge_description

    answer, check = _describe_check()
    targets, action = teaching.facts_from_check(check)
    score = ShadowScore("candidate@1")
    wrong_number = replace_description(answer, 0, answer["targets"][0]["description"] + " 9.9 NM")
    left_out = {**answer, "targets": answer["targets"][1:]}
    for raw, error in ((answer, ""), (wrong_number, ""), (left_out, ""), ("not json", ""), (answer, "timed out")):
        judge_description(score, (targets, action, "en"), raw if isinstance(raw, str) else json.dumps(raw), 0.5, error)
    assert (score.asked, score.decisions, score.agreed, score.changed, score.refused) == (5, 4, 1, 2, 1)
    assert score.would_violate == 0
    wrong_way = {**answer, "advice": {**answer["advice"], "direction": "port" if action.direction != "port" else "none"}}
    wrong_side = json.loads(json.dumps(answer))
    wrong_side["targets"][0]["side"] = "astern" if answer["targets"][0]["side"] != "astern" else "ahead"
    for raw in (wrong_way, wrong_side):
        judged = ShadowScore("candidate@1")
        judge_description(judged, (targets, action, "en"), json.dumps(raw), 0.5)
        assert judged.would_violate == 1 and judged.changed == 1


def test_every_recipe_in_the_repository_loads():
    """A recipe that `tango2 learn` would refuse must not sit in recipes/ (released or not yet)."""
    from pathlib import Path

    recipes = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*/recipe.yaml"))
    assert len(recipes) >= 6
    for path in recipes:
        assert load_recipe(path).name == path.parent.name
