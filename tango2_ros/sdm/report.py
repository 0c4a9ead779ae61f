"""The report draft: FINDINGS and IMPRESSION written by the language model from the structured findings, under a
JSON Schema, then checked sentence by sentence against the findings.

A sentence that asserts a finding the findings model does not support, or denies one it does, is dropped and
listed as a correction; a present finding the model left out is added in standard wording; the pertinent
negatives (every assessed label found absent) are always stated in standard radiology phrasing, and labels the
model does not assess are listed as not assessed. So the text cannot disagree with the findings whatever the
language model writes (`disagreements` is the check, also used by `tango2 sdm evaluate`). Without a model the
whole text is built from the same standard sentences.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable

from tango2_ros.sdm.findings import Finding
from tango2_ros.sdm.labels import BY_NAME, SECTIONS

DISCLAIMER = ("AI-generated draft for a radiologist's review: not a diagnosis until a radiologist confirms or "
              "corrects it.")
NOT_ASSESSED_PREFIX = "Not assessed by the findings model:"
NORMAL_IMPRESSION = "No abnormality among the assessed findings."
NEGATION = re.compile(r"\b(no|not|without|negative for|absence of|free of|normal)\b", re.IGNORECASE)
# What counts as mentioning each label in free text (the standard sentences all match their own label).
TERMS = {
    "Medical material": r"medical material|catheter|pacemaker|\bport\b|\bdevice",
    "Arterial wall calcification": r"aortic wall|arterial wall calcification|aortic calcification",
    "Cardiomegaly": r"cardiomegaly|heart is enlarged|enlarged heart|heart size",
    "Pericardial effusion": r"pericardial effusion",
    "Coronary artery wall calcification": r"coronary",
    "Hiatal hernia": r"hiatal hernia",
    "Lymphadenopathy": r"lymphadenopathy|lymph node",
    "Emphysema": r"emphysema",
    "Atelectasis": r"atelectasis",
    "Lung nodule": r"nodule",
    "Lung opacity": r"opacit",
    "Pulmonary fibrotic sequela": r"fibrotic|fibrosis",
    "Pleural effusion": r"pleural effusion",
    "Mosaic attenuation pattern": r"mosaic",
    "Peribronchial thickening": r"peribronchial",
    "Consolidation": r"consolidation",
    "Bronchiectasis": r"bronchiectasis",
    "Interlobular septal thickening": r"septal thickening",
}
TERM_PATTERNS = {name: re.compile(pattern, re.IGNORECASE) for name, pattern in TERMS.items()}


@dataclass
class Draft:
    findings_text: str
    impression: str
    model: str  # the language model, or "templates"
    corrections: list[str] = field(default_factory=list)
    unusable: bool = False  # the model's answer was not the JSON asked for: standard wording throughout
    contradicted: bool = False  # its raw text stated a finding given as absent or not assessed, or denied a present one


def standard_findings_text(findings: list[Finding], positive_sentences: dict[str, str] | None = None) -> str:
    """FINDINGS by section: what is present, then the pertinent negatives; unassessed labels last."""
    positive_sentences = positive_sentences or {}
    lines = []
    for section in SECTIONS:
        assessed = [f for f in findings if f.assessed and BY_NAME[f.label].section == section]
        sentences = [positive_sentences.get(f.label, BY_NAME[f.label].positive) for f in assessed if f.present]
        sentences += [BY_NAME[f.label].negative for f in assessed if not f.present]
        if sentences:
            lines.append(f"{section.capitalize()}: {' '.join(sentences)}")
    unassessed = [f.label.lower() for f in findings if not f.assessed]
    if unassessed:
        lines.append(f"{NOT_ASSESSED_PREFIX} {', '.join(unassessed)}.")
    return "\n".join(lines)


def standard_impression(findings: list[Finding]) -> str:
    present = [f for f in findings if f.present]
    if not present:
        return NORMAL_IMPRESSION
    return "\n".join(f"{i}. {BY_NAME[f.label].impression}." for i, f in enumerate(present, 1))


def template_draft(findings: list[Finding]) -> Draft:
    return Draft(standard_findings_text(findings), standard_impression(findings), "templates")


def prompt(findings: list[Finding]) -> str:
    present = [f"{f.label} (probability {f.probability:.2f})" for f in findings if f.present]
    absent = [f.label for f in findings if f.assessed and not f.present]
    return (
        "You are drafting a chest CT report for a radiologist. Use only the findings below; do not add others.\n"
        f"Present: {', '.join(present) or 'none'}.\nAbsent: {', '.join(absent) or 'none'}.\n"
        "For each present finding write one short sentence for the FINDINGS section, then a short IMPRESSION. "
        "Answer in JSON.")


def schema(findings: list[Finding]) -> dict:
    """One sentence per present finding (the labels are an enum, in order), and the impression."""
    present = [f.label for f in findings if f.present]
    return {
        "type": "object",
        "properties": {
            "sentences": {"type": "array", "minItems": len(present), "maxItems": len(present), "items": {
                "type": "object",
                "properties": {"finding": {"type": "string", "enum": present or ["none"]},
                               "sentence": {"type": "string", "maxLength": 160}},
                "required": ["finding", "sentence"]}},
            "impression": {"type": "string", "maxLength": 300},
        },
        "required": ["sentences", "impression"],
    }


def checked_draft(model_json: str, findings: list[Finding], model: str) -> Draft:
    """The model's sentences where they agree with the findings; standard wording everywhere else."""
    try:
        answer = json.loads(model_json)
        items = answer["sentences"]
        impression = str(answer["impression"])
        if not isinstance(items, list):
            raise TypeError("sentences is not a list")
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        draft = template_draft(findings)
        draft.model, draft.corrections = model, [f"the model's answer was unusable ({exc}): standard wording"]
        draft.unusable = True
        return draft
    corrections, chosen, dropped, contradicted = [], {}, set(), False
    present = {f.label for f in findings if f.present}
    assessed = {f.label for f in findings if f.assessed}
    for item in items:
        if not isinstance(item, dict):
            corrections.append(f"ignored {item!r}: not a sentence object")
            continue
        label, sentence = str(item.get("finding", "")), " ".join(str(item.get("sentence", "")).split())
        if label in chosen:
            continue
        if label not in present:  # a writer that reads the image files its sentences under any label
            state = "not a CT-RATE label" if label not in TERMS else \
                "given as not assessed" if label not in assessed else "given as absent"
            corrections.append(f"dropped {sentence!r}: {label.lower()} is {state} by the findings model")
            contradicted = contradicted or label in TERMS
            continue
        problems = disagreements(sentence, findings, only_asserted=True)
        contradicted = contradicted or bool(problems)
        if not TERM_PATTERNS[label].search(sentence) or NEGATION.search(sentence):
            problems.append(f"it does not state {label.lower()}")
        if problems:
            corrections.append(f"dropped {sentence!r}: {'; '.join(problems)}")
            dropped.add(label)
            continue
        chosen[label] = sentence if sentence.endswith(".") else sentence + "."
    corrections += [f"added the standard sentence for {label.lower()}: the model left it out"
                    for label in sorted(present - set(chosen) - dropped)]
    impression_problems = disagreements(impression, findings)
    if impression_problems or not impression.strip():
        corrections.append(f"the model's impression was replaced: {'; '.join(impression_problems) or 'empty'}")
        contradicted = contradicted or bool(disagreements(impression, findings, only_asserted=True))
        impression = standard_impression(findings)
    return Draft(standard_findings_text(findings, chosen), impression.strip(), model, corrections,
                 contradicted=contradicted)


def asked_draft(findings: list[Finding], ask: Callable[[str, dict], tuple[str, str, str]] | None) -> Draft:
    """The draft a language model writes when asked `ask(prompt, JSON Schema) -> (text, model, error)`, after
    the sentence check; the standard wording with no model (None) or none that answers."""
    if ask is None:
        return template_draft(findings)
    text, model, error = ask(prompt(findings), schema(findings))
    return written_draft(findings, text, model, error)


def written_draft(findings: list[Finding], text: str, model: str, error: str = "") -> Draft:
    """The model's draft after the sentence check, or, when the model gave none (`error` says why), the standard
    wording with that reason as its correction."""
    if error or not text.strip():
        draft = template_draft(findings)
        draft.corrections = [f"{error or 'the language model wrote nothing'}: standard wording"]
        return draft
    return checked_draft(text, findings, model)


def asserted_and_denied(text: str) -> tuple[set[str], set[str]]:
    """The labels free text states as present and those it denies (clause by clause where a sentence negates);
    the not-assessed line states nothing."""
    asserted, denied = set(), set()
    sentences = [sentence for line in text.splitlines() if not line.strip().startswith(NOT_ASSESSED_PREFIX)
                 for sentence in re.split(r"(?<=[.;])\s+", line)]
    for sentence in sentences:
        for clause in re.split(r",|\band\b", sentence) if NEGATION.search(sentence) else [sentence]:
            for label, pattern in TERM_PATTERNS.items():
                if pattern.search(clause):
                    (denied if NEGATION.search(clause) else asserted).add(label)
    return asserted, denied


def disagreements(text: str, findings: list[Finding], only_asserted: bool = False) -> list[str]:
    """Where `text` contradicts the findings: a finding asserted that is absent or not assessed, one denied that
    is present, and (unless `only_asserted`) a present finding never stated."""
    by_label = {f.label: f for f in findings}
    asserted, denied = asserted_and_denied(text)
    problems = []
    for label in sorted(asserted):
        finding = by_label.get(label)
        if finding is None or not finding.present:
            state = "not assessed" if finding is None or not finding.assessed else "absent"
            problems.append(f"states {label.lower()}, which the findings model gives as {state}")
    for label in sorted(denied):
        if by_label.get(label) is not None and by_label[label].present:
            problems.append(f"denies {label.lower()}, which the findings model gives as present")
    if not only_asserted:
        for finding in findings:
            if finding.present and finding.label not in asserted:
                problems.append(f"never states {finding.label.lower()}")
    return problems
