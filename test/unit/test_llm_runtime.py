"""The llama.cpp runtime without ROS: real generation with the embedded SmolLM2 model."""
import json
import threading

import pytest

from tango2_ros.core.runtime import llama_engine, sampling
from tango2_ros.core.runtime.base import ModelLoadError, RuntimeSlot, NoModelError
from tango2_ros.core.runtime.default_models import default_llm_path
from tango2_ros.core.runtime.llama_engine import EngineError
from tango2_ros.core.runtime.llm import ChatTurn, LlmOptions, LlmRuntime
from tango2_ros.core.runtime.schema import SchemaError, compile_schema

STORY = "Tell a long story about a lighthouse keeper and the ships she guides through the fog."


@pytest.fixture(scope="module")
def runtime():
    runtime = LlmRuntime(default_llm_path(), LlmOptions(n_parallel=4, n_ctx_per_seq=1024, max_queue=4))
    yield runtime
    runtime.close()


def chat(runtime, text):
    return runtime.chat_prompt([ChatTurn("user", text)])


def test_generates_text_and_names_the_model(runtime):
    result = runtime.generate(chat(runtime, "Write one sentence about ships."), max_tokens=24)
    assert result.finish_reason in ("stop", "length")
    assert result.tokens > 0 and len(result.text.split()) >= 3
    assert result.tokens_per_s > 0
    assert runtime.identity.label.startswith("SmolLM2-135M-Instruct.Q4_1@sha256-")


def test_parallel_sequences_do_not_disturb_each_other(runtime):
    """Batched, each sequence still attends only to its own tokens: it continues its own pattern.

    Prompts with clear continuations are used: the shared KV cache sums attention in a different order when
    batched, so at a near-tie (logits 0.07 apart were seen) free text can legitimately flip a token.
    """
    prompts = ["1, 2, 3, 4, 5, 6,", "Monday, Tuesday, Wednesday,", "A, B, C, D, E, F,", "10, 20, 30, 40, 50,"]
    alone = [runtime.generate(p, max_tokens=3).text for p in prompts]
    requests = [runtime.start(p, max_tokens=3) for p in prompts]
    together = [r.wait(60).text for r in requests]
    assert together == alone
    assert alone[0].startswith(" 7") and "Thursday" in alone[1] and alone[2].startswith(" G") and alone[3].startswith(" 60")


def test_a_model_loaded_beside_the_serving_one_splits_the_threads_and_both_answer_as_alone():
    """The swap case: while the new model warms up, each engine decodes on half the threads (ggml's spinning
    workers on shared cores stall each other otherwise); the new one takes them all when it serves."""
    import threading

    serving = LlmRuntime(default_llm_path(), LlmOptions(n_threads=2, n_parallel=1, n_ctx_per_seq=512))
    serving.share_cores(True)
    new = LlmRuntime(default_llm_path(), LlmOptions(n_threads=2, n_parallel=1, n_ctx_per_seq=512, beside=True))
    try:
        prompts = [chat(serving, "Name three kinds of ships."), chat(serving, "What does a lighthouse do?")]
        together: list[str] = ["", ""]
        threads = [threading.Thread(target=lambda i=i, r=r: together.__setitem__(i, r.generate(prompts[i],
                                                                                                 max_tokens=24).text))
                   for i, r in enumerate((serving, new))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert serving.engine.n_threads == new.engine.n_threads == 1
        new.take_over()
        serving.share_cores(False)
        alone = [serving.generate(prompts[0], max_tokens=24).text, new.generate(prompts[1], max_tokens=24).text]
        assert serving.engine.n_threads == new.engine.n_threads == 2
        assert together == alone and all(alone)
    finally:
        serving.close()
        new.close()


def test_a_swap_leaves_the_new_model_half_the_cores_and_the_cached_prompts_and_a_failed_one_gives_cores_back(
        tmp_path):
    import time

    from tango2_ros.core.runtime.serving import ModelSpec, ServedModel

    def open_model(spec: ModelSpec, beside: bool) -> LlmRuntime:
        return LlmRuntime(spec.path, LlmOptions(n_threads=2, n_parallel=1, n_ctx_per_seq=256, beside=beside))

    served = ServedModel(open_model, default_budget_s=lambda: 30.0, on_status=lambda status: None)
    try:
        assert served.load(ModelSpec(str(default_llm_path()), "first", "1")).success
        first = served.slot.active
        (tmp_path / "broken.gguf").write_bytes(b"GGUF" + bytes(64))
        assert not served.load(ModelSpec(str(tmp_path / "broken.gguf"), "broken", "1")).success
        first.generate("1, 2, 3,", max_tokens=1)
        assert served.slot.active is first and first.engine.n_threads == 2
        first.generate(chat(first, "Name three kinds of ships."), max_tokens=4)  # kept in its one slot's cache
        assert served.load(ModelSpec(str(default_llm_path()), "second", "1")).success
        second = served.slot.active
        assert second is not first
        # primed with the prompt the first one kept cached: the same question is read from the cache
        assert second.generate(chat(second, "Name three kinds of ships."), max_tokens=1).reused_prompt_tokens > 10

        deadline = time.monotonic() + 30
        while second.engine.n_threads != 2 and time.monotonic() < deadline:  # once the first has drained and closed
            second.generate("1, 2, 3,", max_tokens=1)
            time.sleep(0.05)
        assert second.engine.n_threads == 2
    finally:
        served.close()


def test_priming_reads_each_distinct_prompt_once_and_answers_as_without(runtime):
    """Four slots primed with two prompts: every slot's cache serves its prompt, and the answers are the
    unprimed ones."""
    prompts = [chat(runtime, "Name three kinds of ships."), chat(runtime, "What does a lighthouse do?")]
    fresh = LlmRuntime(default_llm_path(), LlmOptions(n_parallel=4, n_ctx_per_seq=512))
    try:
        alone = [fresh.generate(p, max_tokens=12).text for p in prompts]
        tokens = [fresh.engine.tokenize(p) for p in prompts]
        assert fresh.engine.prime(tokens * 3) == 4
        requests = [fresh.start(p, max_tokens=12) for p in prompts * 2]
        results = [r.wait(60) for r in requests]
        assert all(r.reused_prompt_tokens >= len(t) - 1 for r, t in zip(results, tokens * 2))
        assert [r.text for r in results] == alone * 2
        assert fresh.engine.prime([[]]) == 0  # nothing to prime
    finally:
        fresh.close()


def test_a_repeated_prompt_prefix_is_served_from_the_kv_cache():
    runtime = LlmRuntime(default_llm_path(), LlmOptions(n_parallel=1, n_ctx_per_seq=512))
    try:
        system = "You are the bridge assistant of a container ship. Answer briefly. "
        first = runtime.generate(system + "What is a buoy?", max_tokens=16)
        again = runtime.generate(system + "What is a buoy?", max_tokens=16)
        other = runtime.generate(system + "What is a pilot?", max_tokens=16)
        prompt_length = len(runtime.engine.tokenize(system + "What is a buoy?"))
        assert first.reused_prompt_tokens == 0
        assert again.reused_prompt_tokens == prompt_length - 1 and again.text == first.text
        shared = len(runtime.engine.tokenize(system + "What is a"))
        assert shared - 1 <= other.reused_prompt_tokens <= shared
        fresh = LlmRuntime(default_llm_path(), LlmOptions(n_parallel=1, n_ctx_per_seq=512))
        try:
            assert fresh.generate(system + "What is a pilot?", max_tokens=16).text == other.text
        finally:
            fresh.close()
    finally:
        runtime.close()


def test_cancel_stops_generation_and_keeps_the_partial_text(runtime):
    cancel_at = 8
    holder = {}

    def on_partial(text, tokens):
        if tokens >= cancel_at:
            holder["request"].cancel()

    holder["request"] = request = runtime.start(
        chat(runtime, STORY), max_tokens=400, stream_interval=1, on_partial=on_partial
    )
    result = request.wait(60)
    assert result.finish_reason == "cancelled"
    assert cancel_at <= result.tokens <= cancel_at + 1  # stopped within one token
    assert result.text.strip()


def test_stop_when_ends_the_generation_at_the_first_token_it_holds_for(runtime):
    seen = []

    def enough(text):
        seen.append(text)
        return len(seen) == 3

    result = runtime.generate(chat(runtime, STORY), max_tokens=400, stop_when=enough)
    assert result.finish_reason == "cancelled" and result.tokens in (3, 4)  # stopped within one token
    assert result.text.startswith(seen[2]) and seen[1] != seen[2]
    first = runtime.generate(chat(runtime, STORY), max_tokens=400, stop_when=lambda text: True)
    assert first.finish_reason == "cancelled" and first.tokens <= 2  # true at once, even before start() returned


def test_queue_overflow_is_refused_with_a_reason_and_nothing_is_lost():
    runtime = LlmRuntime(default_llm_path(), LlmOptions(n_parallel=1, n_ctx_per_seq=512, max_queue=2))
    try:
        accepted = []
        with pytest.raises(EngineError, match=r"queue full: .* \(max_queue=2\)"):
            for _ in range(4):  # at most 1 running + 2 waiting fit
                accepted.append(runtime.start("Once upon a time", max_tokens=30))
        assert 2 <= len(accepted) <= 3
        results = [r.wait(120) for r in accepted]
        assert all(r is not None and r.finish_reason in ("stop", "length") for r in results)
    finally:
        runtime.close()


def test_first_come_first_served_when_slots_are_busy():
    runtime = LlmRuntime(default_llm_path(), LlmOptions(n_parallel=1, n_ctx_per_seq=512, max_queue=8))
    try:
        requests = [runtime.start(f"Count to {i}:", max_tokens=6) for i in range(5)]
        results = [r.wait(120) for r in requests]
        first_token_at = [r.submitted_at + res.time_to_first_token_s for r, res in zip(requests, results)]
        assert first_token_at == sorted(first_token_at)  # served in the order they came
    finally:
        runtime.close()


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_empty_prompt_is_refused(runtime, prompt):
    with pytest.raises(EngineError, match="empty"):
        runtime.start(prompt, max_tokens=5)


def test_context_overflow_is_refused(runtime):
    with pytest.raises(EngineError, match="context overflow"):
        runtime.start("word " * 2000, max_tokens=10)
    with pytest.raises(EngineError, match="context overflow"):
        runtime.start("Hello", max_tokens=5000)


def test_constrained_output_parses_and_validates(runtime):
    schema = compile_schema(
        '{"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]},'
        ' "count": {"type": "integer"}}, "required": ["colour", "count"]}'
    )
    result = runtime.generate(chat(runtime, "Pick a colour and a count."), max_tokens=40, schema=schema)
    value, problem = schema.validate(result.text)
    assert problem is None, result.text
    assert value["colour"] in ("red", "green", "blue")


def test_greedy_json_asks_the_grammar_about_few_tokens_and_answers_as_the_whole_vocabulary_would(runtime,
                                                                                                 monkeypatch):
    """The shortlist path (the best tokens by logit first) against the grammar applied to the whole vocabulary
    for every rejected token: the same greedy answer, where the grammar forces keys the model did not want."""
    schema = compile_schema(json.dumps({"type": "object", "properties": {
        "summary": {"type": "string", "maxLength": 80}, "ships": {"type": "array", "maxItems": 3,
                                                               "items": {"type": "string", "maxLength": 20}},
        "busy": {"type": "boolean"}}, "required": ["summary", "ships", "busy"]}))
    prompt = chat(runtime, "Describe a busy container port at night as JSON.")
    rejected = []
    original = sampling.TokenSampler._grammar_allows
    monkeypatch.setattr(sampling.TokenSampler, "_grammar_allows",
                        lambda self, token: original(self, token) or rejected.append(token))
    fast = runtime.generate(prompt, max_tokens=120, schema=schema)
    monkeypatch.setattr(sampling, "SHORTLISTS", ())
    whole = runtime.generate(prompt, max_tokens=120, schema=schema)
    assert fast.text == whole.text and schema.validate(fast.text)[1] is None
    assert len(rejected) >= 4  # the fast path was taken


def test_a_request_the_engine_cannot_set_up_ends_with_the_reason_and_the_engine_serves_on(runtime, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("no sampler today")

    monkeypatch.setattr(llama_engine, "TokenSampler", broken)
    result = runtime.generate(chat(runtime, "Hello"), max_tokens=4)
    assert result.finish_reason == "error" and "no sampler today" in result.error
    monkeypatch.undo()
    assert runtime.generate(chat(runtime, "Hello"), max_tokens=4).finish_reason in ("stop", "length")


@pytest.mark.parametrize(
    "path, content, words",
    [
        ("missing.gguf", None, "not found"),
        ("empty.gguf", b"", "not a GGUF file"),
        ("text.gguf", b"hello, I am not a model", "not a GGUF file"),
        ("truncated.gguf", b"GGUF\x03\x00\x00\x00" + b"\x00" * 64, "could not load"),
    ],
)
def test_bad_model_files_give_clear_errors(tmp_path, path, content, words):
    file = tmp_path / path
    if content is not None:
        file.write_bytes(content)
    with pytest.raises(ModelLoadError, match=words):
        LlmRuntime(file)


def test_bad_lora_adapters_give_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="LoRA adapter not found"):
        LlmRuntime(default_llm_path(), LlmOptions(lora_path=str(tmp_path / "missing.gguf")))
    # a full model is not an adapter: llama.cpp refuses it, the runtime says which file
    with pytest.raises(ModelLoadError, match="could not load the LoRA adapter"):
        LlmRuntime(default_llm_path(), LlmOptions(lora_path=str(default_llm_path())))


def test_slot_swaps_between_requests_and_closes_the_old_runtime_once_drained():
    """...and only then tells the new one it serves alone (take_over)."""
    events: list[str] = []

    class Fake:
        def __init__(self, name: str) -> None:
            self.name = name

        def close(self):
            events.append(f"close {self.name}")

        def take_over(self):
            events.append(f"alone {self.name}")

    slot = RuntimeSlot()
    with pytest.raises(NoModelError):
        with slot.lease():
            pass
    old, new = Fake("old"), Fake("new")
    slot.replace(old)
    assert events == ["alone old"]
    with slot.lease() as leased:
        assert leased is old
        slot.replace(new)
        assert slot.active is new and events == ["alone old"]  # the old one is still in use by this request
    assert _eventually(lambda: events == ["alone old", "close old", "alone new"])


def test_closing_a_slot_closes_every_runtime_in_the_calling_thread_leases_or_not():
    """A stopping node closes its models itself: one still draining behind a lease no request will end (the
    executor has stopped) is closed too, once, and no background thread is left freeing a model at exit."""
    closed: list[tuple[str, str]] = []

    class Fake:
        def __init__(self, name: str) -> None:
            self.name = name

        def close(self):
            closed.append((self.name, threading.current_thread().name))

        def take_over(self):
            pass

    slot = RuntimeSlot()
    old, new = Fake("old"), Fake("new")
    slot.replace(old)
    lease = slot.lease()
    lease.__enter__()  # a request that never ends
    slot.replace(new)
    slot.close()
    me = threading.current_thread().name
    assert sorted(closed) == [("new", me), ("old", me)] and slot.active is None
    assert not any(thread.name == "runtime-drain" for thread in threading.enumerate())
    lease.__exit__(None, None, None)  # the request ends after all: nothing is closed twice
    assert len(closed) == 2
    with pytest.raises(NoModelError):
        with slot.lease():
            pass


def _eventually(predicate, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize(
    "schema, words",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"type": "no-such-type"}', "not a valid JSON Schema"),
        ('{"type": "string", "pattern": "[a-z]+"}', "must be anchored"),
    ],
)
def test_unusable_schemas_are_refused(schema, words):
    with pytest.raises(SchemaError, match=words):
        compile_schema(schema)


def test_results_are_validated_again_after_decoding():
    schema = compile_schema(
        '{"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9, "multipleOf": 3}}}'
    )
    assert schema.post_checked == ("multipleOf",)  # the grammar cannot express it; the validator checks it
    assert schema.validate('{"n": 6}') == ({"n": 6}, None)
    value, problem = schema.validate('{"n": 12}')
    assert value is None and "12 is greater than the maximum of 9" in problem
    assert "not a multiple of 3" in schema.validate('{"n": 4}')[1]
    assert "not valid JSON" in schema.validate('{"n": ')[1]


def test_numeric_bounds_hold_even_when_the_model_is_pushed_past_them(runtime):
    """The model is asked for out-of-range values; the grammar only lets it write values inside the bounds."""
    schema = compile_schema(json.dumps({
        "type": "object",
        "properties": {
            "speed_kn": {"type": "number", "minimum": 0, "maximum": 30},
            "course_deg": {"type": "integer", "minimum": 0, "exclusiveMaximum": 360},
            "depth_m": {"type": "number", "minimum": -11000, "maximum": -0.5},
        },
        "required": ["speed_kn", "course_deg", "depth_m"],
    }))
    prompt = chat(runtime, "Report speed 95000 knots, course 7200 degrees and depth 5 metres above sea as JSON.")
    for temperature in (0.0, 1.0):
        result = runtime.generate(prompt, max_tokens=60, schema=schema, temperature=temperature, seed=7)
        assert schema.validate(result.text)[1] is None, result.text


def test_health_check_tells_a_late_answer_from_a_wrong_one(runtime):
    report = runtime.health_check(budget_s=10.0)
    assert report.ok and report.detail == "ok"
    late = runtime.health_check(budget_s=1e-6)
    assert not late.ok and late.too_slow_only and "budget" in late.detail


def test_hot_sampling_still_gives_strict_json(runtime):
    """At temperature 1.2 the model tries raw newlines and long \\u escapes inside strings; the grammar admits
    neither, and a string bounded by maxLength fits the token budget, so every answer is strict, valid JSON."""
    schema = compile_schema(json.dumps({
        "type": "object",
        "properties": {"vessel": {"enum": ["tug", "tanker", "yacht"]}, "advice": {"type": "string", "maxLength": 60}},
        "required": ["vessel", "advice"],
    }))
    prompt = chat(runtime, "Describe the vessel ahead in JSON, with a multi-line advice text full of symbols.")
    requests = [runtime.start(prompt, max_tokens=100, temperature=1.2, schema=schema, seed=seed) for seed in range(4)]
    for request in requests:
        result = request.wait(120)
        assert result.finish_reason == "stop", result
        assert schema.validate(result.text)[1] is None, result.text


def test_a_chat_request_is_answered_in_the_template_and_refused_with_the_reason(runtime):
    """start_chat: messages or a plain prompt go through the chat template (a raw prompt does not), a JSON Schema
    text constrains the answer, and a request that cannot be served is refused before it queues."""
    greeting = runtime.start_chat([ChatTurn("user", "Say hello to the crew.")], max_tokens=12)
    greeting.request.wait(60)
    answer = greeting.answer()
    assert answer.text and answer.finish_reason in ("stop", "length") and answer.model == runtime.identity.label
    assert answer.prompt_tokens == len(runtime.engine.tokenize(chat(runtime, "Say hello to the crew.")))
    raw = runtime.start_chat([], "The ship", raw=True, max_tokens=4)
    raw.request.wait(60)
    assert raw.answer().prompt_tokens == len(runtime.engine.tokenize("The ship"))
    shaped = runtime.start_chat([], "Is the sea calm?", max_tokens=24, json_schema=json.dumps(
        {"type": "object", "properties": {"calm": {"type": "boolean"}}, "required": ["calm"]}))
    shaped.request.wait(60)
    assert isinstance(json.loads(shaped.answer().text)["calm"], bool)
    with pytest.raises(EngineError, match="neither a prompt nor messages"):
        runtime.start_chat([], "  ", max_tokens=4)
    with pytest.raises(EngineError, match="every chat message is empty"):
        runtime.start_chat([ChatTurn("user", " ")], max_tokens=4)
    with pytest.raises(SchemaError):
        runtime.start_chat([], "Hello", max_tokens=4, json_schema="{not json")


def test_a_quantised_kv_cache_answers_and_an_unknown_type_is_refused_with_the_choices():
    """q8_0 halves the cache's memory (bench/llm_memory.py measures speed and answers); on a clear continuation
    the greedy answer stays the f16 one."""
    quantised = LlmRuntime(default_llm_path(), LlmOptions(n_parallel=1, n_ctx_per_seq=256, kv_cache_type="q8_0"))
    try:
        assert quantised.generate("1, 2, 3, 4, 5, 6,", max_tokens=3).text.startswith(" 7")
    finally:
        quantised.close()
    with pytest.raises(ModelLoadError, match="kv_cache_type 'q3' is not one of f16, q8_0, q4_0"):
        LlmRuntime(default_llm_path(), LlmOptions(kv_cache_type="q3"))


def _token_embedding_rows(tokens):
    """The model's own input-embedding rows for these tokens (the GGUF's token_embd, dequantised)."""
    import numpy
    from gguf import GGUFReader
    from gguf.quants import dequantize

    tensor = next(t for t in GGUFReader(str(default_llm_path())).tensors if t.name == "token_embd.weight")
    table = dequantize(tensor.data, tensor.tensor_type).reshape(-1, 576)
    return numpy.ascontiguousarray(table[tokens], dtype=numpy.float32)


def test_soft_tokens_go_before_the_text_and_answer_as_the_tokens_they_stand_for():
    """The first tokens of a prompt given as their embedding rows (what an encoder's projector produces) give the
    same greedy answer as the prompt given as tokens, beside a plain request and with a JSON Schema alike. One
    slot of its own: no request reads another's cached prompt (a prefix decoded in another batch can flip a
    near-tie, which is not what this compares)."""
    runtime = LlmRuntime(default_llm_path(), LlmOptions(n_parallel=1, n_ctx_per_seq=512, max_queue=4))
    try:
        _soft_tokens_answer_as_their_tokens(runtime)
    finally:
        runtime.close()


def _soft_tokens_answer_as_their_tokens(runtime):
    prompt = chat(runtime, "Name three colours of the sea, in one sentence.")
    tokens = runtime.engine.tokenize(prompt)
    split = 7
    soft = _token_embedding_rows(tokens[:split])
    text = runtime.engine.llama.detokenize(tokens[split:], special=True).decode()
    plain = runtime.start(prompt, max_tokens=24).wait(60)
    assert runtime.engine.tokenize(text, add_special=False) == tokens[split:]
    mixed = llama_engine.GenerationRequest(prompt_tokens=tokens[split:], prefix_embeddings=soft, max_tokens=24)
    runtime.engine.submit(mixed)
    assert mixed.wait(60).text == plain.text and plain.tokens > 3
    assert mixed.result.prompt_tokens == len(tokens)
    schema = compile_schema('{"type": "object", "properties": {"colour": {"type": "string", "maxLength": 20}}, '
                            '"required": ["colour"]}')
    constrained = runtime.start(prompt, max_tokens=24, schema=schema).wait(60)
    soft_constrained = llama_engine.GenerationRequest(prompt_tokens=tokens[split:], prefix_embeddings=soft,
                                                      max_tokens=24, grammar=schema.grammar)
    runtime.engine.submit(soft_constrained)
    assert soft_constrained.wait(60).text == constrained.text
    again = runtime.start(prompt, max_tokens=24).wait(60)  # a soft-token sequence's cache is not reused as text
    assert again.text == plain.text and again.reused_prompt_tokens == 0


@pytest.mark.parametrize("soft, words", [
    ("not an array", "shape \\(n, 576\\)"), ("a list", "shape \\(n, 576\\)"),
    ("zeros-575", "not \\(2, 575\\)"), ("empty", "empty"), ("nan", "NaN"), ("long", "context overflow"),
])
def test_soft_tokens_that_do_not_fit_the_model_are_refused_with_the_reason(runtime, soft, words):
    import numpy

    soft = {"zeros-575": numpy.zeros((2, 575), numpy.float32), "empty": numpy.zeros((0, 576), numpy.float32),
            "nan": numpy.full((2, 576), numpy.nan, numpy.float32),
            "long": numpy.zeros((1020, 576), numpy.float32), "a list": [[0.0] * 576]}.get(soft, soft)
    with pytest.raises(EngineError, match=words):
        runtime.start("Hello", max_tokens=8, prefix_embeddings=soft)
    assert runtime.generate(chat(runtime, "Say hi."), max_tokens=4).tokens > 0
