"""Situation descriptions: facts, the schema the model fills, the fact check, templates in two languages, and
scene_llm with the real llm_node over ROS 2."""
import json
import math

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


@pytest.mark.ros
def test_scene_llm_describes_a_decision_with_the_real_model():
    from helpers.lifecycle import bring_up
    from helpers.ros import ros_node, spawn, stop, wait_until
    from tango2_msgs.msg import NavigationDecision, SceneDescription, TargetAssessment

    ns = "/t5scene"
    llm = spawn(["-m", "tango2_ros.nodes.llm_node", "--ros-args", "-r", "__node:=llm_node", "-r", f"__ns:={ns}",
                 "-p", "n_parallel:=1", "-p", "n_ctx_per_seq:=1024"])
    scene_node = spawn(["-m", "tango2_ros.nodes.scene_llm", "--ros-args", "-r", "__node:=scene_llm", "-r",
                        f"__ns:={ns}", "-p", f"llm_action:={ns}/llm/generate", "-p", "period_s:=2.0"])
    try:
        with ros_node("scene_probe") as node:
            bring_up(node, f"{ns}/llm_node")
            bring_up(node, f"{ns}/scene_llm")
            scenes: list[SceneDescription] = []
            node.create_subscription(SceneDescription, f"{ns}/sds/scene", scenes.append, 10)
            publisher = node.create_publisher(NavigationDecision, f"{ns}/sds/decision", 10)
            decision = NavigationDecision(state="altering", action_required=True, course_change_deg=30.0,
                                          target_course_deg=30.0, target_speed_kn=12.0, rules=[8, 14], assessments=[
                TargetAssessment(target_id="AIS-440123450", encounter=TargetAssessment.ENCOUNTER_HEAD_ON,
                                 encounter_name="head-on", role=TargetAssessment.ROLE_GIVE_WAY, rules=[14], risk=1.0,
                                 cpa_m=0.0, tcpa_s=900.0, relative_bearing_deg=1.0)])

            def described():
                publisher.publish(decision)
                return any(s.model != "templates" for s in scenes)

            assert wait_until(described, 120, interval=1.0), [(s.model, s.corrections) for s in scenes]
            result = next(s for s in scenes if s.model != "templates")
            assert result.model.startswith("SmolLM2") and result.language == "en" and result.latency_s > 0
            assert "AIS-440123450" in result.text and "starboard" in result.text
            assert {kv.key for kv in result.facts} == {"action", "AIS-440123450"}
            # whatever the small model wrote, nothing in the text contradicts the facts it was checked against
            assert "to port" not in result.text and not math.isnan(result.latency_s)
    finally:
        outputs = stop(scene_node) + stop(llm)
    assert "Traceback" not in outputs
