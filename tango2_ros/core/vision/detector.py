"""A YOLO-family ONNX detector with its class names, served like any model (warm-up, health check, hot swap).

The class names come from a `*.names` file next to the model (the artifact carries one), else the class index.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tango2_ros.core.runtime.base import HealthReport, ModelLoadError, ModelRuntime
from tango2_ros.core.runtime.onnx import OnnxRuntime
from tango2_ros.core.vision.yolo import Box, detect, metadata_of


class Detector(ModelRuntime):
    def __init__(self, path: str | Path, *, threads: int = 2, name: str = "", version: str = "") -> None:
        path = Path(path)
        self.onnx = OnnxRuntime(path, threads=threads, name=name, version=version)
        self.identity = self.onnx.identity
        try:
            self.metadata = metadata_of(self.onnx.session)
            classes = self.metadata["heads"][0]["classes"]
        except (ValueError, KeyError, IndexError) as exc:
            raise ModelLoadError(f"{path.name} is not a detector this node can run: {exc}") from None
        names_file = next(iter(sorted(path.parent.glob("*.names"))), None)
        names = names_file.read_text().splitlines()[:classes] if names_file else []
        self.names = names + [str(i) for i in range(len(names), classes)]

    def detect(self, rgb: np.ndarray, score_threshold: float, nms_iou: float) -> list[Box]:
        """An HxWx3 uint8 RGB image (any size: resized to the model's input, no letterbox, as Darknet expects)."""
        size = (self.metadata["input_width"], self.metadata["input_height"])
        tensor = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        outputs = self.onnx.infer({"images": tensor.transpose(2, 0, 1)[None]})
        return detect(outputs, self.metadata, score_threshold, nms_iou)

    def warm_up(self) -> None:
        self.onnx.warm_up()

    def health_check(self, budget_s: float) -> HealthReport:
        return self.onnx.health_check(budget_s)

    def close(self) -> None:
        self.onnx.close()
