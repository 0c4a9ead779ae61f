"""Decoding YOLO head outputs (as the Darknet converter writes them) into boxes, with per-class NMS.

Darknet's box formula: centre = (cell + sigmoid(t)) / grid, size = anchor * exp(t) / network input size, all as
fractions of the image; score = sigmoid(objectness) * sigmoid(class logit).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    class_id: int
    score: float
    cx: float  # centre and size as fractions of the image width/height
    cy: float
    w: float
    h: float


def metadata_of(session) -> dict:
    """The `yolo` metadata the converter stores in the model (anchors, classes, input size)."""
    props = session.get_modelmeta().custom_metadata_map
    if "yolo" not in props:
        raise ValueError("the model has no 'yolo' metadata (convert it with tango2_ros.core.vision.darknet)")
    return json.loads(props["yolo"])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def candidates(outputs: dict[str, np.ndarray], metadata: dict, batch_index: int = 0) -> np.ndarray:
    """Every anchor of every cell as a row [cx, cy, w, h, objectness, class scores...] (before thresholds)."""
    rows = []
    for head in metadata["heads"]:
        raw = outputs[head["output"]][batch_index]
        anchors = np.asarray(head["anchors"], dtype=np.float32)
        per_anchor = 5 + head["classes"]
        grid_h, grid_w = raw.shape[1:]
        raw = raw.reshape(len(anchors), per_anchor, grid_h, grid_w)
        cols, rows_index = np.meshgrid(np.arange(grid_w), np.arange(grid_h))
        cx = (cols + _sigmoid(raw[:, 0])) / grid_w
        cy = (rows_index + _sigmoid(raw[:, 1])) / grid_h
        w = np.exp(raw[:, 2]) * anchors[:, 0, None, None] / metadata["input_width"]
        h = np.exp(raw[:, 3]) * anchors[:, 1, None, None] / metadata["input_height"]
        objectness = _sigmoid(raw[:, 4])
        scores = _sigmoid(raw[:, 5:]) * objectness[:, None]
        stacked = np.concatenate([np.stack([cx, cy, w, h, objectness], axis=1), scores], axis=1)
        rows.append(stacked.transpose(2, 3, 0, 1).reshape(-1, per_anchor))  # cell by cell, anchors within a cell
    return np.concatenate(rows)


def detect(outputs: dict[str, np.ndarray], metadata: dict, score_threshold: float = 0.25,
           iou_threshold: float = 0.45, batch_index: int = 0) -> list[Box]:
    table = candidates(outputs, metadata, batch_index)
    class_ids = table[:, 5:].argmax(axis=1)
    scores = table[np.arange(len(table)), 5 + class_ids]
    keep = scores >= score_threshold
    boxes = [Box(int(c), float(s), *map(float, row[:4])) for c, s, row in zip(class_ids[keep], scores[keep], table[keep])]
    return _nms(boxes, iou_threshold)


def _iou(a: Box, b: Box) -> float:
    left, right = max(a.cx - a.w / 2, b.cx - b.w / 2), min(a.cx + a.w / 2, b.cx + b.w / 2)
    top, bottom = max(a.cy - a.h / 2, b.cy - b.h / 2), min(a.cy + a.h / 2, b.cy + b.h / 2)
    inter = max(0.0, right - left) * max(0.0, bottom - top)
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


def _nms(boxes: list[Box], iou_threshold: float) -> list[Box]:
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: -b.score):
        if all(k.class_id != box.class_id or _iou(k, box) < iou_threshold for k in kept):
            kept.append(box)
    return kept
