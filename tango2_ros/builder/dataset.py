"""Training and evaluation examples: JSONL, one chat per line.

Each line is `{"messages": [{"role": ..., "content": ...}, ..., {"role": "assistant", "content": answer}]}` or
`{"prompt": ..., "completion": ...}` (one user turn and its answer), optionally with `"check": {...}`, the
context a teacher's check judges the answer in (tango2_ros.builder.teachers). For evaluation the last assistant turn is
the expected answer and the turns before it are the prompt.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tango2_ros.errors import UserError

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Example:
    messages: tuple[tuple[str, str], ...]  # (role, content), the last one the assistant's answer
    check: dict | None = None  # what a teacher's check needs to judge an answer (builder.teachers)

    @property
    def prompt(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages[:-1]]

    @property
    def answer(self) -> str:
        return self.messages[-1][1]

    def as_chat(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


def load_examples(path: Path) -> list[Example]:
    if not path.is_file():
        raise UserError(f"dataset {path} not found")
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            examples.append(_example(json.loads(line)))
        except (json.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
            raise UserError(f"{path}:{number}: {exc}") from exc
    if not examples:
        raise UserError(f"{path} has no examples")
    return examples


@dataclass(frozen=True)
class Pair:
    """An evaluation pair for encoders: the positive is the text the query must find among all positives."""

    query: str
    positive: str


def load_pairs(path: Path) -> list[Pair]:
    """`{"query": ..., "positive": ...}` per line."""
    if not path.is_file():
        raise UserError(f"dataset {path} not found")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            query, positive = data["query"], data["positive"]
            if not isinstance(query, str) or not isinstance(positive, str) or not query.strip() or not positive.strip():
                raise ValueError("'query' and 'positive' must be non-empty strings")
        except (json.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
            raise UserError(f"{path}:{number}: {exc}") from exc
        pairs.append(Pair(query, positive))
    if len(pairs) < 2:
        raise UserError(f"{path} needs at least two pairs (a query must find its positive among others)")
    return pairs


def fingerprint(*files: Path | None) -> str:
    """sha256 over the data files' bytes: which data a model was trained and evaluated on."""
    digest = hashlib.sha256()
    for file in files:
        if file is not None:
            digest.update(file.read_bytes())
    return digest.hexdigest()


def _example(data) -> Example:
    if not isinstance(data, dict):
        raise ValueError("each line must be a JSON object")
    if "messages" in data:
        raw = data["messages"]
        if not isinstance(raw, list) or len(raw) < 2:
            raise ValueError("'messages' must list at least a user turn and the assistant's answer")
        messages = []
        for turn in raw:
            role, content = turn["role"], turn["content"]
            if role not in ROLES or not isinstance(content, str):
                raise ValueError(f"a turn needs role in {ROLES} and string content, got {turn!r}")
            messages.append((role, content))
    elif "prompt" in data and "completion" in data:
        if not isinstance(data["prompt"], str) or not isinstance(data["completion"], str):
            raise ValueError("'prompt' and 'completion' must be strings")
        messages = [("user", data["prompt"]), ("assistant", data["completion"])]
    else:
        raise ValueError("a line needs 'messages' or 'prompt' and 'completion'")
    if messages[-1][0] != "assistant" or not messages[-1][1].strip():
        raise ValueError("the last turn must be the assistant's non-empty answer")
    check = data.get("check")
    if check is not None and not (isinstance(check, dict) and isinstance(check.get("task"), str)):
        raise ValueError("'check' must be an object with a 'task'")
    return Example(tuple(messages), check)
