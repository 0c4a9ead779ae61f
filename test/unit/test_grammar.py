"""Grammar rules for numeric bounds: exhaustive checks against the bounds they encode (no model needed)."""
import random
import re

import pytest

from tango2_ros.core.runtime.grammar import number_rule, signed_integer_rule, unsigned_integer_rule


def as_regex(rule: str) -> re.Pattern:
    """The rules use only quoted literals, classes, ?, | and groups: the same text is a regular expression."""
    return re.compile("^(?:" + rule.replace('"', "").replace(" ", "") + ")$")


@pytest.mark.parametrize("low, high", [(0, 0), (0, 9), (7, 7), (5, 123), (0, 360), (99, 1001), (1234, 98765)])
def test_unsigned_integer_rule_matches_exactly_the_range(low, high):
    pattern = as_regex(unsigned_integer_rule(low, high))
    for value in range(0, high * 2 + 20):
        assert bool(pattern.match(str(value))) == (low <= value <= high), value
    assert not pattern.match("0" + str(max(low, 1)))  # no leading zeros


def test_unsigned_integer_rule_on_random_ranges():
    rng = random.Random(1)
    for _ in range(200):
        low = rng.randint(0, 5000)
        high = low + rng.randint(0, 20000)
        pattern = as_regex(unsigned_integer_rule(low, high))
        probes = [*range(max(0, low - 20), low + 20), *range(high - 20, high + 20), *rng.sample(range(30000), 40)]
        for value in probes:
            assert bool(pattern.match(str(value))) == (low <= value <= high), (low, high, value)


@pytest.mark.parametrize("low, high", [(-50, 50), (-1000, -3), (-7, 0)])
def test_signed_integer_rule(low, high):
    pattern = as_regex(signed_integer_rule(low, high))
    for value in range(low - 100, high + 100):
        assert bool(pattern.match(str(value))) == (low <= value <= high), value


@pytest.mark.parametrize("bounds", [
    {"minimum": 0, "maximum": 50}, {"minimum": 0.5, "maximum": 2}, {"minimum": -10, "maximum": -2.5},
    {"minimum": -3, "maximum": 3}, {"exclusiveMinimum": 0, "maximum": 1}, {"minimum": -1, "exclusiveMaximum": 0},
    {"minimum": 0}, {"maximum": -1},
])
def test_number_rule_never_admits_a_value_outside_the_bounds(bounds):
    pattern = as_regex(number_rule({"type": "number", **bounds}))
    rng = random.Random(2)
    low = bounds.get("minimum", bounds.get("exclusiveMinimum", -100))
    high = bounds.get("maximum", bounds.get("exclusiveMaximum", 100))
    admitted = 0
    for _ in range(5000):
        value = rng.uniform(low - 5, high + 5)
        text = rng.choice([str(int(value)), f"{value:.{rng.randint(1, 6)}f}"])
        if pattern.match(text):
            admitted += 1
            x = float(text)
            assert x >= bounds.get("minimum", -1e18) and x <= bounds.get("maximum", 1e18), text
            assert x > bounds.get("exclusiveMinimum", -1e18) and x < bounds.get("exclusiveMaximum", 1e18), text
    assert admitted > 100  # and it still admits plenty of values inside
