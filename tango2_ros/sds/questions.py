"""Questions from the officer of the watch, answered from the present picture and checked like descriptions.

A question is classified by deterministic rules (English and Korean key words, the vessel it names), which
fixes what a right answer must refer to: "Which vessels must we give way to?" must name exactly the give-way
targets, "What is TS2's CPA?" TS2 and TS2's numbers. The model answers under a JSON Schema (`answer` text and the
`ids` it refers to, only ids that exist); the check compares the ids with the expected ones, looks for every
expected vessel in the text and checks every number with a unit against the facts (tango2_ros.sds.numbers).
A wrong answer is replaced by the teacher's answer built from the facts, recorded as a correction.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

from tango2_ros.errors import UserError
from tango2_ros.sds import scene
from tango2_ros.sds.numbers import contradictions

LANGUAGES = ("en", "ko")
KINDS = ("give-way", "stand-on", "cpa", "where", "why", "most-urgent")
VESSEL_ID = re.compile(r"(?<![A-Za-z0-9])([A-Z]{1,3}\d{1,4})(?![A-Za-z0-9])")
# (kind, English key words, Korean key words): the first kind with a key word in the question wins
KEY_WORDS = (
    ("why", ("why", "reason"), ("왜", "이유")),
    ("give-way", ("give way", "keep out of", "keep clear of"), ("피항",)),
    ("stand-on", ("stand on", "stand-on"), ("침로를 유지", "유지선")),
    ("cpa", ("cpa", "how close", "closest"), ("최근접", "cpa", "얼마나 가까이")),
    ("where", ("where", "bearing", "position"), ("어디", "위치", "방위")),
    ("most-urgent", ("most dangerous", "most urgent", "biggest risk", "first"), ("가장 위험", "가장 급한")),
)
NEEDS_VESSEL = ("cpa", "where")
# the bridge assistant's question interface in the function-calling form of the OpenAI-style API, for an agent
# (run on the ROS graph by tango2_ros.ros.agent_tools: a goal of /tango2/sds/ask)
ASK_TOOL = {"type": "function", "function": {
    "name": "ask_bridge",
    "description": "Ask the ship's bridge assistant about the present traffic picture: which vessels we give way "
                   "to or stand on for, a vessel's CPA or position, the most urgent vessel, the reason for the "
                   "advice. The answer is checked against the COLREG navigator's facts.",
    "parameters": {"type": "object", "properties": {
        "question": {"type": "string", "minLength": 1, "maxLength": 400},
        "language": {"type": "string", "enum": list(LANGUAGES)}},
        "required": ["question"], "additionalProperties": False}}}


@dataclass(frozen=True)
class Question:
    text: str
    language: str
    kind: str  # one of KINDS, or "other" (then only numbers and ids are checked)
    vessel: str = ""  # the target the question names


def classify(text: str, language: str, targets: list[scene.TargetFact]) -> Question:
    """What the question asks; UserError for an unsupported language, an empty question or a vessel that is not
    in the picture."""
    if language not in LANGUAGES:
        raise UserError(f"unsupported language {language!r}: questions are answered in {', '.join(LANGUAGES)}")
    text = text.strip()
    if not text:
        raise UserError("the question is empty")
    if len(text) > 400:
        raise UserError("the question is longer than 400 characters")
    known = {t.id for t in targets}
    named = [m for m in VESSEL_ID.findall(text)]
    unknown = [vessel for vessel in named if vessel not in known]
    if unknown:
        raise UserError(f"no vessel {unknown[0]} in the present picture (vessels: {', '.join(sorted(known)) or 'none'})")
    lowered = text.lower()
    kind = next((kind for kind, english, korean in KEY_WORDS
                 if any(word in lowered for word in (korean if language == "ko" else english))), "other")
    vessel = named[0] if named else ""
    if kind in NEEDS_VESSEL and not vessel:
        kind = "other"
    return Question(text, language, kind, vessel)


def expected_ids(question: Question, targets: list[scene.TargetFact]) -> list[str] | None:
    """The vessels a right answer refers to (None: the kind does not fix them)."""
    if question.kind in NEEDS_VESSEL:
        return [question.vessel]
    by_kind = {"give-way": scene.give_way_to, "stand-on": scene.stand_on_for, "why": scene.acted_on,
               "most-urgent": scene.most_urgent}
    return by_kind[question.kind](targets) if question.kind in by_kind else None


def schema(targets: list[scene.TargetFact]) -> dict:
    ids = [t.id for t in targets]
    return {"type": "object", "properties": {
        "answer": {"type": "string", "maxLength": 160},
        "ids": {"type": "array", "items": {"type": "string", "enum": ids or ["none"]}, "maxItems": len(ids)},
    }, "required": ["answer", "ids"]}


def prompt(question: Question, targets: list[scene.TargetFact], action: scene.ActionFact,
           own: scene.OwnShipFact = scene.OwnShipFact()) -> str:
    lines = [f"- {key}: {value}" for key, value in scene.facts_as_pairs(targets, action, own, question.language)]
    return ("You are the bridge assistant of a ship. Answer the officer of the watch in short plain "
            f"{scene.LANGUAGE_NAMES[question.language]}, from these facts only, and list the vessels your answer "
            "refers to:\n" + "\n".join(lines) + f"\nQuestion: {question.text}")


# -- the teacher's questions and answers -----------------------------------------------------------------------

_QUESTIONS = {
    "en": {"give-way": ("Which vessels must we give way to?", "Who do we give way to?", "Do we have to keep out of "
                        "anyone's way?"),
           "stand-on": ("Which vessels do we stand on for?", "Are we the stand-on vessel to anyone?"),
           "cpa": ("What is {id}'s CPA?", "How close does {id} come?", "Closest approach of {id}?"),
           "where": ("Where is {id}?", "What is the bearing of {id}?", "Give me the position of {id}."),
           "why": ("Why this advice?", "Why are we altering to starboard?", "What is the reason for the advice?"),
           "most-urgent": ("Which vessel is the most dangerous?", "Which target is most urgent?",
                           "What is the biggest risk right now?")},
    "ko": {"give-way": ("어떤 선박에 피항해야 합니까?", "피항해야 할 선박은?"),
           "stand-on": ("어떤 선박에 대해 침로를 유지합니까?", "본선이 유지선인 선박은?"),
           "cpa": ("{id}의 최근접 거리는?", "{id}의 CPA는 얼마입니까?", "{id}는 얼마나 가까이 옵니까?"),
           "where": ("{id}는 어디에 있습니까?", "{id}의 위치는?"),
           "why": ("왜 우현으로 변침합니까?", "권고의 이유는?", "왜 이렇게 합니까?"),
           "most-urgent": ("가장 위험한 선박은?", "가장 급한 선박은 어느 것입니까?")},
}


def _list(ids: list[str], language: str) -> str:
    if language == "ko" or len(ids) < 2:
        return ", ".join(ids)
    return ", ".join(ids[:-1]) + " and " + ids[-1]


def teacher_answer(question: Question, targets: list[scene.TargetFact], action: scene.ActionFact,
                   rng: random.Random) -> dict:
    """The right answer in one of several phrasings: {"answer": ..., "ids": [...]}."""
    ids = expected_ids(question, targets)
    ko = question.language == "ko"
    by_id = {t.id: t for t in targets}
    if question.kind == "give-way":
        text = (f"{_list(ids, 'ko')}에 피항해야 합니다." if ids else "피항해야 할 선박이 없습니다.") if ko else (
            rng.choice((f"We give way to {_list(ids, 'en')}.", f"{_list(ids, 'en')}: we must keep out of the way."))
            if ids else rng.choice(("No one: we are not the give-way vessel.", "None, we give way to no vessel.")))
    elif question.kind == "stand-on":
        text = (f"{_list(ids, 'ko')}에 대해 침로와 속력을 유지합니다." if ids else "유지선 입장인 선박이 없습니다.") if ko else (
            f"We stand on for {_list(ids, 'en')}." if ids else "No vessel: we are not the stand-on vessel.")
    elif question.kind == "cpa":
        t = by_id[question.vessel]
        cpa, minutes = f"{t.cpa_nm:.2f}", f"{max(t.tcpa_min, 0):.0f}"
        if t.tcpa_min < 0:
            text = (f"{t.id}는 멀어지는 중, 최근접 {cpa}해리." if ko
                    else f"{t.id} is opening; the closest approach, {cpa} NM, is past.")
        else:
            text = f"{t.id}는 {minutes}분 후 {cpa}해리까지 접근합니다." if ko else rng.choice((
                f"{t.id} comes within {cpa} NM in {minutes} min.", f"CPA of {t.id}: {cpa} NM in {minutes} minutes."))
    elif question.kind == "where":
        t = by_id[question.vessel]
        text = (f"{t.id}는 {t.clock}시 방향 {t.range_nm:.1f}해리, {scene.SIDE_WORDS['ko'][t.side]}에 있습니다." if ko else
                rng.choice((f"{t.id} is at {t.clock} o'clock, {t.range_nm:.1f} NM, on our {t.side} side."
                            if t.side in ("starboard", "port") else
                            f"{t.id} is at {t.clock} o'clock, {t.range_nm:.1f} NM, {t.side}.",
                            f"{t.range_nm:.1f} NM at {t.clock} o'clock: {t.id}.")))
    elif question.kind == "why":
        from tango2_ros.sds.teaching import advice_reason

        text = advice_reason(rng, targets, action, question.language)
    else:  # most-urgent (the teacher asks nothing else)
        if ids:
            t = by_id[ids[0]]
            text = (f"가장 급한 선박은 {t.id}, {max(t.tcpa_min, 0):.0f}분 후 {t.cpa_nm:.2f}해리." if ko else
                    f"{t.id}: closest approach {t.cpa_nm:.2f} NM in {max(t.tcpa_min, 0):.0f} min.")
        else:
            text = "위험한 선박이 없습니다." if ko else "None of them: every vessel passes clear."
    return {"answer": text[:160], "ids": ids or []}


def teaching_question(rng: random.Random, targets: list[scene.TargetFact], language: str) -> Question:
    """A question the teacher asks about this picture: any kind, about a vessel that exists."""
    kinds = [k for k in KINDS if targets or k not in NEEDS_VESSEL]
    kind = rng.choice(kinds)
    vessel = rng.choice(targets).id if kind in NEEDS_VESSEL else ""
    text = rng.choice(_QUESTIONS[language][kind]).format(id=vessel)
    return classify(text, language, targets)


# -- the check -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckedAnswer:
    answer: str
    ids: list[str]
    corrections: list[str]


def checked_answer(model_json: str, question: Question, targets: list[scene.TargetFact],
                   action: scene.ActionFact) -> CheckedAnswer:
    """The model's answer if the facts bear it out, else the teacher's answer, with what was wrong."""
    wrong = _wrong(model_json, question, targets, action)
    if not wrong:
        answer = json.loads(model_json)
        return CheckedAnswer(str(answer["answer"]).strip(), list(answer["ids"]), [])
    fallback = teacher_answer(question, targets, action, random.Random(0))
    if question.kind == "other":
        fallback = {"answer": scene.template_text(targets, action, question.language), "ids": [t.id for t in targets]}
    return CheckedAnswer(fallback["answer"], fallback["ids"], [f"{w}: answered from the facts" for w in wrong])


def _wrong(model_json: str, question: Question, targets, action) -> list[str]:
    try:
        answer = json.loads(model_json)
    except json.JSONDecodeError:
        return ["the model's answer was not JSON"]
    if not isinstance(answer, dict) or not isinstance(answer.get("answer"), str) \
            or not isinstance(answer.get("ids"), list):
        return ["the model's answer lacks 'answer' text or the 'ids' list"]
    text, ids = answer["answer"], [str(i) for i in answer["ids"]]
    known = {t.id: t for t in targets}
    wrong = [f"no vessel {i} in the picture" for i in ids if i not in known]
    expected = expected_ids(question, targets)
    if expected is not None and sorted(set(ids)) != sorted(expected):
        wrong.append(f"it refers to {ids or 'no vessel'}, the facts say {expected or 'no vessel'}")
    wrong += [f"it does not name {i}" for i in (expected or []) if not re.search(rf"(?<![A-Za-z0-9]){re.escape(i)}"
                                                                                   r"(?![0-9])", text)]
    numbers = known[question.vessel].numbers() if question.vessel in known and question.kind in NEEDS_VESSEL \
        else scene.picture_numbers(targets, action)
    wrong += [f"it says {n}" for n in contradictions(text, numbers)]
    return wrong


def ask_row(question: Question, targets, action, rng: random.Random, scenario: str) -> dict:
    """One JSONL line for teaching: the prompt the ask service sends, the teacher's answer, the check's context."""
    from dataclasses import asdict

    answer = json.dumps(teacher_answer(question, targets, action, rng), ensure_ascii=False)
    return {"messages": [{"role": "user", "content": prompt(question, targets, action)},
                         {"role": "assistant", "content": answer}],
            "check": {"task": "sds-ask", "scenario": scenario, "language": question.language,
                      "question": asdict(question), "targets": [asdict(t) for t in targets],
                      "action": asdict(action), "schema": schema(targets)}}


def check_ask(output: str, check: dict) -> list[str]:
    """The corrections the check makes to a model's answer (empty: the raw answer passed)."""
    from tango2_ros.sds.teaching import facts_from_check

    targets, action = facts_from_check(check)
    return checked_answer(output, Question(**check["question"]), targets, action).corrections


@dataclass(frozen=True)
class Answered:
    """One question's outcome, whatever answered it: what the model wrote and what the check made of it."""

    question: Question
    answer: str
    raw_answer: str
    ids: list[str]
    corrections: list[str]
    model: str


def answer(text: str, language: str, targets: list[scene.TargetFact], action: scene.ActionFact,
           ask: "scene.Ask | None", own: scene.OwnShipFact = scene.OwnShipFact()) -> Answered:
    """Classify the question (UserError for one that cannot be asked), let the model answer under the schema,
    check it; without a model (`ask` None or failing) the answer is built from the facts."""
    question = classify(text, language, targets)
    raw, model, error = ask(prompt(question, targets, action, own), schema(targets)) if ask else ("", "", "no model")
    checked = checked_answer(raw if not error else "", question, targets, action)
    corrections = [f"{error}: answered from the facts"] if error else checked.corrections
    return Answered(question, checked.answer, raw, checked.ids, corrections, model or "templates")
