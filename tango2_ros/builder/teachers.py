"""Domain teachers: the deterministic reference of a domain turned into teaching data and a check.

A teacher writes a training set and a held-out set (JSONL chats, each line with the `check` context its
domain's checker needs) from disjoint scenarios, and names the check that scores a model's answers
(`fact_check`: the share of answers the domain's check leaves unchanged). The domain code stays in the domain
package; this module only registers it, so the builder imports a domain when a recipe asks for it.
"""
from __future__ import annotations

import importlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tango2_ros.builder.recipe import TeacherConfig
from tango2_ros.errors import UserError

HELD_OUT_SEED_OFFSET = 1_000_000  # held-out scenarios come from seeds no training scenario uses


@dataclass(frozen=True)
class Teacher:
    languages: tuple[str, ...]
    rows: str  # module:function (scenario seeds, languages, rng) -> JSONL rows
    checks: dict[str, str]  # task in a row's `check` -> module:function (output, check) -> corrections


TEACHERS = {
    "sds-bridge": Teacher(("en", "ko"), "tango2_ros.sds.teaching:bridge_rows",
                          {"sds-describe": "tango2_ros.sds.teaching:check_describe",
                           "sds-ask": "tango2_ros.sds.questions:check_ask"}),
    "sdm-report": Teacher(("en",), "tango2_ros.sdm.teaching:report_rows",
                          {"sdm-report": "tango2_ros.sdm.teaching:check_report"}),
    **{f"sdf-lam-{crop}": Teacher(("en",), f"tango2_ros.sdf.teaching:{crop}_rows",
                                  {"sdf-lam": "tango2_ros.sdf.teaching:check_lam"}) for crop in ("tomato", "lettuce")},
}


def _function(reference: str) -> Callable:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def write_sets(config: TeacherConfig, folder: Path) -> tuple[Path, Path]:
    """train.jsonl and eval.jsonl from the teacher, by scenario: seeds [seed, seed+train) teach, seeds from
    seed+HELD_OUT_SEED_OFFSET are held out."""
    rows = _function(TEACHERS[config.name].rows)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, first, count in (("train", config.seed, config.train),
                                ("eval", config.seed + HELD_OUT_SEED_OFFSET, config.eval)):
        path = folder / f"{split}.jsonl"
        lines = rows(range(first, first + count), config.languages, random.Random(first))
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in lines), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def corrections(output: str, check: dict) -> list[str]:
    """What the domain's check changes in `output` (empty: the answer passed unchanged)."""
    task = check.get("task") if isinstance(check, dict) else None
    for teacher in TEACHERS.values():
        if task in teacher.checks:
            return _function(teacher.checks[task])(output, check)
    raise UserError(f"no teacher checks answers of task {task!r}")
