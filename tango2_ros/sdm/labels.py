"""The 18 CT-RATE abnormality labels (their standard order), their command-line names, and report phrasing.

Each label has the sentence a radiologist writes when it is present and the pertinent negative when it is
absent; the report writer and the agreement check both use these, so the text and the structured findings
cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Label:
    name: str  # as in CT-RATE's label CSV
    positive: str  # the FINDINGS sentence when present
    negative: str  # the pertinent negative when absent
    impression: str  # the IMPRESSION phrase when present
    section: str  # where in FINDINGS it belongs (lungs, pleura, heart, mediastinum, other)

    @property
    def slug(self) -> str:
        """The command-line name: lower case, hyphens for spaces (`lung-nodule`)."""
        return self.name.lower().replace(" ", "-")


LABELS: tuple[Label, ...] = (
    Label("Medical material", "Medical material is present in the chest.", "No medical material is seen.",
          "Medical material in the chest", "other"),
    Label("Arterial wall calcification", "There are calcifications of the aortic wall.",
          "No arterial wall calcification.", "Arterial wall calcification", "mediastinum"),
    Label("Cardiomegaly", "The heart is enlarged.", "The heart size is normal.", "Cardiomegaly", "heart"),
    Label("Pericardial effusion", "There is a pericardial effusion.", "No pericardial effusion.",
          "Pericardial effusion", "heart"),
    Label("Coronary artery wall calcification", "There are coronary artery calcifications.",
          "No coronary artery calcification.", "Coronary artery calcification", "heart"),
    Label("Hiatal hernia", "There is a hiatal hernia.", "No hiatal hernia.", "Hiatal hernia", "other"),
    Label("Lymphadenopathy", "There are enlarged mediastinal lymph nodes.", "No mediastinal lymphadenopathy.",
          "Mediastinal lymphadenopathy", "mediastinum"),
    Label("Emphysema", "There are emphysematous changes in the lungs.", "No emphysema.", "Emphysema", "lungs"),
    Label("Atelectasis", "There is atelectasis in the lower lobe.", "No atelectasis.", "Atelectasis", "lungs"),
    Label("Lung nodule", "There is a pulmonary nodule.", "No pulmonary nodule.", "Pulmonary nodule", "lungs"),
    Label("Lung opacity", "There is an opacity in the lung parenchyma.", "No lung opacity.", "Lung opacity",
          "lungs"),
    Label("Pulmonary fibrotic sequela", "There are fibrotic sequelae in the lungs.", "No pulmonary fibrotic sequela.",
          "Pulmonary fibrotic sequelae", "lungs"),
    Label("Pleural effusion", "There is a pleural effusion.", "No pleural effusion.", "Pleural effusion", "pleura"),
    Label("Mosaic attenuation pattern", "There is a mosaic attenuation pattern.", "No mosaic attenuation.",
          "Mosaic attenuation pattern", "lungs"),
    Label("Peribronchial thickening", "There is peribronchial thickening.", "No peribronchial thickening.",
          "Peribronchial thickening", "lungs"),
    Label("Consolidation", "There is a consolidation in the lung.", "No consolidation.", "Consolidation", "lungs"),
    Label("Bronchiectasis", "There is bronchiectasis.", "No bronchiectasis.", "Bronchiectasis", "lungs"),
    Label("Interlobular septal thickening", "There is interlobular septal thickening.",
          "No interlobular septal thickening.", "Interlobular septal thickening", "lungs"),
)
LABEL_NAMES = tuple(label.name for label in LABELS)
BY_SLUG = {label.slug: label for label in LABELS}
BY_NAME = {label.name: label for label in LABELS}
SECTIONS = ("lungs", "pleura", "heart", "mediastinum", "other")


def label_of(slug: str) -> Label:
    """The label for a command-line name; raises ValueError naming the known ones."""
    try:
        return BY_SLUG[slug.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown finding {slug!r} (known: {', '.join(BY_SLUG)})") from None
