"""Per-request token sampling on llama.cpp logits, with a cheap path for grammar-constrained output.

llama.cpp's grammar sampler checks every token of the vocabulary (49k for SmolLM2), which cost about 5 ms per
token here. Most tokens a model proposes for JSON output are already allowed, so, like llama.cpp's own
common sampler, this samples first without the grammar and asks the grammar about that one token; only when it
is rejected is the grammar applied to more. In JSON output about half the model's best tokens are rejected, so
greedy decoding asks about the best few hundred, then few thousand tokens by logit before the whole vocabulary
(the best allowed token is the same): JSON-Schema decoding went from 0.73-0.88 of plain decoding's tokens/s to
0.93-1.04 (`bench/llm_overhead.py`, `schema_ratio`).
"""
from __future__ import annotations

import ctypes
import math

import llama_cpp
import numpy

TOKEN_DATA = numpy.dtype([("id", numpy.int32), ("logit", numpy.float32), ("p", numpy.float32)])
SHORTLISTS = (256, 4096)  # the best tokens asked about when the grammar rejects the model's best one (greedy)


class TokenSampler:
    """Sampler chain (greedy, or top-k/top-p/temperature with a seed) plus an optional grammar."""

    def __init__(self, vocab, n_vocab: int, *, temperature: float, seed: int, grammar: str | None) -> None:
        self.n_vocab = n_vocab
        self.greedy = temperature <= 0
        self.chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        if temperature > 0:
            llama_cpp.llama_sampler_chain_add(self.chain, llama_cpp.llama_sampler_init_top_k(40))
            llama_cpp.llama_sampler_chain_add(self.chain, llama_cpp.llama_sampler_init_top_p(0.95, 1))
            llama_cpp.llama_sampler_chain_add(self.chain, llama_cpp.llama_sampler_init_temp(temperature))
            llama_cpp.llama_sampler_chain_add(self.chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        else:
            llama_cpp.llama_sampler_chain_add(self.chain, llama_cpp.llama_sampler_init_greedy())
        self.grammar = None
        if grammar:
            self.grammar = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not self.grammar:
                self.close()
                raise ValueError("llama.cpp rejected the grammar")
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        self._all = numpy.zeros(n_vocab, dtype=TOKEN_DATA) if grammar else None
        if self._all is not None:
            self._all["id"] = numpy.arange(n_vocab, dtype=numpy.int32)
        self._shortlist = numpy.zeros(min(max(SHORTLISTS, default=0), n_vocab), dtype=TOKEN_DATA) if grammar else None

    def sample(self, ctx, index: int) -> int:
        if self.grammar is None:
            return llama_cpp.llama_sampler_sample(self.chain, ctx, index)
        if self.greedy:
            token = self._best_allowed_token(ctx, index)
        else:
            token = llama_cpp.llama_sampler_sample(self.chain, ctx, index)
            if not self._grammar_allows(token):
                token = self._sample_constrained(ctx, index)
        llama_cpp.llama_sampler_accept(self.grammar, token)
        return token

    def _best_allowed_token(self, ctx, index: int) -> int:
        """Greedy under the grammar, asking it about as few tokens as possible: the best token; if rejected, the
        best allowed one among the SHORTLISTS best (in logit order, ties in token order as llama.cpp's greedy
        sampler breaks them); only if none is, the whole vocabulary. In JSON output about half the model's best
        tokens are rejected (layout the grammar does not allow), and where the grammar forces a key, none of the
        best few hundred may be allowed."""
        logits = numpy.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(self.n_vocab,))
        token = int(logits.argmax())
        if self._grammar_allows(token):
            return token
        asked = numpy.array([token])
        for size in SHORTLISTS:
            n = min(size, self.n_vocab)
            top = numpy.argpartition(logits, -n)[-n:]
            top = top[numpy.lexsort((top, -logits[top]))]
            fresh = top[~numpy.isin(top, asked)]  # the ones asked before were rejected
            shortlist = self._shortlist[:len(fresh)]
            shortlist["id"], shortlist["logit"], shortlist["p"] = fresh, logits[fresh], 0.0
            array = llama_cpp.llama_token_data_array(
                data=shortlist.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
                size=len(shortlist), selected=-1, sorted=False,
            )
            llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
            allowed = numpy.flatnonzero(~numpy.isinf(shortlist["logit"]))
            if allowed.size:
                return int(fresh[allowed[0]])
            asked = top
        return self._sample_constrained(ctx, index)

    def _grammar_allows(self, token: int) -> bool:
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 0.0, 0.0
        self._one_array.selected = -1
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(self._one_array))
        return not math.isinf(self._one[0].logit)

    def _sample_constrained(self, ctx, index: int) -> int:
        logits = numpy.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(self.n_vocab,))
        candidates = self._all
        candidates["logit"] = logits
        candidates["p"] = 0.0
        array = llama_cpp.llama_token_data_array(
            data=candidates.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
            size=self.n_vocab, selected=-1, sorted=False,
        )
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(self.chain, ctypes.byref(array))
        token = int(array.data[array.selected].id)
        llama_cpp.llama_sampler_accept(self.chain, token)
        return token

    def close(self) -> None:
        if self.chain:
            llama_cpp.llama_sampler_free(self.chain)
            self.chain = None
        if self.grammar:
            llama_cpp.llama_sampler_free(self.grammar)
            self.grammar = None
