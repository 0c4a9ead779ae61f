"""The OpenAI-style request check and result shapes: what a request may ask, the error for what it may not, the
tool-call form a model without native tool calling answers in, stop sequences."""
import json

import pytest

from tango2_ros.core import openai_api as api
from tango2_ros.core.runtime.schema import compile_schema

WEATHER = {"type": "function", "function": {"name": "set_vent", "description": "open the roof vents",
                                            "parameters": {"type": "object", "properties": {
                                                "percent": {"type": "number", "minimum": 0, "maximum": 100}},
                                                "required": ["percent"]}}}


def parsed(**fields) -> api.ChatRequest:
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hello"}], **fields}
    return api.parse_chat_request(json.dumps(body).encode())


def test_a_plain_request_becomes_one_chat():
    request = parsed(max_tokens=16, temperature=0.5, stop=["\n\n"], stream=True,
                     stream_options={"include_usage": True})
    assert request.turns == (("user", "Hello"),) and request.max_tokens == 16 and request.temperature == 0.5
    assert request.stop == ("\n\n",) and request.stream and request.include_usage and request.schema() is None
    assert request.id.startswith("chatcmpl-") and not request.calls_tools


def test_roles_text_parts_tool_calls_and_tool_results_reach_the_chat_template():
    request = parsed(messages=[
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Open"}, {"type": "text", "text": "the vents"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "set_vent", "arguments": '{"percent": 30}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"}])
    roles = [role for role, _ in request.turns]
    assert roles == ["system", "user", "assistant", "user"]
    assert request.turns[1][1] == "Open\nthe vents"
    assert json.loads(request.turns[2][1]) == {"tool": "set_vent", "arguments": {"percent": 30}}
    assert request.turns[3][1] == "Result of tool call call_1: ok"


def test_json_schema_and_json_object_response_formats():
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    assert parsed(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
                  ).schema() == schema
    assert parsed(response_format={"type": "json_object"}).schema() == {"type": "object"}
    assert parsed(response_format={"type": "text"}).schema() is None


def test_tools_become_a_schema_every_call_of_which_is_well_formed():
    auto = parsed(tools=[WEATHER])
    assert auto.tool_choice == "auto" and auto.calls_tools
    schema = auto.schema()
    assert [option["properties"].get("tool", {}).get("const") for option in schema["anyOf"]] == [None, "set_vent"]
    compile_schema(json.dumps(schema))  # the grammar can express it
    assert "set_vent" in auto.chat_turns()[0][1] and auto.chat_turns()[0][0] == "system"
    required = parsed(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "set_vent"}})
    assert required.schema()["properties"]["tool"] == {"const": "set_vent"}
    assert parsed(tools=[WEATHER], tool_choice="none").schema() is None


def test_the_models_json_becomes_a_tool_call_or_words():
    request = parsed(tools=[WEATHER])
    call = api.answer_of(request, '{"tool": "set_vent", "arguments": {"percent": 40}}', "stop")
    assert call.finish_reason == "tool_calls" and call.content is None
    assert call.tool_calls[0]["function"] == {"name": "set_vent", "arguments": '{"percent": 40}'}
    words = api.answer_of(request, '{"content": "Vents are fine."}', "stop")
    assert words == api.Answer("Vents are fine.", None, "stop")
    cut = api.answer_of(request, '{"content": "Vents are', "length")
    assert cut.finish_reason == "length" and cut.content == '{"content": "Vents are'


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), 400, "'model' is required"),
    (json.dumps({"model": "m", "messages": []}).encode(), 400, "'messages' must be a non-empty list"),
    (json.dumps({"model": "m", "messages": [{"role": "robot", "content": "x"}]}).encode(), 400, "a role in"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": ""}]}).encode(), 400, "every message is empty"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}).encode(), 400,
     "only text parts"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "best_of": 3}).encode(), 400,
     "unrecognized request argument(s): best_of"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}).encode(), 400, "only n=1"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}).encode(), 400,
     "max_tokens must be an integer"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 9}).encode(), 400,
     "temperature must be a number in [0, 2]"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 5}).encode(), 400,
     "at most 4"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}).encode(), 400,
     "stream must be true or false"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {
        "type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {"a": {
            "type": "string", "pattern": "abc"}}}}}}).encode(), 400, "must be anchored"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [
        {"type": "function", "function": {"name": "bad name!"}}]}).encode(), 400, "function.name"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [
        {"type": "function", "function": {"name": "t", "parameters": {"type": "wibble"}}}]}).encode(), 400,
     "function.parameters"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}).encode(), 400,
     "needs tools"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER],
                 "tool_choice": {"type": "function", "function": {"name": "fly"}}}).encode(), 400, "names no tool"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER],
                 "response_format": {"type": "json_object"}}).encode(), 400, "cannot be combined"),
    (b"{" + b" " * api.MAX_BODY_BYTES + b"}", 413, "larger than"),
])
def test_malformed_requests_get_the_apis_error_shape(body, status, words):
    with pytest.raises(api.ApiError) as caught:
        api.parse_chat_request(body)
    assert caught.value.status == status and words in caught.value.message, caught.value.message
    error = caught.value.body()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"


def test_stop_sequences_cut_at_the_first_one():
    assert api.cut_at_stop("one. two\n\nthree END", ("END", "\n\n")) == ("one. two", True)
    assert api.cut_at_stop("no stop here", ("END",)) == ("no stop here", False)


def test_a_model_is_named_by_name_or_name_at_version():
    assert api.matches("sds-bridge", "sds-bridge@1.0.0-lora") and api.matches("sds-bridge@1.0.0-lora",
                                                                               "sds-bridge@1.0.0-lora")
    assert not api.matches("sds-bridge@2.0.0", "sds-bridge@1.0.0-lora") and not api.matches("gpt-4o", "a@1")
