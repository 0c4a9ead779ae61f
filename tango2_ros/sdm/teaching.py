"""The report writer's teacher: findings as the findings model gives them, and FINDINGS and IMPRESSION written the
way radiologists phrase them, for teaching the language model that drafts the report.

The teacher is the deterministic reference the learned writer is trained on and judged by: its answers fill the
JSON Schema the report pipeline asks under (`tango2_ros.sdm.report.schema`), and every one passes the same
sentence check the pipeline applies (`checked_draft` leaves it unchanged). Answers vary on purpose (several
phrasings per finding, the impression as a numbered list or one sentence, ordered by clinical importance), so the
model learns to state the findings rather than to copy one template. The findings model gives a probability per
label and nothing about location or size, so neither does the teacher: a writer that added "right lower lobe" or
"8 mm" would invent what no one measured.

A case fixes which labels are assessed (the phantom model's ten, all eighteen, or another subset), which are
present and their probabilities; a seed fixes each case, so a training set and a held-out set drawn from different
seeds never share one. The learned writer is measured on phantom studies through the findings model, which the
teacher never sees (`bench/domain_models.py`).
"""
from __future__ import annotations

import json
import random

from tango2_ros.sdm.findings import Finding
from tango2_ros.sdm.labels import BY_NAME, BY_SLUG, LABEL_NAMES
from tango2_ros.sdm.phantom import INSERTABLE
from tango2_ros.sdm.report import NORMAL_IMPRESSION, checked_draft, prompt, schema

PHANTOM_LABELS = tuple(BY_SLUG[slug].name for slug in INSERTABLE)  # what the phantom findings model assesses

# Ways a radiologist states each finding: the label's term, no negation, no location or size, no other finding.
PHRASINGS = {
    "Medical material": ("Medical material is present in the chest.", "Medical material is seen in the chest.",
                         "A medical device is present in the chest.", "Medical material projects over the chest."),
    "Arterial wall calcification": ("There are calcifications of the aortic wall.",
                                    "Aortic wall calcifications are present.",
                                    "Atherosclerotic calcification of the aortic wall is seen.",
                                    "There is arterial wall calcification."),
    "Cardiomegaly": ("The heart is enlarged.", "There is cardiomegaly.", "Cardiomegaly is present.",
                     "The heart size is increased."),
    "Pericardial effusion": ("There is a pericardial effusion.", "A pericardial effusion is present.",
                             "A pericardial effusion is seen.", "Pericardial effusion is noted."),
    "Coronary artery wall calcification": ("There are coronary artery calcifications.",
                                           "Coronary artery calcifications are seen.",
                                           "Calcified plaque is present in the coronary arteries."),
    "Hiatal hernia": ("There is a hiatal hernia.", "A hiatal hernia is present.", "A hiatal hernia is noted."),
    "Lymphadenopathy": ("There are enlarged mediastinal lymph nodes.", "Mediastinal lymphadenopathy is present.",
                        "Enlarged lymph nodes are seen in the mediastinum."),
    "Emphysema": ("There are emphysematous changes in the lungs.", "Emphysema is present.",
                  "Emphysematous changes are seen in the lungs."),
    "Atelectasis": ("There is atelectasis.", "Atelectasis is present.", "Areas of atelectasis are seen."),
    "Lung nodule": ("There is a pulmonary nodule.", "A pulmonary nodule is seen.", "A nodule is present in the lung.",
                    "A lung nodule is identified."),
    "Lung opacity": ("There is an opacity in the lung parenchyma.", "A parenchymal opacity is seen.",
                     "Lung opacities are present."),
    "Pulmonary fibrotic sequela": ("There are fibrotic sequelae in the lungs.", "Fibrotic changes are seen in the lungs.",
                                   "Fibrotic sequelae are present in the lungs."),
    "Pleural effusion": ("There is a pleural effusion.", "A pleural effusion is present.", "Pleural effusion is seen."),
    "Mosaic attenuation pattern": ("There is a mosaic attenuation pattern.",
                                   "A mosaic attenuation pattern is seen in the lungs.",
                                   "The lungs show mosaic attenuation."),
    "Peribronchial thickening": ("There is peribronchial thickening.", "Peribronchial thickening is seen.",
                                 "The airways show peribronchial thickening."),
    "Consolidation": ("There is a consolidation in the lung.", "A consolidation is seen in the lung.",
                      "Consolidation is present in the lung parenchyma."),
    "Bronchiectasis": ("There is bronchiectasis.", "Bronchiectasis is present.", "Bronchiectasis is seen."),
    "Interlobular septal thickening": ("There is interlobular septal thickening.",
                                       "Interlobular septal thickening is seen.",
                                       "Septal thickening is present in the lungs."),
}
# The impression names the findings most in need of attention first: acute and possibly malignant ones, then
# chronic changes, then incidental ones.
IMPORTANCE = ("Consolidation", "Pericardial effusion", "Pleural effusion", "Lung nodule", "Lung opacity",
              "Lymphadenopathy", "Atelectasis", "Cardiomegaly", "Bronchiectasis", "Interlobular septal thickening",
              "Mosaic attenuation pattern", "Peribronchial thickening", "Pulmonary fibrotic sequela", "Emphysema",
              "Hiatal hernia", "Coronary artery wall calcification", "Arterial wall calcification", "Medical material")
NORMAL_IMPRESSIONS = (NORMAL_IMPRESSION, "Unremarkable study for the assessed findings.",
                      "None of the assessed findings is present.")


def findings_case(seed: int) -> list[Finding]:
    """One case as the findings model would give it: which labels it assesses, each one's threshold and
    probability, and so which are present (none to five). The same seed gives the same case."""
    rng = random.Random(seed)
    assessed = rng.choices((PHANTOM_LABELS, LABEL_NAMES, tuple(rng.sample(LABEL_NAMES, rng.randint(6, 17)))),
                           weights=(5, 3, 2))[0]
    present = set(rng.sample(assessed, rng.choices((0, 1, 2, 3, 4, 5), weights=(2, 4, 4, 3, 2, 1))[0]))
    findings = []
    for label in LABEL_NAMES:
        if label not in assessed:
            findings.append(Finding(label, None, 0.5, False))
            continue
        threshold = round(rng.uniform(0.3, 0.6), 2)
        probability = rng.uniform(threshold + 0.02, 0.99) if label in present else rng.uniform(0.01, threshold - 0.02)
        findings.append(Finding(label, round(probability, 4), threshold, label in present))
    return findings


def teacher_answer(findings: list[Finding], rng: random.Random) -> dict:
    """The JSON answer (`report.schema`): one sentence per present finding, in the prompt's order, and the
    impression ordered by importance."""
    present = [f.label for f in findings if f.present]
    ranked = sorted(present, key=IMPORTANCE.index)
    if not ranked:
        impression = rng.choice(NORMAL_IMPRESSIONS)
    elif len(ranked) == 1 or rng.random() < 0.6:
        impression = "\n".join(f"{i}. {BY_NAME[label].impression}." for i, label in enumerate(ranked, 1))
    else:
        phrases = [BY_NAME[label].impression for label in ranked]
        impression = ", ".join(phrases[:-1]) + f" and {phrases[-1][0].lower()}{phrases[-1][1:]}."
    return {"sentences": [{"finding": label, "sentence": rng.choice(PHRASINGS[label])} for label in present],
            "impression": impression}


def report_row(findings: list[Finding], rng: random.Random, case: str) -> dict:
    """One JSONL line: the prompt the report pipeline sends, the teacher's answer, and what the check needs."""
    answer = json.dumps(teacher_answer(findings, rng))
    return {"messages": [{"role": "user", "content": prompt(findings)}, {"role": "assistant", "content": answer}],
            "check": {"task": "sdm-report", "case": case, "language": "en",
                      "findings": [f.as_dict() for f in findings], "schema": schema(findings)}}


def report_rows(seeds, languages: tuple[str, ...], rng: random.Random) -> list[dict]:
    """A teaching set for the report writer: one draft per case (English: the reports are English)."""
    return [report_row(findings_case(seed), rng, f"case-{seed}") for seed in seeds]


def check_report(output: str, check: dict) -> list[str]:
    """The corrections the sentence check makes to a model's draft (empty: the raw draft passed)."""
    return checked_draft(output, [Finding.from_dict(f) for f in check["findings"]], "candidate").corrections
