"""Draft tokens by prompt lookup, for speculative decoding without a draft model.

The domains' answers copy much of their prompts (a description restates the facts, a report the findings, the
action model's rationale the control errors). So the tokens that followed the latest earlier occurrence of the
answer's last few tokens, in the prompt or in the answer so far, are a good guess of what comes next. The engine
feeds such a draft with the next token and keeps the part the model itself would have produced.
"""
from __future__ import annotations

from dataclasses import dataclass


class PromptLookup:
    """A token history with an index from each n-gram (ngram_min..ngram_max tokens) to the position after its
    latest occurrence; `draft` looks the history's own last n-gram up, longest first."""

    def __init__(self, tokens: list[int], *, ngram_max: int = 4, ngram_min: int = 3) -> None:
        if not 1 <= ngram_min <= ngram_max:
            raise ValueError(f"n-gram sizes must satisfy 1 <= min <= max, not {ngram_min}..{ngram_max}")
        self.tokens: list[int] = []
        self._sizes = range(ngram_max, ngram_min - 1, -1)
        self._follower: dict[tuple[int, ...], int] = {}
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        for token in tokens:
            end = len(self.tokens)
            # the n-grams that end just before this token now have a follower: index them
            for n in self._sizes:
                if end >= n:
                    self._follower[tuple(self.tokens[end - n:end])] = end
            self.tokens.append(token)

    def draft(self, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the latest earlier occurrence of the longest matching suffix."""
        if limit <= 0:
            return []
        for n in self._sizes:
            if len(self.tokens) < n:
                continue
            start = self._follower.get(tuple(self.tokens[-n:]))
            if start is not None:
                return self.tokens[start:start + limit]
        return []


@dataclass(frozen=True)
class StepCost:
    """A decode step's time for n tokens as a multiple of a one-token step: `fixed + per_token * n` from two
    tokens on (on a CPU one token takes a faster path of its own)."""

    fixed: float
    per_token: float

    def of(self, tokens: int) -> float:
        return 1.0 if tokens <= 1 else self.fixed + self.per_token * tokens


class DraftLength:
    """How many draft tokens pay off for one sequence. The i-th draft token is kept only if the model agrees with
    every one before it (probability p**i, p the sequence's recent agreement per token), so a draft of k tokens
    yields 1 + p + ... + p**k tokens for the cost of a (1 + k)-token step: the length with the best yield per
    cost, 0 when none beats plain decoding. Agreement is remembered with decay, so a sequence that stopped
    drafting drifts back to the prior and tries again."""

    PRIOR_AGREED, PRIOR_MISSED, MEMORY = 9.0, 1.0, 0.97

    def __init__(self, cost: StepCost, most: int) -> None:
        self.cost, self.most = cost, most
        self.agreed = self.missed = 0.0

    @property
    def agreement(self) -> float:
        return (self.agreed + self.PRIOR_AGREED) / (self.agreed + self.missed + self.PRIOR_AGREED + self.PRIOR_MISSED)

    def tokens(self) -> int:
        p = self.agreement
        best, best_yield, expected, kept = 0, 1.0, 1.0, 1.0
        for k in range(1, self.most + 1):
            kept *= p
            expected += kept
            if expected / self.cost.of(1 + k) > best_yield:
                best, best_yield = k, expected / self.cost.of(1 + k)
        return best

    def update(self, drafted: int, kept: int) -> None:
        """After each step: `kept` of `drafted` draft tokens were the model's own (0 of 0: a step without one)."""
        self.agreed = self.agreed * self.MEMORY + kept
        self.missed = self.missed * self.MEMORY + (kept < drafted)
