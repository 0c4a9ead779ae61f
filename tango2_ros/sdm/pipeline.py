"""One study to one report draft: load -> preprocess -> findings -> report text, each stage timed.

Shared by `tango2 sdm report|evaluate`, the ct_report node and the bench. The report writer is pluggable: the
language model in this process (`LlmWriter`), the llm_node over ROS (in the node), the vision-language model that
reads the volume itself (`tango2_ros.sdm.vlm.VlmWriter`), or the standard wording alone (`template_draft`).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable

from tango2_ros.sdm.findings import Finding, FindingsModel
from tango2_ros.sdm.report import DISCLAIMER, Draft, asked_draft, template_draft
from tango2_ros.sdm.volume import CtVolume, StudyLimits, load_study, preprocess

STAGES = ("loading", "preprocessing", "findings", "report")
WRITERS = ("llm", "vlm", "standard")  # who writes the text: the language model, the vision-language model, templates
Writer = Callable[[list[Finding]], Draft]


@dataclass
class StudyReport:
    study_key: str
    findings: list[Finding]
    draft: Draft
    findings_model: str
    seconds: dict[str, float] = field(default_factory=dict)  # per stage
    disclaimer: str = DISCLAIMER
    volume: CtVolume | None = field(default=None, repr=False)  # what was read (for the SR's evidence)

    def summary(self) -> str:
        """One line for an operator: the study's key, its findings and how much of the text was corrected."""
        corrections = len(self.draft.corrections)
        return f"report for study {self.study_key}: {sum(f.present for f in self.findings)} finding(s)" + \
            (f", {corrections} correction(s) of the text" if corrections else "")

    def as_dict(self) -> dict:
        return {"study_key": self.study_key, "findings": [f.as_dict() for f in self.findings],
                "findings_text": self.draft.findings_text, "impression": self.draft.impression,
                "model": {"findings": self.findings_model, "report": self.draft.model},
                "corrections": self.draft.corrections, "disclaimer": self.disclaimer,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "skipped_files": list(self.volume.skipped) if self.volume is not None else []}

    def text(self) -> str:
        return (f"FINDINGS:\n{self.draft.findings_text}\n\nIMPRESSION:\n{self.draft.impression}\n\n{self.disclaimer}\n"
                f"(findings model {self.findings_model}; text {self.draft.model})")


class LlmWriter:
    """The report text from an in-process LlmRuntime, constrained by the findings' JSON Schema."""

    def __init__(self, runtime, max_tokens: int = 400) -> None:
        from tango2_ros.core.runtime.llm import ChatTurn

        self.runtime, self.max_tokens, self._turn = runtime, max_tokens, ChatTurn

    def __call__(self, findings: list[Finding]) -> Draft:
        return asked_draft(findings, self._ask)

    def _ask(self, prompt: str, schema: dict) -> tuple[str, str, str]:
        from tango2_ros.core.runtime.schema import compile_schema

        text = self.runtime.chat_prompt([self._turn("user", prompt)])
        result = self.runtime.generate(text, max_tokens=self.max_tokens, schema=compile_schema(json.dumps(schema)))
        failed = result.finish_reason not in ("stop", "length")
        return result.text, self.runtime.identity.label, \
            f"the language model failed ({result.error or result.finish_reason})" if failed else ""


class ReportPipeline:
    def __init__(self, model: FindingsModel, writer: Writer = template_draft, limits: StudyLimits = StudyLimits(),
                 salt: str = "tango2") -> None:
        self.model, self.writer, self.limits, self.salt = model, writer, limits, salt

    def run(self, source, on_stage: Callable[[str, float], None] = lambda stage, progress: None) -> StudyReport:
        """`source` is a path (series folder, .nii.gz, .mha) or an already assembled CtVolume."""
        seconds = {}
        started = time.monotonic()
        on_stage("loading", 0.0)
        volume = source if isinstance(source, CtVolume) else load_study(source, self.limits)
        seconds["loading"] = time.monotonic() - started
        on_stage("preprocessing", 0.2)
        mark = time.monotonic()
        model_input = preprocess(volume, self.model.preprocessing)
        seconds["preprocessing"] = time.monotonic() - mark
        on_stage("findings", 0.4)
        mark = time.monotonic()
        findings = self.model.predict(model_input)
        seconds["findings"] = time.monotonic() - mark
        on_stage("report", 0.6)
        mark = time.monotonic()
        # a writer that reads the image (the VLM) is given the volume too, to preprocess by its own conventions
        draft = self.writer(findings, volume) if getattr(self.writer, "reads_the_volume", False) \
            else self.writer(findings)
        seconds["report"] = time.monotonic() - mark
        return StudyReport(volume.study_key(self.salt), findings, draft, self.model.label, seconds, volume=volume)
