"""Situation descriptions: facts from the tracker and the colreg decision, words from a language model, and a
check that the words do not contradict the facts.

The model fills a JSON Schema whose enums come from the facts (target ids, encounter types, sides, directions),
so it can only name things that exist; what it says about each target is then compared with the facts and, on
a contradiction (encounter, side, turn direction), replaced by a sentence built from the facts, recorded as a
correction. Templates give the same description in English and Korean without a model.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Callable

from tango2_ros.sds.numbers import contradictions

ENCOUNTER_WORDS = {
    "en": {"head-on": "meeting head-on", "crossing-give-way": "crossing from starboard",
           "crossing-stand-on": "crossing from port", "overtaking": "being overtaken by us",
           "overtaken": "overtaking us", "safe": "passing clear"},
    "ko": {"head-on": "정면으로 마주침", "crossing-give-way": "우현에서 횡단",
           "crossing-stand-on": "좌현에서 횡단", "overtaking": "본선이 추월 중",
           "overtaken": "본선을 추월 중", "safe": "안전하게 통과"},
}
ROLE_WORDS = {"en": {"give-way": " (we give way)", "stand-on": " (we stand on)", "none": ""},
              "ko": {"give-way": " (본선 피항)", "stand-on": " (본선 유지)", "none": ""}}
SIDES = ("ahead", "starboard", "astern", "port")
SIDE_WORDS = {"ko": {"ahead": "선수", "starboard": "우현", "astern": "선미", "port": "좌현"}}
DIRECTIONS = ("starboard", "port", "keep course")
# how the scene node, the ask service and the CLI reach a model: (prompt, JSON Schema) -> (text, model, error)
Ask = Callable[[str, dict], tuple[str, str, str]]


@dataclass(frozen=True)
class TargetFact:
    id: str
    relative_bearing_deg: float
    range_nm: float
    encounter: str
    role: str
    rules: tuple[int, ...]
    cpa_nm: float
    tcpa_min: float

    @property
    def clock(self) -> int:
        """Bearing as a clock position (12 = dead ahead, 3 = starboard beam)."""
        return round(self.relative_bearing_deg / 30.0) % 12 or 12

    def numbers(self) -> dict[str, list[float]]:
        """What a sentence about this target may state, by kind (tango2_ros.sds.numbers)."""
        return {"distance": [self.range_nm, self.cpa_nm], "time": [self.tcpa_min], "clock": [float(self.clock)],
                "angle": [self.relative_bearing_deg % 360.0]}

    @property
    def side(self) -> str:
        b = self.relative_bearing_deg % 360.0
        if b <= 22.5 or b >= 337.5:
            return "ahead"
        if b < 157.5:
            return "starboard"
        if b <= 202.5:
            return "astern"
        return "port"


@dataclass(frozen=True)
class ActionFact:
    state: str
    course_change_deg: float
    speed_change_kn: float
    rules: tuple[int, ...]

    @property
    def direction(self) -> str:
        if self.course_change_deg > 0.5:
            return "starboard"
        if self.course_change_deg < -0.5:
            return "port"
        return "keep course"


@dataclass(frozen=True)
class OwnShipFact:
    """What own ship's sensors say besides position and motion (NaN: not reported)."""

    depth_m: float = math.nan
    wind_speed_kn: float = math.nan
    wind_from_deg: float = math.nan

    def words(self, language: str = "en") -> str:
        parts = []
        if math.isfinite(self.depth_m):
            parts.append(f"수심 {self.depth_m:.0f}m" if language == "ko" else f"depth {self.depth_m:.0f} m")
        if math.isfinite(self.wind_speed_kn) and math.isfinite(self.wind_from_deg):
            parts.append(f"풍향 {self.wind_from_deg:03.0f}도 풍속 {self.wind_speed_kn:.0f}노트" if language == "ko"
                         else f"wind {self.wind_speed_kn:.0f} kn from {self.wind_from_deg:03.0f}")
        return ", ".join(parts)


def give_way_to(targets: list[TargetFact]) -> list[str]:
    return [t.id for t in targets if t.role == "give-way"]


def stand_on_for(targets: list[TargetFact]) -> list[str]:
    return [t.id for t in targets if t.role == "stand-on"]


def at_risk(targets: list[TargetFact]) -> list[str]:
    return [t.id for t in targets if t.encounter != "safe"]


def most_urgent(targets: list[TargetFact]) -> list[str]:
    """The first target at risk of the ranked picture (none when every vessel passes clear)."""
    return at_risk(targets)[:1]


def acted_on(targets: list[TargetFact]) -> list[str]:
    """The vessels the advice is for: those we give way to, else those at risk (at most three)."""
    return (give_way_to(targets) or at_risk(targets))[:3]


def _closest(t: TargetFact) -> str:
    if t.tcpa_min < 0:
        return f"CPA {t.cpa_nm:.2f} NM, past (opening)"
    return f"CPA {t.cpa_nm:.2f} NM in {t.tcpa_min:.0f} min"


def facts_as_pairs(targets: list[TargetFact], action: ActionFact, own: OwnShipFact = OwnShipFact(),
                   language: str = "en") -> list[tuple[str, str]]:
    """The facts as the model is told them: every number at the precision a description states it (TCPA in whole
    minutes, CPA to 0.01 NM, range to 0.1 NM), each encounter and role also in the answer's language, and the
    navigator's conclusions (who we give way to, who is most urgent), so that a right answer copies what it says
    instead of rounding, translating or working it out again."""
    pairs = [("action", f"{action.state}; course {action.course_change_deg:+.0f} deg; speed {action.speed_change_kn:+.1f} kn;"
                        f" rules {list(action.rules)}")]
    if own.words():
        pairs.append(("own_ship", own.words()))
    for t in targets:
        pairs.append((t.id, f"{t.clock} o'clock ({t.side}), {t.range_nm:.1f} NM, {t.encounter} "
                            f"({ENCOUNTER_WORDS[language][t.encounter]}), role {t.role}{ROLE_WORDS[language][t.role]}, "
                            f"rules {list(t.rules)}, {_closest(t)}"))
    for key, ids in (("we give way to", give_way_to(targets)), ("we stand on for", stand_on_for(targets)),
                     ("most urgent", most_urgent(targets)), ("the advice is for", acted_on(targets))):
        pairs.append((key, ", ".join(ids) or "none"))
    return pairs


def target_sentence(t: TargetFact, language: str = "en") -> str:
    if language == "ko":
        rules = ", ".join(f"제{r}규칙" for r in t.rules) or "해당 없음"
        return (f"{t.id}: {t.clock}시 방향 ({SIDE_WORDS['ko'][t.side]}) {t.range_nm:.1f}해리, "
                f"{ENCOUNTER_WORDS['ko'][t.encounter]}{ROLE_WORDS['ko'][t.role]}, {rules}, "
                f"최근접 {t.cpa_nm:.2f}해리 ({t.tcpa_min:.0f}분 후).")
    rules = ", ".join(f"rule {r}" for r in t.rules) or "no rule engaged"
    return (f"{t.id} at {t.clock} o'clock ({t.side}), {t.range_nm:.1f} NM, {ENCOUNTER_WORDS['en'][t.encounter]}"
            f"{ROLE_WORDS['en'][t.role]}; {rules}; closest approach {t.cpa_nm:.2f} NM in {t.tcpa_min:.0f} min.")


def action_sentence(a: ActionFact, language: str = "en") -> str:
    rules = ", ".join(str(r) for r in a.rules)
    if language == "ko":
        if a.direction == "keep course" and a.speed_change_kn == 0:
            return f"침로와 속력을 유지합니다 (규칙 {rules or '-'})."
        turn = {"starboard": f"우현으로 {a.course_change_deg:.0f}도 변침", "port": f"좌현으로 {-a.course_change_deg:.0f}도 변침",
                "keep course": "침로 유지"}[a.direction]
        speed = f", 속력 {a.speed_change_kn:+.1f}노트" if a.speed_change_kn else ""
        return f"권고: {turn}{speed} (규칙 {rules})."
    if a.direction == "keep course" and a.speed_change_kn == 0:
        return f"Advice: keep course and speed{f' (rules {rules})' if rules else ''}."
    turn = {"starboard": f"alter course {a.course_change_deg:.0f} deg to starboard",
            "port": f"alter course {-a.course_change_deg:.0f} deg to port", "keep course": "keep course"}[a.direction]
    speed = f" and change speed by {a.speed_change_kn:+.1f} kn" if a.speed_change_kn else ""
    return f"Advice: {turn}{speed} (rules {rules})."


def template_text(targets: list[TargetFact], action: ActionFact, language: str = "en",
                  own: OwnShipFact = OwnShipFact()) -> str:
    if language == "ko":
        head = f"주변 선박 {len(targets)}척." if targets else "주변에 위험 선박이 없습니다."
    else:
        head = f"{len(targets)} vessel(s) around own ship." if targets else "No vessel of concern around own ship."
    conditions = [own.words(language).capitalize() + "."] if own.words() else []
    return " ".join([head, *conditions, *(target_sentence(t, language) for t in targets),
                     action_sentence(action, language)])


def schema(targets: list[TargetFact]) -> dict:
    """What the model may say: only the targets that exist, only the words the check understands."""
    return {
        "type": "object",
        "properties": {
            "situation": {"type": "string", "maxLength": 120},
            "targets": {"type": "array", "minItems": len(targets), "maxItems": len(targets), "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "enum": [t.id for t in targets] or ["none"]},
                    "side": {"type": "string", "enum": list(SIDES)},
                    "encounter": {"type": "string", "enum": list(ENCOUNTER_WORDS["en"])},
                    "description": {"type": "string", "maxLength": 100},
                },
                "required": ["id", "side", "encounter", "description"],
            }},
            "advice": {"type": "object", "properties": {
                "direction": {"type": "string", "enum": list(DIRECTIONS)},
                "reason": {"type": "string", "maxLength": 100},
            }, "required": ["direction", "reason"]},
        },
        "required": ["situation", "targets", "advice"],
    }


LANGUAGE_NAMES = {"en": "English", "ko": "Korean"}


def prompt(targets: list[TargetFact], action: ActionFact, own: OwnShipFact = OwnShipFact(),
           language: str = "en") -> str:
    lines = [f"- {key}: {value}" for key, value in facts_as_pairs(targets, action, own, language)]
    return ("You are the bridge assistant of a ship. Describe the situation for the officer of the watch and give "
            f"the advice in the facts, in short plain {LANGUAGE_NAMES[language]}. Use only these facts:\n"
            + "\n".join(lines))


def _rules_words(rules: tuple[int, ...], language: str) -> str:
    if language == "ko":
        return ", ".join(f"제{r}규칙" for r in rules) or "해당 규칙 없음"
    return ", ".join(f"rule {r}" for r in rules) or "no rule"


def _checked_prefix(fact: TargetFact, language: str) -> str:
    """What the checked text says from the facts before the model's own words about a target."""
    if language == "ko":
        return f"{fact.id} ({fact.clock}시 방향, {fact.range_nm:.1f}해리, {_rules_words(fact.rules, 'ko')})"
    return f"{fact.id} ({fact.clock} o'clock, {fact.range_nm:.1f} NM, {_rules_words(fact.rules, 'en')})"


def checked_text(model_json: str, targets: list[TargetFact], action: ActionFact,
                 language: str = "en") -> tuple[str, list[str]]:
    """The model's description (in `language`) with every contradiction of the facts replaced; (text,
    corrections). The replacements are built from the facts in the same language."""
    try:
        answer = json.loads(model_json)
    except json.JSONDecodeError:
        return template_text(targets, action, language), [
            "the model's answer was not JSON: the description is built from the facts"]
    if not isinstance(answer, dict):
        return template_text(targets, action, language), [
            "the model's answer was not a JSON object: the description is built from the facts"]
    facts = {t.id: t for t in targets}
    corrections: list[str] = []
    picture = picture_numbers(targets, action)
    situation = str(answer.get("situation", "")).strip()
    wrong = contradictions(situation, picture)
    if wrong:
        corrections.append("situation: dropped, the model said " + ", ".join(wrong))
    parts = [] if wrong else [situation]
    described = set()
    items = answer.get("targets")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            corrections.append(f"dropped {item!r}: a target's description is an object")
            continue
        fact = facts.get(item.get("id"))
        if fact is None or fact.id in described:
            corrections.append(f"dropped a description of {item.get('id')!r}: no such target (or described twice)")
            continue
        described.add(fact.id)
        wrong = claims_against(item, fact) + contradictions(str(item.get("description", "")), fact.numbers())
        if wrong:
            corrections.append(f"{fact.id}: replaced, the model said " + ", ".join(wrong))
            parts.append(target_sentence(fact, language))
        else:
            parts.append(f"{_checked_prefix(fact, language)}: {str(item.get('description', '')).strip()}")
    for fact in targets:
        if fact.id not in described:
            corrections.append(f"{fact.id}: the model left it out; added from the facts")
            parts.append(target_sentence(fact, language))
    advice = answer.get("advice") if isinstance(answer.get("advice"), dict) else {}
    if advice.get("direction") != action.direction:
        corrections.append(f"advice: the model said {advice.get('direction')!r}, the decision is {action.direction!r}")
        parts.append(action_sentence(action, language))
    else:
        reason = str(advice.get("reason", "")).strip()
        wrong = contradictions(reason, picture)
        if wrong:
            corrections.append("advice reason: dropped, the model said " + ", ".join(wrong))
        parts.append(f"{action_sentence(action, language)} {'' if wrong else reason}".strip())
    return " ".join(p for p in parts if p), corrections


# words a target's description must not use for an encounter (English and Korean): the other side of a
# crossing, or a head-on meeting that is not one
FORBIDDEN_WORDS = {
    "crossing-give-way": ("port", "좌현", "head-on", "정면"), "crossing-stand-on": ("starboard", "우현", "head-on", "정면"),
    "overtaking": ("head-on", "정면"), "overtaken": ("head-on", "정면"), "safe": ("head-on", "정면"),
}
# what claims a role for own ship (English and Korean): a description may only claim the target's role
ROLE_CLAIMS = {"give-way": ("give way", "give-way", "keep out of", "피항"),
               "stand-on": ("stand on", "stand-on", "keep course and speed", "유지")}


def claims_against(item: dict, fact: TargetFact) -> list[str]:
    """What a model's description of a target says against the navigator's picture: its encounter, its side, or
    our role towards it (numbers aside)."""
    wrong = [f"{key} {item.get(key)!r} (fact: {getattr(fact, key)})" for key in ("encounter", "side")
             if item.get(key) != getattr(fact, key)]
    return wrong + contradicting_words(str(item.get("description", "")), fact)


def contradicting_words(description: str, fact: TargetFact) -> list[str]:
    """Words of a target's description that contradict its encounter or our role towards it, as
    "'port' (fact: crossing-give-way)"."""
    lowered = description.lower()
    wrong = [f"{word!r} (fact: {fact.encounter})" for word in FORBIDDEN_WORDS.get(fact.encounter, ())
             if (word in lowered if not word.isascii() else any(w.strip(".,;:()") == word for w in lowered.split()))]
    return wrong + [f"{claim!r} (fact: role {fact.role})" for role, claims in ROLE_CLAIMS.items() if role != fact.role
                    for claim in claims if claim in lowered]


def picture_numbers(targets: list[TargetFact], action: ActionFact) -> dict[str, list[float]]:
    """What a sentence about the whole picture may state: any target's numbers, the course change."""
    numbers: dict[str, list[float]] = {"angle": [abs(action.course_change_deg)]}
    for target in targets:
        for kind, values in target.numbers().items():
            numbers.setdefault(kind, []).extend(values)
    return numbers


@dataclass(frozen=True)
class Described:
    raw_text: str  # what the model wrote (empty without one)
    text: str  # after the check
    corrections: list[str]
    model: str


def describe(targets: list[TargetFact], action: ActionFact, language: str, ask: Ask | None,
             own: OwnShipFact = OwnShipFact()) -> Described:
    """The model's description under the schema, checked; without a model (or when it fails) built from the
    facts, with the reason as the correction."""
    if ask is None:
        return Described("", template_text(targets, action, language, own), [], "templates")
    raw, model, error = ask(prompt(targets, action, own, language), schema(targets))
    if error:
        return Described(raw, template_text(targets, action, language, own), [f"{error}: described from the facts"],
                         model or "templates")
    text, corrections = checked_text(raw, targets, action, language)
    return Described(raw, text, corrections, model)


MAX_TARGETS = 5


def ranked(targets: list[TargetFact], max_targets: int = MAX_TARGETS) -> list[TargetFact]:
    """The targets a description names, in the order of their risk: the encounters first, the soonest closest
    approach first."""
    return sorted(targets, key=lambda f: (f.encounter == "safe", f.tcpa_min if f.tcpa_min >= 0 else math.inf))[
        :max_targets]


def action_of(decision) -> ActionFact:
    """The action of a decision (a colreg.Decision or a NavigationDecision message: the same fields)."""
    return ActionFact(decision.state, decision.course_change_deg, decision.speed_change_kn, tuple(decision.rules))


def facts_of(decision) -> tuple[list[TargetFact], ActionFact]:
    """The description's facts from a COLREG decision (tango2_ros.sds.colreg.Decision)."""
    targets = [TargetFact(a.target_id, a.relative_bearing_deg, a.distance_nm, a.encounter, a.role, tuple(a.rules),
                          a.cpa_nm, a.tcpa_min) for a in decision.assessments]
    return ranked(targets), action_of(decision)
