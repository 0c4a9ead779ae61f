"""The OpenAI-style chat API over the on-device runtime: requests checked and turned into one generation,
results shaped as the API's objects. ROS-free; the `llm_api` node serves it over HTTP through the Generate action.

What a request may ask: `messages` (system, developer, user, assistant with or without `tool_calls`, tool
results; text content or text parts), `max_tokens` / `max_completion_tokens`, `temperature`, `stop`, `stream`
(with `stream_options.include_usage`), `response_format` (`text`, `json_object`, `json_schema`), `tools` in the
function form and `tool_choice` (`none`, `auto`, `required`, one function). Anything else, and `n` other than 1,
is refused with the API's error shape, as unknown fields are: a client that believes a field is honoured when
it is not would be misled.

Tools reach a model without native tool calling as a JSON Schema: the answer must be either
`{"content": "..."}` or `{"tool": NAME, "arguments": {...}}` with the arguments of that tool's own schema, so a
call is always well-formed and names a tool that exists; the tools are described to the model in a system turn.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field

MAX_BODY_BYTES = 1 << 20
FIELDS = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "stop", "stream",
          "stream_options", "response_format", "tools", "tool_choice", "n", "seed", "user", "top_p",
          "parallel_tool_calls", "presence_penalty", "frequency_penalty", "metadata", "store"}
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "user"}
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
# Generate.Result error codes -> HTTP status and the API's error type
HTTP_OF_CODE = {"bad-request": (400, "invalid_request_error"), "no-model": (503, "service_unavailable"),
                "busy": (429, "rate_limit_exceeded"), "failed": (500, "server_error")}


class ApiError(Exception):
    """A request the API answers with an error object: status, message, type, offending parameter, code."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict


@dataclass(frozen=True)
class ChatRequest:
    model: str
    turns: tuple[tuple[str, str], ...]  # (role, content) as the model's chat template takes them
    max_tokens: int | None
    temperature: float
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool
    response_schema: dict | None  # response_format's schema ({} for json_object: any object)
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "none"  # none, auto, required, or a tool's name
    id: str = field(default_factory=lambda: "chatcmpl-" + secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def calls_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"

    def schema(self) -> dict | None:
        """What the answer must satisfy: the tool-call form, the response format's schema, or nothing."""
        if not self.calls_tools:
            return self.response_schema
        calls = [{"type": "object", "properties": {"tool": {"const": t.name}, "arguments": t.parameters},
                  "required": ["tool", "arguments"], "additionalProperties": False}
                 for t in self.tools if self.tool_choice in ("auto", "required", t.name)]
        if self.tool_choice == "auto":
            calls.insert(0, {"type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"],
                             "additionalProperties": False})
        return calls[0] if len(calls) == 1 else {"anyOf": calls}

    def chat_turns(self) -> list[tuple[str, str]]:
        """The conversation for the chat template; with tools, a system turn that describes them first."""
        if not self.calls_tools:
            return list(self.turns)
        listed = "\n".join(f"- {t.name}: {t.description or 'no description'}; arguments: "
                           f"{json.dumps(t.parameters, separators=(',', ':'))}" for t in self.tools)
        how = ('Answer with {"tool": NAME, "arguments": {...}} to call a tool'
               + (', or with {"content": "..."} to answer in words.' if self.tool_choice == "auto" else "."))
        return [("system", f"You can call these tools:\n{listed}\n{how}"), *self.turns]


def parse_chat_request(body: bytes) -> ChatRequest:
    """A checked chat completion request; ApiError(400) naming the parameter for anything malformed."""
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad("the body must be a JSON object")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise bad(f"unrecognized request argument(s): {', '.join(unknown)}", unknown[0])
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad("'model' is required: a name or name@version from GET /v1/models", "model")
    if data.get("n", 1) != 1:
        raise bad("only n=1 is supported", "n")
    tools = _tools(data.get("tools"))
    tool_choice = _tool_choice(data.get("tool_choice"), tools)
    response_schema = _response_schema(data.get("response_format"))
    if response_schema is not None and tools and tool_choice != "none":
        raise bad("response_format and tools cannot be combined: give one", "response_format")
    stream_options = data.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise bad("'stream_options' must be an object", "stream_options")
    return ChatRequest(
        model=model.strip(), turns=tuple(_turns(data.get("messages"))),
        max_tokens=_max_tokens(data), temperature=_number(data.get("temperature", 0.0), "temperature", 0.0, 2.0),
        stop=_stop(data.get("stop")), stream=_flag(data.get("stream", False), "stream"),
        include_usage=_flag(stream_options.get("include_usage", False), "stream_options.include_usage"),
        response_schema=response_schema, tools=tools, tool_choice=tool_choice)


def _turns(messages) -> list[tuple[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise bad("'messages' must be a non-empty list", "messages")
    turns = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise bad(f"{where}: a message is an object with a role in {', '.join(ROLES)}", where)
        role, content = message["role"], _text(message.get("content"), f"{where}.content")
        if role == "assistant" and message.get("tool_calls"):
            content = "\n".join([content] * bool(content) + [_call_text(call, where) for call in message["tool_calls"]])
        if role == "tool":
            content = f"Result of tool call {message.get('tool_call_id', '')}: {content}".replace("  ", " ")
        turns.append((ROLES[role], content))
    if not any(content.strip() for _, content in turns):
        raise bad("every message is empty", "messages")
    return turns


def _text(content, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad(f"{where}: only text parts are understood by this model", where)
            parts.append(part["text"])
        return "\n".join(parts)
    raise bad(f"{where} must be a string or a list of text parts", where)


def _call_text(call, where: str) -> str:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise bad(f"{where}.tool_calls: each call needs function.name", where)
    return json.dumps({"tool": function["name"], "arguments": _arguments(function.get("arguments", "{}"), where)})


def _arguments(arguments, where: str):
    if isinstance(arguments, dict):
        return arguments
    try:
        return json.loads(arguments)
    except (TypeError, json.JSONDecodeError):
        raise bad(f"{where}.tool_calls: function.arguments must be a JSON object text", where) from None


def _tools(tools) -> tuple[Tool, ...]:
    from tango2_ros.core.runtime.schema import SchemaError, compile_schema

    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise bad("'tools' must be a list", "tools")
    parsed = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict):
            raise bad(f"{where}: a tool is {{\"type\": \"function\", \"function\": {{...}}}}", where)
        name = function.get("name")
        if not isinstance(name, str) or not name or len(name) > 64 or set(name) - NAME_CHARS:
            raise bad(f"{where}.function.name: 1-64 letters, digits, '_' or '-'", where)
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        try:
            compile_schema(json.dumps(parameters))
        except SchemaError as exc:
            raise bad(f"{where}.function.parameters: {exc}", where) from None
        parsed.append(Tool(name, str(function.get("description", "")), parameters))
    if len({t.name for t in parsed}) != len(parsed):
        raise bad("tool names must be unique", "tools")
    return tuple(parsed)


def _tool_choice(choice, tools: tuple[Tool, ...]) -> str:
    if choice is None:
        return "auto" if tools else "none"
    if choice in ("none", "auto", "required"):
        if choice != "none" and not tools:
            raise bad(f"tool_choice {choice!r} needs tools", "tool_choice")
        return choice
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    if name not in {t.name for t in tools}:
        raise bad("tool_choice names no tool of the request", "tool_choice")
    return name


def _response_schema(response_format) -> dict | None:
    from tango2_ros.core.runtime.schema import SchemaError, compile_schema

    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise bad("response_format.json_schema.schema must be a JSON Schema object", "response_format")
        try:
            compile_schema(json.dumps(schema))
        except SchemaError as exc:
            raise bad(f"response_format: {exc}", "response_format") from None
        return schema
    raise bad("response_format.type must be text, json_object or json_schema", "response_format")


def _max_tokens(data: dict) -> int | None:
    value = data.get("max_completion_tokens", data.get("max_tokens"))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 131072:
        raise bad("max_tokens must be an integer in [1, 131072]", "max_tokens")
    return value


def _number(value, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise bad(f"{name} must be a number in [{low:g}, {high:g}]", name)
    return float(value)


def _flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise bad(f"{name} must be true or false", name)
    return value


def _stop(stop) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise bad("stop must be a string or a list of at most 4 non-empty strings", "stop")
    return tuple(stops)


# -- results -------------------------------------------------------------------------------------------------

def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """The text up to the first stop sequence, and whether one was found."""
    cuts = [text.find(s) for s in stops if s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


@dataclass(frozen=True)
class Answer:
    content: str | None
    tool_calls: list[dict] | None
    finish_reason: str  # stop, length, tool_calls


def answer_of(request: ChatRequest, text: str, finish_reason: str) -> Answer:
    """The model's text as the API's message: words, or the tool call the constrained JSON spells."""
    reason = "length" if finish_reason == "length" else "stop"
    if not request.calls_tools:
        return Answer(text, None, reason)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return Answer(text, None, reason)  # cut short by max_tokens: the text as it is
    if isinstance(value, dict) and "tool" in value:
        call = {"id": "call_" + secrets.token_hex(8), "type": "function",
                "function": {"name": value["tool"], "arguments": json.dumps(value.get("arguments", {}))}}
        return Answer(None, [call], "tool_calls")
    return Answer(str(value.get("content", "")) if isinstance(value, dict) else text, None, reason)


def usage(prompt_tokens: int, tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": tokens, "total_tokens": prompt_tokens + tokens}


def completion(request: ChatRequest, answer: Answer, model: str, prompt_tokens: int, tokens: int) -> dict:
    message = {"role": "assistant", "content": answer.content}
    if answer.tool_calls:
        message["tool_calls"] = answer.tool_calls
    return {"id": request.id, "object": "chat.completion", "created": request.created, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason, "logprobs": None}],
            "usage": usage(prompt_tokens, tokens)}


def chunk(request: ChatRequest, model: str, delta: dict, finish_reason: str | None = None,
          usage_counts: dict | None = None) -> dict:
    """One server-sent event's object; the usage chunk (stream_options.include_usage) has no choices."""
    body = {"id": request.id, "object": "chat.completion.chunk", "created": request.created, "model": model,
            "choices": [] if usage_counts else [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                                                 "logprobs": None}]}
    if usage_counts:
        body["usage"] = usage_counts
    return body


def models_list(served: list[tuple[str, str]]) -> dict:
    """GET /v1/models: each served model (name@version) with the state its node reports."""
    return {"object": "list", "data": [{"id": label, "object": "model", "created": 0, "owned_by": "tango2",
                                        "state": state} for label, state in served]}


def matches(requested: str, served: str) -> bool:
    """A request names the served model by name@version or by name alone."""
    return requested in (served, served.partition("@")[0])
