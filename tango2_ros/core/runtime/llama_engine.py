"""Continuous-batching text generation on one llama.cpp model: several requests decode as parallel sequences.

Why not the high-level `Llama` object: it runs one sequence at a time, and one `Llama` used from two threads
crashes the process. Here a single engine thread owns the llama.cpp context (with `n_seq_max` sequences) and
is the only thread that touches it; other threads submit requests through a bounded queue and receive text
through callbacks. Each step decodes one token for every running sequence in one `llama_decode` batch, and new
requests join between steps (continuous batching), first come first served, so no request starves.
Each request has its own sampler chain (grammar for JSON Schema output, temperature, seed).
A finished sequence keeps its KV cache: the next request that starts with the same tokens (a shared system
prompt, a repeated question) is given that slot and only the new part of its prompt is decoded.
Speculative decoding by prompt lookup (`draft_max` > 0): each sequence's next token goes into the batch with a
draft of the tokens that followed the same few tokens earlier in its prompt or answer (`lookup.PromptLookup`);
the model's own samples at those positions are taken while they equal the draft, and the cache entries of the
rest are removed. Every token is still the sampler's choice from the model's logits (grammar included); a step
just yields several tokens when the answer copies its prompt. The answer is plain decoding's except where
llama.cpp's logits for a token decoded in a batch differ from those of the token alone (`bench/batch_numerics.py`
on CPU: none up to 128 tokens of context, up to 0.85 from 256 on), which flips a near-tie as batching requests
together does.
The draft length follows the step cost measured at load (`lookup.DraftLength`): a draft only where it pays.
A request may start with soft tokens (`prefix_embeddings`: vectors of the model's input size, an encoder's view of
an image or a volume, `tango2_ros.sdm.vlm`): they are decoded as llama.cpp embedding batches at the sequence's first
positions, then its text tokens follow in the same sequence. Such a sequence's cache is not offered to later
requests (its text sits at other positions than a plain prompt's).
"""
from __future__ import annotations

import codecs
import collections
import ctypes
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import llama_cpp
import numpy

from tango2_ros.core.runtime.lookup import DraftLength, PromptLookup, StepCost
from tango2_ros.core.runtime.sampling import TokenSampler

_log = logging.getLogger(__name__)

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_CANCELLED = "cancelled"
FINISH_ERROR = "error"


# the KV cache's element type: the ggml type and its bytes per element against f16 (blocks of 32 and a scale);
# bench/llm_memory.py measures what each does to the node's memory, speed and answers
KV_CACHE_TYPES = {"f16": (llama_cpp.GGML_TYPE_F16, 1.0), "q8_0": (llama_cpp.GGML_TYPE_Q8_0, 34 / 64),
                  "q4_0": (llama_cpp.GGML_TYPE_Q4_0, 18 / 64)}


def kv_cache_type_problem(name: str) -> str:
    """Why `name` is not a KV cache type this engine knows; '' when it is one."""
    return "" if name in KV_CACHE_TYPES else f"kv_cache_type {name!r} is not one of {', '.join(KV_CACHE_TYPES)}"


class EngineError(RuntimeError):
    """A request cannot be served (queue full, prompt too long, engine stopped); the message says why."""


class RequestError(EngineError):
    """The request itself cannot be served as it is (empty, longer than the context): the caller's to fix."""


class BusyError(EngineError):
    """The engine cannot take the request now (queue full, shutting down): try again later."""


@dataclass
class GenerationResult:
    text: str
    tokens: int
    finish_reason: str
    error: str = ""
    prompt_tokens: int = 0
    reused_prompt_tokens: int = 0  # prompt tokens served from a previous request's KV cache
    time_to_first_token_s: float = 0.0
    generation_s: float = 0.0
    decode_s: float = 0.0  # from the first token to the end: the decoding alone, without queue and prompt
    drafted_tokens: int = 0  # prompt-lookup draft tokens checked by the model
    accepted_tokens: int = 0  # of those, the ones the model produced itself

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.generation_s if self.generation_s > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens after the first per second of decoding (prompt length and cache reuse do not count)."""
        return (self.tokens - 1) / self.decode_s if self.tokens > 1 and self.decode_s > 0 else 0.0


@dataclass
class GenerationRequest:
    """One generation. From the engine thread, `on_partial(text, tokens)` is called every `stream_interval` tokens
    and `on_finished()` once the result is set."""

    prompt_tokens: list[int]
    max_tokens: int
    prefix_embeddings: numpy.ndarray | None = None  # (n, n_embd) float32 soft tokens before prompt_tokens
    temperature: float = 0.0
    grammar: str | None = None
    seed: int = 0
    stream_interval: int = 0
    on_partial: Callable[[str, int], None] | None = None
    on_finished: Callable[[], None] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    result: GenerationResult | None = None
    submitted_at: float = field(default_factory=time.monotonic)

    def cancel(self) -> None:
        self.cancelled.set()

    def wait(self, timeout: float | None = None) -> GenerationResult | None:
        self.finished.wait(timeout)
        return self.result


@dataclass
class _Sequence:
    """A request occupying one of the context's sequence slots."""

    request: GenerationRequest
    seq_id: int
    sampler: TokenSampler
    decoder: codecs.IncrementalDecoder
    n_past: int = 0
    pending: list[int] = field(default_factory=list)  # tokens still to feed to the model
    soft: numpy.ndarray | None = None  # soft tokens still to feed, before `pending`
    fed: list[int] = field(default_factory=list)  # tokens whose KV cache entries this sequence holds
    lookup: PromptLookup | None = None  # the prompt and answer so far, for drafts
    draft: list[int] = field(default_factory=list)  # guessed tokens fed after pending, each with its logits
    draft_length: DraftLength | None = None
    drafted: int = 0
    accepted: int = 0
    reused: int = 0
    logits_index: int = -1
    text: str = ""
    generated: int = 0
    first_token_at: float = 0.0
    started_at: float = field(default_factory=time.monotonic)


class LlamaEngine:
    """Owns one llama.cpp context with `n_parallel` sequences and serves requests on its own thread."""

    def __init__(
        self,
        model_path: str,
        *,
        n_threads: int = 2,
        n_parallel: int = 4,
        n_ctx_per_seq: int = 2048,
        n_batch: int = 512,
        n_gpu_layers: int = 0,
        lora_path: str | None = None,
        max_queue: int = 16,
        draft_max: int = 0,
        kv_cache_type: str = "f16",
    ) -> None:
        if problem := kv_cache_type_problem(kv_cache_type):
            raise EngineError(problem)
        self.model_path = model_path
        self.draft_max = draft_max
        self.n_parallel = n_parallel
        self.n_ctx_per_seq = n_ctx_per_seq
        self.n_batch = max(n_batch, n_parallel)
        self.max_queue = max_queue
        # The Llama object loads the weights, the vocabulary and the chat template; its own small context is unused.
        self.llama = llama_cpp.Llama(
            model_path=model_path, n_ctx=64, n_batch=64, n_threads=n_threads, n_gpu_layers=n_gpu_layers, verbose=False,
        )
        self.vocab = llama_cpp.llama_model_get_vocab(self.llama.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_embd = llama_cpp.llama_model_n_embd_inp(self.llama.model)  # what a soft token must measure
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx_per_seq * n_parallel
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = n_parallel
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        # One KV cache shared by all sequences (the engine enforces n_ctx_per_seq itself): measured faster here
        # than per-sequence streams once sequences of different lengths have come and gone.
        params.kv_unified = True
        params.type_k = params.type_v = KV_CACHE_TYPES[kv_cache_type][0]
        if kv_cache_type != "f16":  # llama.cpp quantises the V cache only with flash attention
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        self.ctx = llama_cpp.llama_init_from_model(self.llama.model, params)
        if not self.ctx:
            raise EngineError(f"llama.cpp could not create a context of {params.n_ctx} tokens for {model_path}")
        try:
            self._adapter = self._apply_adapter(lora_path) if lora_path else None
        except EngineError:
            llama_cpp.llama_free(self.ctx)
            self.llama.close()
            raise
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._embd_batch = None  # allocated by the first request with soft tokens (n_batch x n_embd floats)
        try:
            self.step_cost = self._step_cost() if draft_max else None
        except EngineError as exc:
            _log.warning("%s: no speculative drafts", exc)
            self.draft_max = 0
        self._free_seq_ids = list(range(n_parallel))
        self._cached_tokens: dict[int, list[int]] = {seq_id: [] for seq_id in range(n_parallel)}
        self._queue: collections.deque[GenerationRequest] = collections.deque()
        self._running: list[_Sequence] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._threads_wanted = 0  # set_threads(): applied by the engine thread before its next step
        self._thread = threading.Thread(target=self._loop, name="llama-engine", daemon=True)
        self._thread.start()

    def _apply_adapter(self, lora_path: str):
        """Load a GGUF LoRA adapter and apply it to this engine's context (adapters are per context in llama.cpp:
        the one `Llama(lora_path=...)` loads would only reach the Llama object's own, unused context)."""
        adapter = llama_cpp.llama_adapter_lora_init(self.llama.model, lora_path.encode())
        if not adapter:
            raise EngineError(f"llama.cpp could not load the LoRA adapter {lora_path} for this model")
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(1.0)
        if llama_cpp.llama_set_adapters_lora(self.ctx, adapters, 1, scales):
            llama_cpp.llama_adapter_lora_free(adapter)
            raise EngineError(f"llama.cpp could not apply the LoRA adapter {lora_path}")
        return adapter

    def _step_cost(self, context: int = 256, rounds: int = 3) -> StepCost:
        """What steps of 2 and of 1 + draft_max tokens cost as multiples of a one-token step, on this machine and
        model, after `context` tokens (the fastest of a few rounds each)."""
        token = max(0, self.llama.token_bos())

        def step(n: int, at: int) -> float:
            self._batch_clear()
            for position in range(at, at + n):
                self._batch_add(token, position, 0, True)
            started = time.perf_counter()
            failed = llama_cpp.llama_decode(self.ctx, self.batch)
            elapsed = time.perf_counter() - started
            llama_cpp.llama_memory_seq_rm(self.memory, 0, at, -1)
            if failed:
                raise EngineError("llama_decode failed while measuring the cost of a draft")
            return elapsed

        context = min(context, self.n_batch, self.n_ctx_per_seq - self.draft_max - 2)
        self._batch_clear()
        for position in range(context):  # a context to attend to, kept while the steps are measured
            self._batch_add(token, position, 0, False)
        if llama_cpp.llama_decode(self.ctx, self.batch) != 0:
            raise EngineError("llama_decode failed while measuring the cost of a draft")
        one, two, most = (min(step(n, context) for _ in range(rounds)) for n in (1, 2, 1 + self.draft_max))
        llama_cpp.llama_memory_seq_rm(self.memory, 0, 0, -1)
        per_token = max(0.0, (most - two) / max(1, self.draft_max - 1)) / one
        return StepCost(fixed=two / one - 2 * per_token, per_token=per_token)

    # -- API for other threads -------------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        """Tokenize with the model's vocabulary (read-only, safe from any thread)."""
        return self.llama.tokenize(text.encode("utf-8"), add_bos=add_special, special=True)

    def cached_prompts(self) -> list[list[int]]:
        """The token lists the slots' KV cache holds (earlier requests' prompts and answers), most recent first:
        a snapshot another engine can prime its cache with."""
        with self._cond:
            return [list(self._cached_tokens[seq_id]) for seq_id in reversed(self._free_seq_ids)
                    if self._cached_tokens[seq_id]]

    def same_vocabulary(self, other: "LlamaEngine") -> bool:
        """Whether token ids mean the same here and in `other` (versions of one model share a tokenizer)."""
        return self.n_vocab == other.n_vocab and all(
            self._piece(token) == other._piece(token) for token in range(0, self.n_vocab, 97))

    def prime(self, prompts: list[list[int]]) -> int:
        """Fill the slots' KV cache with `prompts` before serving, so the first requests that start the same way
        read only the rest: each distinct prompt is decoded once, and its cache copied to the other slots in
        turn. Only while idle (the lock is held throughout, so no request starts meanwhile); returns the slots
        filled."""
        distinct = list(dict.fromkeys(tuple(p) for p in prompts if 0 < len(p) < self.n_ctx_per_seq - 1))
        with self._cond:
            if self._running or self._queue or not distinct:
                return 0
            slots = list(self._free_seq_ids)
            for seq_id in slots:
                llama_cpp.llama_memory_seq_rm(self.memory, seq_id, 0, -1)
                self._cached_tokens[seq_id] = []
            for index, seq_id in enumerate(slots):
                tokens = list(distinct[index % len(distinct)])
                if index < len(distinct):
                    for start in range(0, len(tokens), self.n_batch):
                        self._batch_clear()
                        for position, token in enumerate(tokens[start:start + self.n_batch], start):
                            self._batch_add(token, position, seq_id, False)
                        if llama_cpp.llama_decode(self.ctx, self.batch) != 0:
                            llama_cpp.llama_memory_seq_rm(self.memory, seq_id, 0, -1)
                            return index
                else:
                    llama_cpp.llama_memory_seq_cp(self.memory, slots[index % len(distinct)], seq_id, 0, -1)
                self._cached_tokens[seq_id] = tokens
            return len(slots)

    def submit(self, request: GenerationRequest) -> None:
        """Queue a request; raises EngineError when n_parallel run and max_queue wait already."""
        if not request.prompt_tokens:
            raise RequestError("the prompt is empty")
        if problem := self.soft_token_problem(request.prefix_embeddings):
            raise RequestError(problem)
        if _prompt_length(request) >= self.n_ctx_per_seq:
            raise RequestError(
                f"the prompt has {_prompt_length(request)} tokens; the context holds {self.n_ctx_per_seq} per request"
            )
        with self._cond:
            if self._stopping:
                raise BusyError("the engine is shutting down")
            # requests that will find a free sequence slot at the engine's next step do not count as waiting
            if len(self._queue) - len(self._free_seq_ids) >= self.max_queue:
                raise BusyError(
                    f"queue full: {len(self._running)} running and {len(self._queue)} waiting (max_queue={self.max_queue})"
                )
            self._queue.append(request)
            self._cond.notify()

    def soft_token_problem(self, embeddings: numpy.ndarray | None) -> str:
        """Why these soft tokens cannot go into this model ('' when they can, or when there are none)."""
        if embeddings is None:
            return ""
        if not isinstance(embeddings, numpy.ndarray) or embeddings.ndim != 2 or embeddings.shape[1] != self.n_embd:
            shape = getattr(embeddings, "shape", type(embeddings).__name__)
            return f"soft tokens must be an array of shape (n, {self.n_embd}) for this model, not {shape}"
        if len(embeddings) == 0:
            return "the soft-token array is empty"
        if not numpy.isfinite(embeddings).all():
            return "the soft tokens hold NaN or infinite values"
        return ""

    def set_threads(self, n_threads: int) -> None:
        """Decode with `n_threads` CPU threads from the next step on (the engine thread applies it between steps)."""
        with self._cond:
            self._threads_wanted = n_threads
            self._cond.notify_all()

    @property
    def n_threads(self) -> int:
        """The CPU threads the context decodes with now."""
        return llama_cpp.llama_n_threads(self.ctx)

    def load(self) -> tuple[int, int]:
        """(running, waiting) requests right now."""
        with self._cond:
            return len(self._running), len(self._queue)

    def close(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Stop the engine: finish (drain=True) or cancel every request, then free the model."""
        with self._cond:
            self._stopping = True
            if not drain:
                for request in list(self._queue) + [s.request for s in self._running]:
                    request.cancel()
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            return
        llama_cpp.llama_batch_free(self.batch)
        if self._embd_batch is not None:
            llama_cpp.llama_batch_free(self._embd_batch)
        llama_cpp.llama_free(self.ctx)
        if self._adapter is not None:
            llama_cpp.llama_adapter_lora_free(self._adapter)
        self.llama.close()

    # -- engine thread ---------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._running and not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._running and not self._queue:
                    return
                admitted = self._admit_locked()
                threads, self._threads_wanted = self._threads_wanted, 0
            if threads:
                llama_cpp.llama_set_n_threads(self.ctx, threads, threads)
            try:
                for sequence in admitted:
                    self._prefill_prefix(sequence)
                self._decode_step()
                self._sample_step()
            except Exception as exc:  # noqa: BLE001 - the engine thread must survive, and no request may hang
                _log.exception("engine step failed")
                for sequence in list(self._running):
                    sequence.fed = []
                    self._finish(sequence, FINISH_ERROR, f"internal error: {exc}")

    def _admit_locked(self) -> list[_Sequence]:
        admitted = []
        while self._queue and self._free_seq_ids:
            request = self._queue.popleft()
            if request.cancelled.is_set():
                self._finish_unstarted(request, FINISH_CANCELLED)
                continue
            sampler, error = self._make_sampler(request)
            if sampler is None:
                self._finish_unstarted(request, FINISH_ERROR, error)
                continue
            soft = request.prefix_embeddings
            seq_id, reuse = self._take_slot(request.prompt_tokens if soft is None else [])
            sequence = _Sequence(
                request=request,
                seq_id=seq_id,
                sampler=sampler,
                decoder=codecs.getincrementaldecoder("utf-8")(errors="replace"),
                n_past=reuse,
                reused=reuse,
                pending=list(request.prompt_tokens[reuse:]),
                soft=None if soft is None else numpy.ascontiguousarray(soft, dtype=numpy.float32),
                fed=list(request.prompt_tokens[:reuse]),
                lookup=PromptLookup(request.prompt_tokens) if self.draft_max else None,
                draft_length=DraftLength(self.step_cost, self.draft_max) if self.draft_max else None,
            )
            self._running.append(sequence)
            admitted.append(sequence)
        return admitted

    def _take_slot(self, prompt: list[int]) -> tuple[int, int]:
        """The free sequence whose cached tokens share the longest prefix with prompt, and how many to reuse (an
        empty prompt, as for soft tokens, takes the slot whose cache is least worth keeping)."""
        def shared(seq_id: int) -> int:
            n = 0
            for cached, token in zip(self._cached_tokens[seq_id], prompt):
                if cached != token:
                    break
                n += 1
            return n

        if prompt:
            seq_id = max(self._free_seq_ids, key=shared)
        else:
            seq_id = min(self._free_seq_ids, key=lambda free: len(self._cached_tokens[free]))
        self._free_seq_ids.remove(seq_id)
        reuse = max(0, min(shared(seq_id), len(prompt) - 1))  # feed at least one token to get logits
        llama_cpp.llama_memory_seq_rm(self.memory, seq_id, reuse, -1)
        self._cached_tokens[seq_id] = []
        return seq_id, reuse

    def _release_slot(self, sequence: _Sequence) -> None:
        """Give the slot back, remembering which tokens its KV cache holds (none that another prompt could reuse
        after soft tokens)."""
        self._cached_tokens[sequence.seq_id] = sequence.fed if sequence.request.prefix_embeddings is None else []
        self._free_seq_ids.append(sequence.seq_id)

    def _make_sampler(self, request: GenerationRequest) -> tuple[TokenSampler | None, str]:
        """The request's sampler, or None and why (the engine thread must survive, and no request may hang)."""
        try:
            return TokenSampler(self.vocab, self.n_vocab, temperature=request.temperature, seed=request.seed,
                                grammar=request.grammar), ""
        except ValueError:
            return None, "llama.cpp rejected the grammar"
        except Exception as exc:  # noqa: BLE001
            _log.exception("could not make a sampler")
            return None, f"internal error: {exc}"

    def _prefill_prefix(self, sequence: _Sequence) -> None:
        """Feed the soft tokens, then all but the last n_batch/2 prompt tokens alone, so the rest fits in the shared
        step batch."""
        if sequence.soft is not None and not self._prefill_soft(sequence):
            return
        keep = max(1, self.n_batch // 2)
        while len(sequence.pending) > keep:
            chunk = sequence.pending[: min(self.n_batch, len(sequence.pending) - keep)]
            self._batch_clear()
            for token in chunk:
                self._batch_add(token, sequence.n_past, sequence.seq_id, False)
                sequence.n_past += 1
            if llama_cpp.llama_decode(self.ctx, self.batch) != 0:
                sequence.fed = []  # the cache state after a failed decode is not trusted
                self._finish(sequence, FINISH_ERROR, "llama_decode failed while reading the prompt")
                return
            sequence.fed += chunk
            del sequence.pending[: len(chunk)]

    def _prefill_soft(self, sequence: _Sequence) -> bool:
        """Decode the sequence's soft tokens as embedding batches at its first positions; False if that failed."""
        if self._embd_batch is None:
            self._embd_batch = llama_cpp.llama_batch_init(self.n_batch, self.n_embd, 1)
        batch, soft, sequence.soft = self._embd_batch, sequence.soft, None
        for start in range(0, len(soft), self.n_batch):
            chunk = soft[start:start + self.n_batch]
            ctypes.memmove(batch.embd, chunk.ctypes.data, chunk.nbytes)
            for i in range(len(chunk)):
                batch.pos[i] = sequence.n_past + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = sequence.seq_id
                batch.logits[i] = False
            batch.n_tokens = len(chunk)
            if llama_cpp.llama_decode(self.ctx, batch) != 0:
                sequence.fed = []
                self._finish(sequence, FINISH_ERROR, "llama_decode failed while reading the soft tokens")
                return False
            sequence.n_past += len(chunk)
        return True

    def _decode_step(self) -> None:
        """One llama_decode for every running sequence's pending tokens (logits for the last one) and its draft
        (logits for each token)."""
        self._batch_clear()
        deferred = []
        for sequence in self._running:
            if self.batch.n_tokens + len(sequence.pending) + len(sequence.draft) > self.n_batch:
                sequence.draft = []  # a draft only ever takes the batch's spare room
            if self.batch.n_tokens + len(sequence.pending) > self.n_batch:
                deferred.append(sequence)  # joins the next step; the batch is full
                sequence.logits_index = -1
                continue
            for i, token in enumerate(sequence.pending):
                self._batch_add(token, sequence.n_past + i, sequence.seq_id, i == len(sequence.pending) - 1)
            sequence.logits_index = self.batch.n_tokens - 1
            for i, token in enumerate(sequence.draft):
                self._batch_add(token, sequence.n_past + len(sequence.pending) + i, sequence.seq_id, True)
            fed = sequence.pending + sequence.draft
            sequence.n_past += len(fed)
            sequence.fed += fed
            sequence.pending = []
        if self.batch.n_tokens == 0:
            return
        if llama_cpp.llama_decode(self.ctx, self.batch) != 0:
            for sequence in [s for s in self._running if s not in deferred]:
                sequence.fed = []  # the cache state after a failed decode is not trusted
                self._finish(sequence, FINISH_ERROR, "llama_decode failed (out of context memory?)")

    def _sample_step(self) -> None:
        for sequence in list(self._running):
            if sequence.request.cancelled.is_set():
                self._finish(sequence, FINISH_CANCELLED)
            elif sequence.logits_index >= 0:
                self._verify(sequence)

    def _verify(self, sequence: _Sequence) -> None:
        """Sample the next token, and after each draft token the model agrees with, the one after it; keep the
        agreed draft tokens' cache entries, remove the others, and draft again from the new end."""
        draft, sequence.draft = sequence.draft, []
        for i in range(len(draft) + 1):
            token = sequence.sampler.sample(self.ctx, sequence.logits_index + i)
            agreed = i < len(draft) and token == draft[i]
            finish = self._take(sequence, token, position=sequence.n_past - len(draft) + i)
            if finish or not agreed:
                self._forget(sequence, len(draft) - i)
                sequence.drafted += len(draft)
                sequence.accepted += i + agreed
                if finish:
                    self._finish(sequence, finish)
                    return
                sequence.pending = [token]
                break
        if sequence.draft_length is not None:
            sequence.draft_length.update(len(draft), i)
        sequence.draft = self._draft(sequence)

    def _take(self, sequence: _Sequence, token: int, position: int) -> str | None:
        """Add a sampled token (to be fed at `position`) to the answer; the finish reason if the answer ends."""
        request = sequence.request
        if sequence.generated == 0:
            sequence.first_token_at = time.monotonic()
        if llama_cpp.llama_vocab_is_eog(self.vocab, token):
            return FINISH_STOP
        sequence.generated += 1
        sequence.text += sequence.decoder.decode(self._piece(token))
        if sequence.lookup is not None:
            sequence.lookup.extend([token])
        if request.stream_interval and request.on_partial and sequence.generated % request.stream_interval == 0:
            _call_safely(request.on_partial, sequence.text, sequence.generated)
        if sequence.generated >= request.max_tokens or position + 1 >= self.n_ctx_per_seq:
            return FINISH_LENGTH
        return None

    def _draft(self, sequence: _Sequence) -> list[int]:
        """The guess to feed after the pending token, no longer than the answer and the context allow."""
        if sequence.lookup is None:
            return []
        room = min(sequence.request.max_tokens - sequence.generated - 1,
                   self.n_ctx_per_seq - 2 - sequence.n_past, sequence.draft_length.tokens())
        return sequence.lookup.draft(room)

    def _forget(self, sequence: _Sequence, n: int) -> None:
        """Remove the last n fed tokens (a draft the model did not agree with) from the sequence and its cache."""
        if n <= 0:
            return
        sequence.n_past -= n
        del sequence.fed[-n:]
        llama_cpp.llama_memory_seq_rm(self.memory, sequence.seq_id, sequence.n_past, -1)

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:n]

    def _finish(self, sequence: _Sequence, reason: str, error: str = "") -> None:
        now = time.monotonic()
        sequence.text += sequence.decoder.decode(b"", final=True)
        sequence.sampler.close()
        request = sequence.request
        request.result = GenerationResult(
            text=sequence.text,
            tokens=sequence.generated,
            finish_reason=reason,
            error=error,
            prompt_tokens=_prompt_length(request),
            reused_prompt_tokens=sequence.reused,
            time_to_first_token_s=(sequence.first_token_at or now) - request.submitted_at,
            generation_s=now - sequence.started_at,
            decode_s=now - sequence.first_token_at if sequence.first_token_at else 0.0,
            drafted_tokens=sequence.drafted,
            accepted_tokens=sequence.accepted,
        )
        with self._cond:
            self._running.remove(sequence)
            self._release_slot(sequence)
        self._notify_finished(request)

    def _finish_unstarted(self, request: GenerationRequest, reason: str, error: str = "") -> None:
        request.result = GenerationResult(text="", tokens=0, finish_reason=reason, error=error,
                                          prompt_tokens=_prompt_length(request))
        self._notify_finished(request)

    @staticmethod
    def _notify_finished(request: GenerationRequest) -> None:
        request.finished.set()
        if request.on_finished:
            _call_safely(request.on_finished)

    def _batch_clear(self) -> None:
        self.batch.n_tokens = 0

    def _batch_add(self, token: int, pos: int, seq_id: int, logits: bool) -> None:
        i = self.batch.n_tokens
        self.batch.token[i] = token
        self.batch.pos[i] = pos
        self.batch.n_seq_id[i] = 1
        self.batch.seq_id[i][0] = seq_id
        self.batch.logits[i] = logits
        self.batch.n_tokens = i + 1


def _prompt_length(request: GenerationRequest) -> int:
    """The positions a request's prompt takes: its soft tokens and its text tokens."""
    soft = request.prefix_embeddings
    return len(request.prompt_tokens) + (len(soft) if soft is not None and getattr(soft, "ndim", 0) == 2 else 0)


def _call_safely(callback: Callable, *args) -> None:
    """Run a caller's callback on the engine thread; its failure is logged, never stops the engine."""
    try:
        callback(*args)
    except Exception:  # noqa: BLE001
        _log.exception("request callback failed")
