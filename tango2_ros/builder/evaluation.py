"""What evaluating a candidate gives, whatever its kind (LLM, encoder, findings model): the shared result type,
so the evaluator and the kind-specific runners do not import each other."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Evaluation:
    metric: float
    tokens_per_s: float
    latency_s: float
    peak_memory_mb: float
    outputs: list[str]
    groups: dict[str, float] = field(default_factory=dict)  # the metric per group (a teacher's language, ...)


def peak_resident_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry over the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
