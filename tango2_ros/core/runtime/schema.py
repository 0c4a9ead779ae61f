"""JSON Schemas for constrained generation: check one before decoding, validate the text after.

llama.cpp turns a JSON Schema into a grammar, but its converter silently ignores some keywords (numeric bounds,
multipleOf, uniqueItems, the email format; oneOf behaves like anyOf) and asserts on an unanchored `pattern`.
So a schema is checked here first (a clear error instead of a crash), numeric bounds are added to the grammar
(see grammar.py), and every result is validated again with a full JSON Schema validator after decoding.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema

NOT_ENFORCED_BY_GRAMMAR = ("multipleOf", "uniqueItems", "format", "oneOf", "not", "if", "dependentRequired")


class SchemaError(ValueError):
    """The schema cannot be used for constrained decoding; the message says why."""


@dataclass(frozen=True)
class CompiledSchema:
    schema: dict[str, Any]
    grammar: str                  # GBNF text for llama.cpp's grammar sampler
    post_checked: tuple[str, ...]  # keywords only the validator after decoding enforces

    def validate(self, text: str) -> tuple[Any, str | None]:
        """(parsed value, None) when `text` is valid JSON that satisfies the schema, else (None, reason)."""
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            return None, f"not valid JSON: {exc.msg} at position {exc.pos}"
        error = jsonschema.exceptions.best_match(_validator(self.schema).iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return None, f"does not match the schema at {where}: {error.message}"
        return value, None


def compile_schema(schema_text: str) -> CompiledSchema:
    """Parse and check a JSON Schema and convert it to a llama.cpp grammar; raises SchemaError."""
    try:
        schema = json.loads(schema_text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"json_schema is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(schema, dict):
        raise SchemaError("json_schema must be a JSON object")
    try:
        _validator(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise SchemaError(f"json_schema is not a valid JSON Schema: {exc.message}") from None
    post_checked = tuple(sorted(set(_walk_keys(schema)) & set(NOT_ENFORCED_BY_GRAMMAR)))
    for pattern in _walk_values(schema, "pattern"):
        if not (isinstance(pattern, str) and pattern.startswith("^") and pattern.endswith("$")):
            raise SchemaError(f"unsupported schema: pattern {pattern!r} must be anchored with ^ and $")
    from tango2_ros.core.runtime.grammar import json_schema_to_grammar

    try:
        grammar = json_schema_to_grammar(schema)
    except Exception as exc:  # noqa: BLE001 - the converter raises bare exceptions for what it cannot express
        raise SchemaError(f"unsupported schema: {exc}") from None
    return CompiledSchema(schema=schema, grammar=grammar, post_checked=post_checked)


def _validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _walk_keys(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _walk_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_keys(item)


def _walk_values(node: Any, wanted: str):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == wanted and not isinstance(value, dict):
                yield value
            else:
                yield from _walk_values(value, wanted)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_values(item, wanted)
