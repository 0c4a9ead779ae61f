"""JSON Schema -> llama.cpp grammar, with numeric bounds enforced during decoding.

llama-cpp-python's converter ignores minimum/maximum (and the exclusive variants), so a constrained model can
still write `"distance_nm": 100000` for a field bounded to 50. This converter adds grammar rules for bounded
integers and numbers: digit patterns that spell exactly the integers of a range, and for numbers an integer
part whose every fraction stays inside the bounds. The rules may exclude a sliver next to a fractional bound
(for [0.5, 2] the number 0.7 cannot be written), never admit a value outside it. Numbers are written without
an exponent.

String characters are also narrowed: llama-cpp-python's `char` rule admits raw control characters (a raw
newline inside a string, which strict JSON parsers reject) and `\\uXXXX` escapes (six tokens for one character,
which let a sampled answer run past max_tokens). Here a string character is any character but a control
character, a quote or a backslash, or one of the short escapes.
"""
from __future__ import annotations

import json
import math

from llama_cpp.llama_grammar import SchemaConverter

# Bounds are validated in JSON Schema terms after decoding too; this only caps the digits of one-sided bounds.
MAGNITUDE_CAP = 10**15 - 1
FRACTION_DIGITS = 6
STRICT_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt])'
BOUND_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


class BoundedSchemaConverter(SchemaConverter):
    def visit(self, schema, name):
        if (
            isinstance(schema, dict)
            and schema.get("type") in ("integer", "number")
            and any(k in schema for k in BOUND_KEYWORDS)
            and not any(k in schema for k in ("enum", "const", "$ref", "anyOf", "oneOf", "allOf"))
        ):
            rule_name = name or "root"
            if schema["type"] == "integer":
                low, high = integer_bounds(schema)
                body = signed_integer_rule(low, high)
            else:
                body = number_rule(schema)
            return self._add_rule(rule_name, f"({body}) space")
        return super().visit(schema, name)


def json_schema_to_grammar(schema: dict) -> str:
    converter = BoundedSchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.visit(converter.resolve_refs(json.loads(json.dumps(schema)), "schema"), "")
    if "char" in converter._rules:
        converter._rules["char"] = STRICT_CHAR
    return converter.format_grammar()


def integer_bounds(schema: dict) -> tuple[int, int]:
    """The smallest and largest integer a schema's bounds admit (capped at MAGNITUDE_CAP)."""
    low, high = -MAGNITUDE_CAP, MAGNITUDE_CAP
    if "minimum" in schema:
        low = max(low, math.ceil(schema["minimum"]))
    if "exclusiveMinimum" in schema:
        low = max(low, math.floor(schema["exclusiveMinimum"]) + 1)
    if "maximum" in schema:
        high = min(high, math.floor(schema["maximum"]))
    if "exclusiveMaximum" in schema:
        high = min(high, math.ceil(schema["exclusiveMaximum"]) - 1)
    if low > high:
        raise ValueError(f"no integer satisfies the bounds of {schema}")
    return low, high


def number_rule(schema: dict) -> str:
    """Exact integers in the bounds, or an integer part whose fractions all stay inside the bounds."""
    low, high = integer_bounds(schema)
    alternatives = [signed_integer_rule(low, high)]
    # x.f lies strictly between x and x+1 (and -(m.f) between -(m+1) and -m): keep those intervals in [low, high]
    fraction = " ".join(["\".\"", "[0-9]"] + ["[0-9]?"] * (FRACTION_DIGITS - 1))
    positive = (max(low, 0), high - 1)
    if positive[0] <= positive[1]:
        alternatives.append(f"({unsigned_integer_rule(*positive)}) {fraction}")
    negative = (max(-high, 0), -low - 1)
    if low < 0 and negative[0] <= negative[1]:
        alternatives.append(f"\"-\" ({unsigned_integer_rule(*negative)}) {fraction}")
    return " | ".join(f"({a})" for a in alternatives)


def signed_integer_rule(low: int, high: int) -> str:
    alternatives = []
    if high >= 0:
        alternatives.append(unsigned_integer_rule(max(low, 0), high))
    if low < 0:
        alternatives.append(f"\"-\" ({unsigned_integer_rule(max(-high, 1), -low)})")
    return " | ".join(f"({a})" for a in alternatives)


def unsigned_integer_rule(low: int, high: int) -> str:
    """GBNF that matches exactly the decimal integers low..high (0 <= low <= high), without leading zeros."""
    patterns = []
    start = low
    for stop in _range_stops(low, high):
        patterns.append(_digits_pattern(start, stop))
        start = stop + 1
    return " | ".join(patterns)


def _range_stops(low: int, high: int) -> list[int]:
    """Split [low, high] into pieces whose ends have equal length and differ digit-wise by [a-b] then [0-9]s."""
    stops = {high}
    nines = 1
    stop = _fill_by_nines(low, nines)
    while low <= stop < high:
        stops.add(stop)
        nines += 1
        stop = _fill_by_nines(low, nines)
    zeros = 1
    stop = _fill_by_zeros(high + 1, zeros) - 1
    while low < stop <= high:
        stops.add(stop)
        zeros += 1
        stop = _fill_by_zeros(high + 1, zeros) - 1
    return sorted(stops)


def _fill_by_nines(value: int, count: int) -> int:
    text = str(value)
    return int(text[:-count] + "9" * count) if count < len(text) else int("9" * max(count, len(text)))


def _fill_by_zeros(value: int, count: int) -> int:
    return value - value % 10**count


def _digits_pattern(start: int, stop: int) -> str:
    parts = []
    for a, b in zip(str(start), str(stop)):
        parts.append(f"\"{a}\"" if a == b else f"[{a}-{b}]")
    return " ".join(parts)
