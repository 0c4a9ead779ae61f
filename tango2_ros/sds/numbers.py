"""Numbers a description states, checked against the facts within the rounding the text uses.

A text that says "3.2 NM" claims a value in [3.15, 3.25]; "3 NM" one in [2.5, 3.5]. Every number with a unit the
check knows (nautical miles, minutes, degrees, clock positions; English and Korean) must match one of the facts of
that kind, or it is a contradiction. Numbers without a known unit are not judged.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

UNITS = {  # unit as written -> kind of fact it states
    "nm": "distance", "nautical mile": "distance", "nautical miles": "distance", "mile": "distance",
    "miles": "distance", "해리": "distance",
    "min": "time", "mins": "time", "minute": "time", "minutes": "time", "분": "time",
    "deg": "angle", "degree": "angle", "degrees": "angle", "°": "angle", "도": "angle",
    "o'clock": "clock", "시 방향": "clock", "시": "clock",
}
NUMBER = re.compile(r"(?<![\w.])([+-]?\d+(?:\.\d+)?)\s*(" + "|".join(
    sorted((re.escape(u) for u in UNITS), key=len, reverse=True)) + r")(?![A-Za-z])", re.IGNORECASE)


@dataclass(frozen=True)
class Stated:
    value: float
    decimals: int
    kind: str
    text: str

    def matches(self, fact: float) -> bool:
        return abs(abs(self.value) - abs(fact)) <= 0.5 * 10 ** -self.decimals + 1e-9


def stated_numbers(text: str) -> list[Stated]:
    found = []
    for match in NUMBER.finditer(text):
        number, unit = match.group(1), match.group(2).lower()
        decimals = len(number.split(".")[1]) if "." in number else 0
        found.append(Stated(float(number), decimals, UNITS[unit], match.group(0)))
    return found


def contradictions(text: str, facts: dict[str, list[float]]) -> list[str]:
    """Each number of `text` that matches none of the facts of its kind (`facts`: kind -> values), as
    "3.9 NM (facts: 3.2, 0.40)"; a kind with no facts is not judged."""
    wrong = []
    for stated in stated_numbers(text):
        candidates = facts.get(stated.kind, [])
        if candidates and not any(stated.matches(value) for value in candidates):
            wrong.append(f"{stated.text} (facts: {', '.join(f'{v:g}' for v in candidates)})")
    return wrong
