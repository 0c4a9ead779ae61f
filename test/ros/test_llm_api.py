"""The OpenAI-style HTTP API, driven by clients nobody here wrote (the official `openai` client, LangChain's
ChatOpenAI) against llm_api and the real llm_node over ROS 2: models, plain, streamed, JSON-Schema and
tool-calling requests, stop sequences, a stream the client abandons (the generation is cancelled), API keys,
and the API's error codes."""
import json
import socket

import pytest

WEATHER = {"type": "function", "function": {"name": "set_vent", "description": "open the roof vents to a percentage",
                                            "parameters": {"type": "object", "properties": {
                                                "percent": {"type": "integer", "minimum": 0, "maximum": 100}},
                                                "required": ["percent"]}}}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.ros
def test_the_official_client_talks_to_the_on_device_model():
    import openai
    from diagnostic_msgs.msg import DiagnosticArray
    from helpers.lifecycle import bring_up, change_state
    from lifecycle_msgs.msg import Transition
    from helpers.ros import ros_node, spawn, stop, wait_until

    ns, port, locked_port = "/t21api", _free_port(), _free_port()
    llm = spawn(["-m", "tango2_ros.nodes.llm_node", "--ros-args", "-r", "__node:=llm_node", "-r", f"__ns:={ns}",
                 "-p", "n_parallel:=2", "-p", "n_ctx_per_seq:=1024", "-p", "stream_interval_tokens:=1"])
    common = ["-p", f"llm_action:={ns}/llm/generate", "-p", f"llm_node:={ns}/llm_node"]
    open_api = spawn(["-m", "tango2_ros.nodes.llm_api", "--ros-args", "-r", "__node:=llm_api", "-r", f"__ns:={ns}",
                      "-p", f"port:={port}", *common])
    locked_api = spawn(["-m", "tango2_ros.nodes.llm_api", "--ros-args", "-r", "__node:=locked_api", "-r",
                        f"__ns:={ns}", "-p", f"port:={locked_port}", "-p", "api_keys:=[s3cret]", *common])
    lonely_port = _free_port()  # an API whose llm_node is not there: no model to serve
    lonely_api = spawn(["-m", "tango2_ros.nodes.llm_api", "--ros-args", "-r", "__node:=lonely_api", "-r",
                        f"__ns:={ns}", "-p", f"port:={lonely_port}", "-p", f"llm_node:={ns}/nobody"])
    open_to_all = spawn(["-m", "tango2_ros.nodes.llm_api", "--ros-args", "-r", "__node:=open_api", "-r",
                         f"__ns:={ns}", "-p", "address:=0.0.0.0", "-p", f"port:={_free_port()}"])
    try:
        with ros_node("api_probe") as node:
            counters: dict[str, str] = {}
            node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: counters.update(
                {kv.key: kv.value for s in m.status if s.name == f"{ns}/llm_node" for kv in s.values}), 50)
            for name in ("llm_node", "llm_api", "locked_api", "lonely_api"):
                bring_up(node, f"{ns}/{name}")
            # any address but loopback needs API keys: the node refuses to configure without them
            assert not change_state(node, f"{ns}/open_api", Transition.TRANSITION_CONFIGURE)
            lonely = openai.OpenAI(base_url=f"http://127.0.0.1:{lonely_port}/v1", api_key="x", max_retries=0)
            assert lonely.models.list().data == []
            with pytest.raises(openai.InternalServerError) as no_model:
                lonely.chat.completions.create(model="any", messages=[{"role": "user", "content": "Hi"}])
            assert no_model.value.status_code == 503 and "no model is loaded" in no_model.value.body["message"]
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
            assert wait_until(lambda: client.models.list().data, 30)
            (served,) = client.models.list().data
            assert served.id == counters.get("model") and "@" in served.id

            _plain_by_name_and_streamed(client, served.id)
            schema = _schema_tools_and_stop(client, served.id)
            _a_closed_stream_is_cancelled(client, served.id, counters)
            _refusals(client, served.id)
            _langchain(port, served.id, schema)
            _keys(locked_port, served.id, client)
    finally:
        outputs = stop(open_to_all) + stop(lonely_api) + stop(locked_api) + stop(open_api) + stop(llm)
    assert "Traceback" not in outputs, outputs[max(0, outputs.find("Traceback") - 2000):][:6000]  # the traceback, if any


def _plain_by_name_and_streamed(client, model: str) -> None:
    """Plain, by name without the version, streamed with usage: the same greedy text streamed or not."""
    plain = client.chat.completions.create(model=model, max_tokens=12,
                                           messages=[{"role": "user", "content": "Name a colour."}])
    assert plain.model == model and plain.choices[0].message.content
    assert plain.usage.prompt_tokens > 5 and 0 < plain.usage.completion_tokens <= 12
    by_name = client.chat.completions.create(model=model.partition("@")[0], max_tokens=4,
                                             messages=[{"role": "user", "content": "Hi"}])
    assert by_name.choices[0].finish_reason in ("stop", "length")

    chunks = list(client.chat.completions.create(
        model=model, max_tokens=16, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Count from one to ten."}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage.completion_tokens <= 16
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert text.strip() == client.chat.completions.create(  # streamed or not, the same greedy answer
        model=model, max_tokens=16, messages=[{"role": "user", "content": "Count from one to ten."}]
    ).choices[0].message.content.strip()


def _schema_tools_and_stop(client, model: str) -> dict:
    """`json_schema`, a required tool call with bounded arguments, a stop sequence; returns the schema."""
    schema = {"type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "green"]}},
              "required": ["colour"]}
    structured = client.chat.completions.create(
        model=model, max_tokens=32, messages=[{"role": "user", "content": "Pick a colour."}],
        response_format={"type": "json_schema", "json_schema": {"name": "pick", "schema": schema}})
    assert json.loads(structured.choices[0].message.content)["colour"] in ("red", "green")

    called = client.chat.completions.create(
        model=model, max_tokens=48, tools=[WEATHER], tool_choice="required",
        messages=[{"role": "user", "content": "It is hot in the greenhouse. Open the vents."}])
    (call,) = called.choices[0].message.tool_calls
    assert called.choices[0].finish_reason == "tool_calls" and call.function.name == "set_vent"
    assert 0 <= json.loads(call.function.arguments)["percent"] <= 100

    stopped = client.chat.completions.create(model=model, max_tokens=40, stop=["three"],
                                             messages=[{"role": "user", "content": "Count: one, two, three, four"}])
    assert "three" not in stopped.choices[0].message.content
    return schema


def _a_closed_stream_is_cancelled(client, model: str, counters: dict) -> None:
    """The client goes away after one chunk: the llm_node counts a cancellation."""
    from helpers.ros import wait_until

    cancelled_before = int(counters.get("cancelled", 0))
    stream = client.chat.completions.create(model=model, max_tokens=400, stream=True,
                                            messages=[{"role": "user", "content": "Tell a long story."}])
    next(iter(stream))
    stream.close()  # the client goes away: the generation is cancelled, not run to 400 tokens
    assert wait_until(lambda: int(counters.get("cancelled", 0)) > cancelled_before, 30), counters


def _refusals(client, model: str) -> None:
    """404 unknown model; 400 out-of-range temperature, unknown field, a prompt longer than the context."""
    import openai

    for call_it, error in (
            (lambda: client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}]),
             openai.NotFoundError),
            (lambda: client.chat.completions.create(model=model, temperature=9,
                                                    messages=[{"role": "user", "content": "x"}]),
             openai.BadRequestError),
            (lambda: client.chat.completions.create(model=model, extra_body={"best_of": 2},
                                                    messages=[{"role": "user", "content": "x"}]),
             openai.BadRequestError),
            (lambda: client.chat.completions.create(model=model, max_tokens=1000,
                                                    messages=[{"role": "user", "content": "x " * 600}]),
             openai.BadRequestError)):  # longer than the context: the llm_node's bad-request code
        with pytest.raises(error) as caught:
            call_it()
        assert caught.value.body["message"], caught.value.body


def _langchain(port: int, model: str, schema: dict) -> None:
    """LangChain's ChatOpenAI, as an agent would use it: a tool bound, and structured output."""
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", model=model,
                      max_tokens=48, temperature=0, max_retries=0)
    tool_message = chat.bind_tools([WEATHER], tool_choice="set_vent").invoke("Open the roof vents halfway.")
    assert tool_message.tool_calls[0]["name"] == "set_vent"
    assert 0 <= tool_message.tool_calls[0]["args"]["percent"] <= 100
    picked = chat.with_structured_output({"title": "pick", "description": "a colour", **schema},
                                         method="json_schema").invoke("Pick a colour.")
    assert picked["colour"] in ("red", "green")


def _keys(locked_port: int, model: str, client) -> None:
    """401 with a wrong key, served with the right one; after every refusal the API answers on."""
    import openai

    locked = openai.OpenAI(base_url=f"http://127.0.0.1:{locked_port}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        locked.models.list()
    opened = openai.OpenAI(base_url=f"http://127.0.0.1:{locked_port}/v1", api_key="s3cret", max_retries=0)
    assert [m.id for m in opened.models.list().data] == [model]
    assert client.chat.completions.create(  # after every refusal the API answers on
        model=model, max_tokens=4, messages=[{"role": "user", "content": "Hi"}]).choices


@pytest.mark.ros
def test_a_full_queue_is_429_and_a_client_gone_before_a_whole_answer_cancels_it():
    """One sequence and no queue: a second request while the first runs is refused with 429 (the client's
    RateLimitError), none is lost or answered twice; a client that closes its connection before a non-streamed
    answer cancels the generation."""
    import threading

    import openai
    from diagnostic_msgs.msg import DiagnosticArray
    from helpers.lifecycle import bring_up
    from helpers.ros import ros_node, spawn, stop, wait_until

    ns, port = "/t21busy", _free_port()
    llm = spawn(["-m", "tango2_ros.nodes.llm_node", "--ros-args", "-r", "__node:=llm_node", "-r", f"__ns:={ns}",
                 "-p", "n_parallel:=1", "-p", "max_queue:=0", "-p", "n_ctx_per_seq:=1024"])
    api = spawn(["-m", "tango2_ros.nodes.llm_api", "--ros-args", "-r", "__node:=llm_api", "-r", f"__ns:={ns}",
                 "-p", f"port:={port}", "-p", f"llm_action:={ns}/llm/generate", "-p", f"llm_node:={ns}/llm_node"])
    try:
        with ros_node("busy_probe") as node:
            counters: dict[str, str] = {}
            node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: counters.update(
                {kv.key: kv.value for s in m.status if s.name == f"{ns}/llm_node" for kv in s.values}), 50)
            for name in ("llm_node", "llm_api"):
                bring_up(node, f"{ns}/{name}")
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
            assert wait_until(lambda: client.models.list().data, 30)
            model = client.models.list().data[0].id
            long_story = {"model": model, "max_tokens": 300, "messages": [{"role": "user", "content": "Tell a long story."}]}
            first: list = []
            worker = threading.Thread(target=lambda: first.append(client.chat.completions.create(**long_story)))
            worker.start()
            assert wait_until(lambda: counters.get("running") == "1", 30), counters
            with pytest.raises(openai.RateLimitError) as refused:
                client.chat.completions.create(model=model, max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
            assert refused.value.status_code == 429 and "queue full" in refused.value.body["message"]
            worker.join(120)
            assert len(first) == 1 and first[0].choices[0].message.content  # the running request was not lost

            cancelled = int(counters.get("cancelled", 0))
            body = json.dumps(long_story).encode()
            with socket.create_connection(("127.0.0.1", port)) as raw:  # a whole (non-streamed) answer, abandoned
                raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                assert wait_until(lambda: counters.get("running") == "1", 30), counters
            assert wait_until(lambda: int(counters.get("cancelled", 0)) > cancelled, 30), counters
            assert client.chat.completions.create(model=model, max_tokens=4,  # and the API serves on
                                                  messages=[{"role": "user", "content": "Hi"}]).choices
    finally:
        outputs = stop(api) + stop(llm)
    assert "Traceback" not in outputs, outputs[max(0, outputs.find("Traceback") - 2000):][:6000]  # the traceback, if any
