"""Scoring the pipeline on a CT-RATE-style dataset: findings precision/recall/F1 per label and micro/macro over
the labels the model assesses, BLEU-1/4 (sacrebleu) and ROUGE-L (rouge-score) of FINDINGS + IMPRESSION against
the reference reports, the text-to-findings agreement rate, and latency per study and per stage.

On phantom datasets the reference reports are the standard wording of the true labels, so BLEU and ROUGE there
measure how far the text follows the findings, not clinical quality; the F1 of the findings is the figure that
matters (as on CT-RATE).
"""
from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tango2_ros.sdm.labels import LABEL_NAMES
from tango2_ros.sdm.report import disagreements
from tango2_ros.sdm.volume import StudyError

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha")


@dataclass(frozen=True)
class LabelledStudy:
    name: str
    path: Path
    labels: dict[str, int]
    reference: str  # findings + impression, "" when the dataset has no report


def read_dataset(folder: Path) -> list[LabelledStudy]:
    labels_csv, reports_csv, volumes = folder / "labels.csv", folder / "reports.csv", folder / "volumes"
    for needed in (labels_csv, volumes):
        if not needed.exists():
            raise StudyError(f"{folder}: {needed.name} is missing (a dataset has volumes/, labels.csv, reports.csv)")
    references = {}
    if reports_csv.exists():
        for row in _rows(reports_csv, ("VolumeName",)):
            references[_stem(row["VolumeName"])] = " ".join(
                filter(None, (row.get("Findings_EN", ""), row.get("Impressions_EN", ""))))
    studies = []
    for row in _rows(labels_csv, ("VolumeName", *LABEL_NAMES)):
        name = _stem(row["VolumeName"])
        path = next((p for p in (volumes / f"{name}{s}" for s in VOLUME_SUFFIXES) if p.exists()), volumes / name)
        if not path.exists():
            raise StudyError(f"{folder}: no volume for {name} in volumes/")
        try:
            labels = {label: int(float(row[label])) for label in LABEL_NAMES}
        except ValueError:
            raise StudyError(f"{labels_csv.name}: {name} has a label that is not 0 or 1") from None
        studies.append(LabelledStudy(name, path, labels, references.get(name, "")))
    if not studies:
        raise StudyError(f"{labels_csv}: no studies")
    return studies


def _rows(path: Path, required: tuple[str, ...]) -> list[dict]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise StudyError(f"{path.name}: missing column(s) {', '.join(missing)}")
        return list(reader)


def _stem(name: str) -> str:
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def evaluate(pipeline, studies: list[LabelledStudy],
             progress: Callable[[int, int], None] = lambda done, total: None) -> dict:
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import BLEU

    counts = {label: [0, 0, 0] for label in LABEL_NAMES}  # tp, fp, fn
    assessed: set[str] = set()
    hypotheses, references, latencies, agreeing, corrected = [], [], [], 0, 0
    stages: dict[str, list[float]] = {}
    for index, study in enumerate(studies, 1):
        report = pipeline.run(study.path)
        for finding in report.findings:
            if not finding.assessed:
                continue
            assessed.add(finding.label)
            truth = bool(study.labels[finding.label])
            if finding.present and truth:
                counts[finding.label][0] += 1
            elif finding.present:
                counts[finding.label][1] += 1
            elif truth:
                counts[finding.label][2] += 1
        text = f"{report.draft.findings_text}\n{report.draft.impression}"  # the not-assessed list is a line of its own
        agreeing += not disagreements(text, report.findings)
        corrected += bool(report.draft.corrections)
        if study.reference:
            hypotheses.append(" ".join(text.split()))
            references.append(study.reference)
        latencies.append(sum(report.seconds.values()))
        for stage, seconds in report.seconds.items():
            stages.setdefault(stage, []).append(seconds)
        progress(index, len(studies))
    per_label = {}
    for label in LABEL_NAMES:
        if label in assessed:
            tp, fp, fn = counts[label]
            per_label[label] = {**_prf(tp, fp, fn), "tp": tp, "fp": fp, "fn": fn}
    total = [sum(counts[label][i] for label in assessed) for i in range(3)]
    result = {
        "studies": len(studies), "assessed_labels": sorted(assessed, key=LABEL_NAMES.index),
        "micro": _prf(*total), "macro_f1": statistics.fmean(v["f1"] for v in per_label.values()) if per_label else 0.0,
        "per_label": per_label, "agreement_pct": 100.0 * agreeing / len(studies),
        "corrected_pct": 100.0 * corrected / len(studies),  # drafts where the check replaced some of the model's text
        "latency_s": {"mean": statistics.fmean(latencies), "median": statistics.median(latencies),
                      "max": max(latencies)},
        "stage_s": {stage: round(statistics.fmean(values), 4) for stage, values in stages.items()},
        "bleu1": 0.0, "bleu4": 0.0, "rouge_l": 0.0,
    }
    if references:
        result["bleu1"] = BLEU(max_ngram_order=1).corpus_score(hypotheses, [references]).score
        result["bleu4"] = BLEU(max_ngram_order=4).corpus_score(hypotheses, [references]).score
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        result["rouge_l"] = 100.0 * statistics.fmean(scorer.score(r, h)["rougeL"].fmeasure
                                                     for r, h in zip(references, hypotheses))
    return result


def _prf(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}
