"""The findings model: an ONNX network giving a probability for each of the 18 CT-RATE labels.

The model carries its conventions in its ONNX metadata (`tango2.ct_findings`: label order, the labels it was
trained on, per-label thresholds, preprocessing), so a stronger model from elsewhere plugs in by writing that
entry (`tango2_ros.sdm.training.write_metadata`). Labels outside `trained_labels` are reported as not assessed
(probability None), never as absent: the report must not state a negative the model cannot support.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy

from tango2_ros.core.runtime.base import HealthReport, ModelLoadError, ModelRuntime, golden_check
from tango2_ros.core.runtime.onnx import OnnxRuntime
from tango2_ros.sdm.labels import LABEL_NAMES
from tango2_ros.sdm.volume import Preprocessing

METADATA_KEY = "tango2.ct_findings"


@dataclass(frozen=True)
class Finding:
    label: str
    probability: float | None  # None: the model does not assess this label
    threshold: float
    present: bool

    @property
    def assessed(self) -> bool:
        return self.probability is not None

    def as_dict(self) -> dict:
        return {"label": self.label, "probability": None if self.probability is None else round(self.probability, 4),
                "threshold": self.threshold, "present": self.present, "assessed": self.assessed}

    @classmethod
    def from_dict(cls, data: dict) -> "Finding":
        """The inverse of `as_dict` (a teaching row's check, a report's JSON)."""
        return cls(data["label"], data["probability"], data["threshold"], data["present"])


class FindingsModel(ModelRuntime):
    def __init__(self, path: str | Path, *, threads: int = 2, name: str = "", version: str = "") -> None:
        self.runtime = OnnxRuntime(path, threads=threads, name=name, version=version)
        self.identity = self.runtime.identity
        metadata = self.runtime.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in metadata:
            raise ModelLoadError(f"{Path(path).name} has no '{METADATA_KEY}' metadata (labels, thresholds, "
                                 "preprocessing); see tango2_ros.sdm.training.write_metadata")
        try:
            meta = json.loads(metadata[METADATA_KEY])
            self.labels = tuple(meta["labels"])
            self.trained = frozenset(meta["trained_labels"])
            self.thresholds = {k: float(v) for k, v in meta["thresholds"].items()}
            pre = meta["preprocessing"]
            self.preprocessing = Preprocessing(spacing=tuple(pre["spacing"]), shape=tuple(pre["shape"]),
                                               hu_window=tuple(pre["hu_window"]), scale=float(pre["scale"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{Path(path).name}: malformed '{METADATA_KEY}' metadata ({exc})") from None
        if self.labels != LABEL_NAMES:
            raise ModelLoadError(f"{Path(path).name}: its labels are not the 18 CT-RATE labels in their order")
        self.input_name = next(iter(self.runtime.inputs))

    @property
    def label(self) -> str:
        return self.runtime.identity.label

    def warm_up(self) -> None:
        self.predict(self._blank())

    def health_check(self, budget_s: float) -> HealthReport:
        """A volume of air must give the 18 findings with probabilities in [0, 1], within the budget."""
        def golden() -> str:
            findings = self.predict(self._blank())
            probabilities = [f.probability for f in findings if f.probability is not None]
            if len(findings) != len(LABEL_NAMES) or not all(0.0 <= p <= 1.0 for p in probabilities):
                return "gave probabilities outside [0, 1]"
            return ""

        return golden_check(golden, budget_s, "a blank volume")

    def close(self) -> None:
        self.runtime.close()

    def _blank(self) -> numpy.ndarray:
        return numpy.full(self.preprocessing.shape, -1.0, dtype=numpy.float32)  # air, after the /1000 scaling

    def predict(self, model_input: numpy.ndarray) -> list[Finding]:
        """One preprocessed volume (D, H, W) -> the 18 findings in label order."""
        batch = model_input[None, None].astype(numpy.float32)
        probabilities = next(iter(self.runtime.infer({self.input_name: batch}).values()))[0]
        findings = []
        for name, probability in zip(LABEL_NAMES, probabilities):
            if name not in self.trained:
                findings.append(Finding(name, None, 0.5, False))
                continue
            threshold = self.thresholds.get(name, 0.5)
            findings.append(Finding(name, float(probability), threshold, bool(probability >= threshold)))
        return findings
