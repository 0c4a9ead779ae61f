"""scene_llm with the real llm_node over ROS 2: a decision described, and the watch officer's questions
answered over sds/ask (checked answers, and clear errors for questions that cannot be asked)."""
import json
import math

import pytest

CONCLUSIONS = ("we give way to", "we stand on for", "most urgent", "the advice is for")


@pytest.mark.ros
def test_scene_llm_describes_a_decision_with_the_real_model():
    from helpers.lifecycle import bring_up
    from helpers.ros import goal_response, result_of, ros_node, spawn, stop, wait_until
    from rclpy.action import ActionClient
    from tango2_msgs.action import AskBridge
    from tango2_msgs.msg import NavigationDecision, SceneDescription, TargetAssessment

    ns = "/t5scene"
    llm = spawn(["-m", "tango2_ros.nodes.llm_node", "--ros-args", "-r", "__node:=llm_node", "-r", f"__ns:={ns}",
                 "-p", "n_parallel:=1", "-p", "n_ctx_per_seq:=1024"])
    scene_node = spawn(["-m", "tango2_ros.nodes.scene_llm", "--ros-args", "-r", "__node:=scene_llm", "-r",
                        f"__ns:={ns}", "-p", f"llm_action:={ns}/llm/generate", "-p", "period_s:=2.0",
                        "-p", "language:=en,ko"])
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
                return {s.language for s in scenes if s.model != "templates"} == {"en", "ko"}

            assert wait_until(described, 120, interval=1.0), [(s.model, s.corrections) for s in scenes]
            result = next(s for s in scenes if s.model != "templates")
            assert result.model.startswith("SmolLM2") and result.language == "en" and result.latency_s > 0
            assert "AIS-440123450" in result.text and "starboard" in result.text
            assert {kv.key for kv in result.facts} == {"action", "AIS-440123450", *CONCLUSIONS}
            # whatever the small model wrote, nothing in the text contradicts the facts it was checked against
            assert "to port" not in result.text and not math.isnan(result.latency_s)
            korean = next(s for s in scenes if s.language == "ko")  # the same picture for a crew that reads Korean
            assert "AIS-440123450" in korean.text and any("\uac00" <= c <= "\ud7a3" for c in korean.text)

            ask = ActionClient(node, AskBridge, f"{ns}/sds/ask")
            assert ask.wait_for_server(timeout_sec=10)

            def asked(question: str, language: str = "en"):
                handle = result_of(ask.send_goal_async(AskBridge.Goal(question=question, language=language)), 10)
                return goal_response(handle, 120).result

            answer = asked("Which vessels must we give way to?")
            assert answer.success and answer.kind == "give-way" and answer.model.startswith("SmolLM2")
            # the checked answer names exactly the give-way vessel, whatever the model wrote
            assert list(answer.ids) == ["AIS-440123450"] and "AIS-440123450" in answer.answer and answer.raw_answer
            assert {kv.key for kv in answer.facts} == {"action", "AIS-440123450", *CONCLUSIONS}
            for question, language, words in (("What is TS9's CPA?", "en", "no vessel TS9"),
                                              ("Where is it?", "fr", "unsupported language 'fr'"),
                                              ("", "en", "the question is empty")):
                refused = asked(question, language)
                assert not refused.success and words in refused.error, refused.error
            assert asked("왜 우현으로 변침합니까?", "ko").kind == "why"  # the node answers on after refusals

            _an_agents_ask_bridge_call_is_the_same_question(node, ns)
    finally:
        outputs = stop(scene_node) + stop(llm)
    assert "Traceback" not in outputs, outputs[max(0, outputs.find("Traceback") - 2000):][:6000]  # the traceback, if any


def _an_agents_ask_bridge_call_is_the_same_question(node, ns: str) -> None:
    """An outside agent's `ask_bridge` tool call goes over the same action; unknown tools and bad arguments are
    refused with the reason."""
    from tango2_ros.ros.agent_tools import AgentTools

    tools = AgentTools(node, ns)
    (reply,) = tools.run([{"id": "call_1", "type": "function", "function": {
        "name": "ask_bridge", "arguments": json.dumps({"question": "Who do we give way to?"})}}])
    result = json.loads(reply["content"])
    assert reply["tool_call_id"] == "call_1" and result["kind"] == "give-way", result
    assert result["ids"] == ["AIS-440123450"] and "AIS-440123450" in result["answer"]
    unknown, malformed = tools.run([{"id": "c2", "function": {"name": "fire_flares", "arguments": "{}"}},
                                    {"id": "c3", "function": {"name": "ask_bridge", "arguments": "{oops"}}])
    assert "unknown tool 'fire_flares'" in json.loads(unknown["content"])["error"]
    assert "needs" in json.loads(malformed["content"])["error"]
