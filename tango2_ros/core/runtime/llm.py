"""A GGUF language model served by llama.cpp: prompt building (chat template), constrained output, health.

`LlmRuntime.start_chat` is the one call the LLM node makes per client request: it queues the request, which the
engine batches with others, reports partial text through a callback and gives the client's `Answer` once done.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy

from tango2_ros.core.runtime.base import (
    HealthReport, ModelIdentity, ModelLoadError, ModelRuntime, available_memory_bytes, golden_check,
)
from tango2_ros.core.runtime.llama_engine import (
    FINISH_CANCELLED, FINISH_ERROR, FINISH_STOP, KV_CACHE_TYPES, EngineError, GenerationRequest, GenerationResult, LlamaEngine,
    RequestError, kv_cache_type_problem,
)
from tango2_ros.core.runtime.schema import CompiledSchema, compile_schema
from tango2_ros.core.settings import setting

GGUF_MAGIC = b"GGUF"
KV_BYTES_PER_TOKEN_ESTIMATE = 64 * 1024  # f16, generous for small models; refuses loads that clearly cannot fit


@dataclass(frozen=True)
class LlmOptions:
    n_threads: int = setting(2, "CPU threads for llama.cpp.", 1, 256)
    n_parallel: int = setting(4, "Requests decoded in parallel as sequences of one model.", 1, 64)
    n_ctx_per_seq: int = setting(2048, "Context length (prompt + output tokens) per request.", 64, 131072)
    n_gpu_layers: int = setting(0, "Layers offloaded to the GPU (needs a CUDA build of llama.cpp).", -1, 1000)
    lora_path: str = ""
    kv_cache_type: str = setting("f16", "Element type of the KV cache: f16, q8_0 (about half the memory) or q4_0 "
                                        "(about a quarter); quantised types decode with flash attention.")
    max_queue: int = setting(16, "Requests that may wait beyond the parallel ones; more are refused.", 0, 10000)
    # off by default: on 2 CPU cores a step's time grows with its tokens, so drafts gained 1.04-1.18x on answers
    # that copy their prompts and nothing on free text, and batched logits can flip a near-tie (bench/speculative.py)
    draft_tokens: int = setting(0, "Speculative decoding by prompt lookup: most draft tokens checked per step "
                                   "(0 = off).", 0, 64)
    # loaded beside a serving model (a swap): the two split the threads until the new one takes over. ggml's
    # workers spin at every barrier of a step, so two engines (or an engine and the load's own work) each on all
    # cores stall each other for seconds; on half each, both run (bench/model_swap.py)
    beside: bool = False


@dataclass(frozen=True)
class ChatTurn:
    role: str
    content: str


class LlmRuntime(ModelRuntime):
    def __init__(self, path: str | Path, options: LlmOptions = LlmOptions(), *, name: str = "", version: str = ""):
        file = Path(path)
        check_gguf_file(file)
        if problem := kv_cache_type_problem(options.kv_cache_type):
            raise ModelLoadError(problem)
        kv_bytes = KV_BYTES_PER_TOKEN_ESTIMATE * KV_CACHE_TYPES[options.kv_cache_type][1]
        needed = file.stat().st_size + int(options.n_ctx_per_seq * options.n_parallel * kv_bytes)
        available = available_memory_bytes()
        if needed > available:
            raise ModelLoadError(
                f"not enough memory to load {file}: needs about {needed >> 20} MiB, {available >> 20} MiB available"
            )
        if options.lora_path and not Path(options.lora_path).is_file():
            raise ModelLoadError(f"LoRA adapter not found: {options.lora_path}")
        self.identity = ModelIdentity.of_file(file, "gguf", name, version)
        self.options = options
        try:
            self.engine = LlamaEngine(
                str(file), n_threads=_shared_threads(options.n_threads) if options.beside else options.n_threads,
                n_parallel=options.n_parallel, n_ctx_per_seq=options.n_ctx_per_seq, n_gpu_layers=options.n_gpu_layers,
                lora_path=options.lora_path or None, max_queue=options.max_queue, draft_max=options.draft_tokens,
                kv_cache_type=options.kv_cache_type,
            )
        except (ValueError, EngineError, OSError) as exc:
            raise ModelLoadError(f"llama.cpp could not load {file}: {exc}") from None
        self._chat_formatter = _chat_formatter(self.engine.llama)

    # -- prompts ---------------------------------------------------------------------------------------------
    def chat_prompt(self, messages: Sequence[ChatTurn]) -> str:
        """Apply the model's own chat template (from the GGUF metadata) and open the assistant's turn."""
        if self._chat_formatter is None:
            raise RequestError(f"{self.identity.label} has no chat template in its GGUF metadata; send a plain prompt")
        rendered = self._chat_formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        return rendered.prompt

    def request_prompt(self, messages: Sequence[ChatTurn], prompt: str, raw: bool = False) -> str:
        """The text to decode for a request of chat messages or of one prompt (in the chat template unless `raw`:
        an instruct model completes a bare prompt with an empty answer)."""
        if messages:
            if not any(m.content.strip() for m in messages):
                raise RequestError("every chat message is empty")
            return self.chat_prompt(messages)
        if not prompt.strip():
            raise RequestError("the request has neither a prompt nor messages")
        return prompt if raw else self.chat_prompt([ChatTurn("user", prompt)])

    # -- inference -------------------------------------------------------------------------------------------
    def start(
        self,
        prompt: str,
        *,
        max_tokens: int,
        temperature: float = 0.0,
        schema: CompiledSchema | None = None,
        stream_interval: int = 0,
        on_partial: Callable[[str, int], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        seed: int = 0,
        prefix_embeddings: numpy.ndarray | None = None,
    ) -> GenerationRequest:
        """Queue a generation and return its handle (wait(), cancel()); raises EngineError if it cannot queue.
        `prefix_embeddings` are soft tokens (an encoder's output) decoded before the prompt's text."""
        if not prompt.strip():
            raise RequestError("the prompt is empty")
        request = GenerationRequest(
            prompt_tokens=self.engine.tokenize(prompt),
            prefix_embeddings=prefix_embeddings,
            max_tokens=max_tokens,
            temperature=temperature,
            grammar=schema.grammar if schema else None,
            seed=seed,
            stream_interval=stream_interval,
            on_partial=on_partial,
            on_finished=on_finished,
        )
        if problem := self.engine.soft_token_problem(prefix_embeddings):
            raise RequestError(problem)
        prompt_length = len(request.prompt_tokens) + (0 if prefix_embeddings is None else len(prefix_embeddings))
        if prompt_length + max_tokens > self.options.n_ctx_per_seq:
            raise RequestError(
                f"context overflow: prompt of {prompt_length} tokens plus max_tokens={max_tokens} "
                f"exceeds the context of {self.options.n_ctx_per_seq} tokens per request"
            )
        self.engine.submit(request)
        return request

    def start_chat(self, messages: Sequence[ChatTurn], prompt: str = "", *, raw: bool = False, json_schema: str = "",
                   **start_options) -> ChatGeneration:
        """Queue a client's request (chat messages, or one prompt) with its JSON Schema text ('' = free text);
        `start_options` as for start(). Raises RequestError / SchemaError / EngineError if it cannot queue."""
        schema = compile_schema(json_schema) if json_schema.strip() else None
        request = self.start(self.request_prompt(messages, prompt, raw), schema=schema, **start_options)
        return ChatGeneration(request, schema, raw, self.identity.label)

    def generate(self, prompt: str, stop_when: Callable[[str], bool] | None = None, **kwargs) -> GenerationResult:
        """Blocking convenience around start(); errors come back as a result with finish_reason 'error'.
        `stop_when(text so far)`, asked at every token, cancels the generation once it is true."""
        try:
            if stop_when is None:
                return self.start(prompt, **kwargs).wait()
            watch = _StopWhen(stop_when)
            return watch.follow(self.start(prompt, stream_interval=1, on_partial=watch, **kwargs)).wait()
        except EngineError as exc:
            return GenerationResult(text="", tokens=0, finish_reason=FINISH_ERROR, error=str(exc))

    def warm_up(self) -> None:
        self.generate("Hello", max_tokens=2)

    def health_check(self, budget_s: float) -> HealthReport:
        schema = compile_schema('{"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}')

        def golden() -> str:
            result = self.generate("Reply with JSON: ", max_tokens=16, schema=schema)
            if result.finish_reason == FINISH_ERROR:
                raise EngineError(result.error)
            _, problem = schema.validate(result.text)
            return f"gave invalid output: {problem}" if problem else ""

        return golden_check(golden, budget_s)

    def take_over(self) -> None:
        """Serving alone now: every thread (it shared them with the model it replaced until that one drained)."""
        if self.options.beside:
            self.engine.set_threads(self.options.n_threads)
        self.options = replace(self.options, beside=False)

    def prime_from(self, serving: ModelRuntime) -> None:
        """Read the prompts the serving model keeps cached into this one's slots, when the two share a vocabulary:
        otherwise each slot's first request after the switch reads its whole prompt while the running ones wait
        (bench/model_swap.py measures what a swap costs the requests in service)."""
        if isinstance(serving, LlmRuntime) and self.engine.same_vocabulary(serving.engine):
            self.engine.prime(serving.engine.cached_prompts())

    def share_cores(self, sharing: bool) -> None:
        self.engine.set_threads(_shared_threads(self.options.n_threads) if sharing else self.options.n_threads)

    def close(self) -> None:
        self.engine.close(drain=True)


def _shared_threads(n_threads: int) -> int:
    """Each engine's threads while two share the cores during a swap."""
    return max(1, n_threads // 2)


def check_gguf_file(path: Path) -> None:
    """Fail early and clearly on a missing, empty or non-GGUF file (llama.cpp only says 'failed to load')."""
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelLoadError(f"model path is not a file: {path}")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ModelLoadError(f"not a GGUF file (bad magic {magic!r}): {path}")


def _chat_formatter(llama):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return None

    def token_text(key: str) -> str:
        token_id = llama.metadata.get(key)
        return llama._model.token_get_text(int(token_id)) if token_id is not None else ""

    return Jinja2ChatFormatter(
        template=template,
        eos_token=token_text("tokenizer.ggml.eos_token_id"),
        bos_token=token_text("tokenizer.ggml.bos_token_id"),
        stop_token_ids=[llama.token_eos()],
    )


@dataclass(frozen=True)
class Answer:
    """What a client is told of a finished request (the Generate action's result, the HTTP endpoint's reply)."""
    text: str
    tokens: int
    prompt_tokens: int
    finish_reason: str
    error: str
    model: str
    tokens_per_s: float


@dataclass
class ChatGeneration:
    """A client's request under way: cancel() it, or read its answer() once the engine has finished it."""
    request: GenerationRequest
    schema: CompiledSchema | None
    raw: bool
    model: str

    def cancel(self) -> None:
        self.request.cancel()

    def answer(self) -> Answer:
        """An empty answer says why, and text that breaks the request's JSON Schema is an error (the grammar
        should make that impossible; a cut-off answer can still break it)."""
        result = self.request.result
        finish, error = result.finish_reason, result.error
        if not result.text and finish == FINISH_STOP:
            error = "the model ended its answer at once (empty text)" + \
                (": a raw prompt is completed as it is; leave `raw` off for the chat template" if self.raw else "")
        if self.schema is not None and finish not in (FINISH_CANCELLED, FINISH_ERROR):
            _, problem = self.schema.validate(result.text)
            if problem:
                finish, error = FINISH_ERROR, f"output failed schema validation: {problem}"
        return Answer(result.text, result.tokens, len(self.request.prompt_tokens), finish, error, self.model,
                      result.tokens_per_s)


class _StopWhen:
    """on_partial that cancels its request once `predicate(text)` holds. The engine may call it before start() has
    returned the request: that request is then cancelled as it is handed over (follow)."""

    def __init__(self, predicate: Callable[[str], bool]) -> None:
        self.predicate, self.request, self.met = predicate, None, False

    def __call__(self, text: str, _tokens: int) -> None:
        self.met = self.met or self.predicate(text)
        if self.met and self.request is not None:
            self.request.cancel()

    def follow(self, request: GenerationRequest) -> GenerationRequest:
        self.request = request
        if self.met:
            request.cancel()
        return request
