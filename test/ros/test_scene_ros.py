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
    from tango2_msgs.msg import NavigationDecision, SceneDescription

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
            decision = _head_on()

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


@pytest.mark.ros
def test_a_candidate_describer_in_shadow_is_judged_by_the_fact_check_and_never_published():
    """The base model describes; the learned bridge assistant, in an llm_node of its own, is asked after each
    description is out. Its raw descriptions are judged by the fact check (never published) and its score on
    /diagnostics reaches the gate: promoted after 2 decisions, or retired at once when a description contradicts
    the decision."""
    from helpers.diagnostics import DiagnosticsWatcher
    from helpers.lifecycle import bring_up
    from helpers.registry import llm_arguments, shadow_llm_arguments
    from helpers.ros import ros_node, spawn, stop
    from tango2_msgs.msg import NavigationDecision, SceneDescription
    from tango2_ros.cli.model_files import profile_model

    candidate = profile_model("sds", "llm")
    ns = "/t19scene"
    serving = spawn(llm_arguments(ns, "n_parallel:=1", "n_ctx_per_seq:=1024"))
    shadow = spawn(shadow_llm_arguments(ns, candidate, 1024))
    # one description per 30 s: the candidate answers in the time between (the next description would preempt it)
    scene_node = spawn(["-m", "tango2_ros.nodes.scene_llm", "--ros-args", "-r", "__node:=scene_llm", "-r",
                        f"__ns:={ns}", "-p", f"llm_action:={ns}/llm/generate", "-p", "period_s:=30.0",
                        "-p", f"shadow_llm_action:={ns}/llm_shadow/generate", "-p", "shadow.decisions:=2",
                        "-p", "diagnostics_period_s:=0.2"])
    try:
        with ros_node("scene_shadow_probe") as node:
            watcher = DiagnosticsWatcher(node, f"{ns}/scene_llm")
            for fqn in (f"{ns}/llm_node", f"{ns}/llm_shadow", f"{ns}/scene_llm"):
                bring_up(node, fqn)
            scenes: list[SceneDescription] = []
            node.create_subscription(SceneDescription, f"{ns}/sds/scene", scenes.append, 10)
            publisher = node.create_publisher(NavigationDecision, f"{ns}/sds/decision", 10)
            node.create_timer(1.0, lambda: publisher.publish(_head_on()))  # the colreg node publishes on

            def scored(status) -> dict:
                return json.loads(watcher.values(status).get("shadow") or "{}")

            score = scored(watcher.wait_for(lambda s: scored(s).get("promoted") or scored(s).get("retired"), 180))
            assert score["model"] == candidate and score["decisions"] >= 1, score
            if score["retired"]:  # a raw description that contradicts the decision retires it at once
                assert score["would_violate"] >= 1 and "would have broken a rule" in score["retired"], score
            else:
                assert score["decisions"] == 2 and score["agreement_pct"] >= 80.0, score
            assert scenes and all(s.model != candidate for s in scenes)  # nothing the candidate said was published
    finally:
        outputs = stop(scene_node) + stop(shadow) + stop(serving)
        print(outputs[-6000:])  # shown when the test fails
    assert "Traceback" not in outputs, outputs[max(0, outputs.find("Traceback") - 2000):][:6000]


def _head_on():
    from tango2_msgs.msg import NavigationDecision, TargetAssessment

    return NavigationDecision(state="altering", action_required=True, course_change_deg=30.0, target_course_deg=30.0,
                              target_speed_kn=12.0, rules=[8, 14], assessments=[
        TargetAssessment(target_id="AIS-440123450", encounter=TargetAssessment.ENCOUNTER_HEAD_ON,
                         encounter_name="head-on", role=TargetAssessment.ROLE_GIVE_WAY, rules=[14], risk=1.0,
                         cpa_m=0.0, tcpa_s=900.0, relative_bearing_deg=1.0)])
