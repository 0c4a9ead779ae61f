"""Situation descriptions: facts, the schema the model fills, the fact check, templates in two languages, and
scene_llm with the real llm_node over ROS 2."""
import json

import pytest

from tango2_ros.sds.scene import ActionFact, TargetFact, checked_text, schema, template_text

HEAD_ON = TargetFact("AIS-440123450", 2.0, 6.0, "head-on", "give-way", (14,), 0.0, 15.0)
PORT = TargetFact("RADAR-03", 300.0, 4.0, "crossing-stand-on", "stand-on", (15, 17), 0.4, 12.0)
TURN = ActionFact("altering", 30.0, 0.0, (8, 14))


def test_clock_and_side():
    assert (HEAD_ON.clock, HEAD_ON.side) == (12, "ahead")
    assert (PORT.clock, PORT.side) == (10, "port")
    assert TargetFact("x", 90.0, 1, "safe", "none", (), 3, 5).clock == 3


def test_a_faithful_answer_is_kept_and_a_contradiction_is_replaced():
    faithful = {"situation": "Two ships around us.", "advice": {"direction": "starboard", "reason": "Rule 14."},
                "targets": [{"id": "AIS-440123450", "side": "ahead", "encounter": "head-on", "description": "Tanker ahead."},
                            {"id": "RADAR-03", "side": "port", "encounter": "crossing-stand-on", "description": "Small."}]}
    text, corrections = checked_text(json.dumps(faithful), [HEAD_ON, PORT], TURN)
    assert corrections == [] and "Tanker ahead." in text and "alter course 30 deg to starboard" in text
    wrong = dict(faithful, advice={"direction": "port", "reason": "x"},
                 targets=[{"id": "AIS-440123450", "side": "starboard", "encounter": "overtaking", "description": "Wrong."},
                          {"id": "GHOST-1", "side": "port", "encounter": "safe", "description": "Invented."}])
    text, corrections = checked_text(json.dumps(wrong), [HEAD_ON, PORT], TURN)
    assert "Wrong." not in text and "Invented." not in text and "meeting head-on" in text
    assert any("AIS-440123450: replaced" in c and "overtaking" in c for c in corrections)
    assert any("GHOST-1" in c for c in corrections) and any("RADAR-03: the model left it out" in c for c in corrections)
    assert any(c.startswith("advice:") for c in corrections) and "to starboard" in text
    text, corrections = checked_text("{not json", [HEAD_ON], TURN)
    assert "not JSON" in corrections[0] and "AIS-440123450" in text


def test_schema_allows_only_existing_targets_and_known_words():
    s = schema([HEAD_ON, PORT])
    item = s["properties"]["targets"]["items"]["properties"]
    assert item["id"]["enum"] == ["AIS-440123450", "RADAR-03"] and "head-on" in item["encounter"]["enum"]
    assert s["properties"]["targets"]["minItems"] == 2


def test_templates_in_english_and_korean():
    english = template_text([HEAD_ON], TURN, "en")
    korean = template_text([HEAD_ON], TURN, "ko")
    assert "12 o'clock" in english and "rule 14" in english and "starboard" in english
    assert "12시 방향" in korean and "제14규칙" in korean and "우현으로 30도 변침" in korean
    assert "No vessel" in template_text([], ActionFact("route", 0, 0, ()), "en")


def test_depth_and_wind_from_own_ships_sensors_are_told_in_both_languages():
    from tango2_ros.sds.scene import ActionFact, OwnShipFact, facts_as_pairs, template_text

    action = ActionFact("route", 0.0, 0.0, ())
    own = OwnShipFact(depth_m=24.6, wind_speed_kn=12.4, wind_from_deg=45.0)
    assert "Depth 25 m, wind 12 kn from 045." in template_text([], action, "en", own)
    assert "수심 25m, 풍향 045도 풍속 12노트." in template_text([], action, "ko", own)
    assert ("own_ship", "depth 25 m, wind 12 kn from 045") in facts_as_pairs([], action, own)
    assert "own_ship" not in dict(facts_as_pairs([], action))  # nothing reported, nothing said


def test_the_model_is_told_the_navigators_conclusions_it_would_otherwise_work_out():
    from tango2_ros.sds.scene import facts_as_pairs

    clear = TargetFact("TS3", 90.0, 5.0, "safe", "none", (), 3.0, -4.0)
    pairs = dict(facts_as_pairs([HEAD_ON, PORT, clear], TURN))
    assert (pairs["we give way to"], pairs["we stand on for"]) == ("AIS-440123450", "RADAR-03")
    assert (pairs["most urgent"], pairs["the advice is for"]) == ("AIS-440123450", "AIS-440123450")
    assert pairs["TS3"].endswith("CPA 3.00 NM, past (opening)")  # no negative time to copy
    assert dict(facts_as_pairs([clear], TURN))["most urgent"] == "none"


@pytest.mark.parametrize("description, wrong", [
    ("Tanker 3.2 NM ahead, closest 0.4 NM in 12 min.", []),  # every number within the rounding written
    ("Tanker about 3 nautical miles ahead at 12 o'clock.", []),
    ("선수 3.2해리, 12분 후 최근접.", []),
    ("Tanker 4.5 NM ahead.", ["4.5 NM"]),  # neither its range nor its CPA
    ("Closest approach in 30 minutes.", ["30 minutes"]),
    ("Tanker at 3 o'clock.", ["3 o'clock"]),
    ("Tanker 3.25 NM ahead.", ["3.25 NM"]),  # written to the hundredth, so held to it: the range is 3.20
])
def test_numbers_in_a_description_must_match_the_facts_within_their_rounding(description, wrong):
    from tango2_ros.sds.numbers import contradictions

    fact = TargetFact("TS1", 2.0, 3.2, "head-on", "give-way", (14,), 0.4, 12.0)
    found = contradictions(description, fact.numbers())
    assert [w.split(" (")[0] for w in found] == wrong, found


def test_a_description_with_a_wrong_number_is_replaced_by_the_facts():
    answer = {"situation": "One ship.", "advice": {"direction": "starboard", "reason": "Rule 14."},
              "targets": [{"id": HEAD_ON.id, "side": "ahead", "encounter": "head-on",
                           "description": f"{HEAD_ON.range_nm + 2:.1f} NM ahead."}]}
    text, corrections = checked_text(json.dumps(answer), [HEAD_ON], TURN)
    assert any(c.startswith(f"{HEAD_ON.id}: replaced") and " NM (facts: " in c for c in corrections), corrections
    assert f"{HEAD_ON.range_nm + 2:.1f} NM ahead." not in text


def test_numbers_in_the_situation_and_the_advice_must_be_in_the_picture():
    answer = {"situation": "Two ships, the nearer 9.9 NM away.", "advice": {"direction": "starboard",
              "reason": "Alter 45 degrees for TS1."},
              "targets": [{"id": t.id, "side": t.side, "encounter": t.encounter, "description": ""}
                          for t in (HEAD_ON, PORT)]}
    text, corrections = checked_text(json.dumps(answer), [HEAD_ON, PORT], TURN)
    assert any(c.startswith("situation: dropped") and "9.9 NM" in c for c in corrections)
    assert any(c.startswith("advice reason: dropped") and "45 degrees" in c for c in corrections)
    assert "9.9" not in text and "45 degrees" not in text
    answer.update(situation="Two ships, the nearer 4 NM away.", advice={"direction": "starboard",
                                                                        "reason": "Alter 30 degrees."})
    text, corrections = checked_text(json.dumps(answer), [HEAD_ON, PORT], TURN)
    assert corrections == [] and "the nearer 4 NM away" in text and "Alter 30 degrees." in text
