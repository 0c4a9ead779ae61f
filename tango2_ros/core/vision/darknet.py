"""Darknet YOLO (cfg + weights) to ONNX, so the detector runs in onnxruntime like every other model.

Supports the layers of the YOLOv3 family: convolutional (batch norm folded into the weights, leaky or linear),
maxpool (Darknet pads right/bottom, so a stride-1 pool keeps the size), route, shortcut, upsample (nearest) and
yolo heads. Each yolo head's input becomes a graph output `head<i>` of shape [N, anchors*(5+classes), H, W];
anchors, masks, class count and input size go into the model's metadata (`yolo`, JSON) so the decoder needs
nothing else. Input `images`: float32 [N, 3, H, W], RGB scaled to 0..1, resized without letterbox (as OpenCV's
Darknet loader expects).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LEAKY_SLOPE = 0.1
BN_EPSILON = 1e-5
OPSET = 13


class DarknetError(ValueError):
    """The cfg or weights file is not what the converter understands; the message says where."""


@dataclass
class Section:
    kind: str
    options: dict[str, str] = field(default_factory=dict)
    line: int = 0

    def int(self, key: str, default: int | None = None) -> int:
        if key not in self.options:
            if default is None:
                raise DarknetError(f"[{self.kind}] at line {self.line} lacks '{key}'")
            return default
        return int(self.options[key])


def parse_cfg(path: Path) -> list[Section]:
    sections: list[Section] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise DarknetError(f"{path}:{number}: malformed section header {line!r}")
            sections.append(Section(line[1:-1].strip(), {}, number))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1].options[key.strip()] = value.strip()
        else:
            raise DarknetError(f"{path}:{number}: expected 'key=value' or a [section], got {line!r}")
    if not sections or sections[0].kind not in ("net", "network"):
        raise DarknetError(f"{path}: the first section must be [net]")
    return sections


class _Weights:
    def __init__(self, path: Path) -> None:
        raw = path.read_bytes()
        major, minor, _revision = np.frombuffer(raw[:12], dtype=np.int32)
        header = 20 if major * 10 + minor >= 2 else 16  # "seen" became 64-bit in 0.2
        self.data = np.frombuffer(raw[header:], dtype=np.float32)
        self.offset = 0
        self.path = path

    def take(self, count: int) -> np.ndarray:
        if self.offset + count > self.data.size:
            raise DarknetError(f"{self.path} ends early: the cfg needs more weights than the file has")
        chunk = self.data[self.offset:self.offset + count]
        self.offset += count
        return chunk

    def check_consumed(self) -> None:
        if self.offset != self.data.size:
            raise DarknetError(f"{self.path} has {self.data.size - self.offset} weights the cfg does not use")


class _Graph:
    """The ONNX graph being built, layer by layer, as Darknet's cfg sections list them."""

    def __init__(self, weights: _Weights, channels: int) -> None:
        self.weights = weights
        self.nodes, self.initializers, self.outputs, self.heads = [], [], [], []
        self.names: list[str] = []  # output tensor of each layer
        self.depths: list[int] = []  # channels of each layer's output
        self.current, self.depth = "images", channels

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def add(self, index: int, section) -> None:
        handler = {"convolutional": self._convolutional, "maxpool": self._maxpool, "upsample": self._upsample,
                   "route": self._route, "shortcut": self._shortcut, "yolo": self._yolo}.get(section.kind)
        if handler is None:
            raise DarknetError(f"[{section.kind}] at line {section.line} is not supported")
        handler(f"l{index}", index, section)
        self.names.append(self.current)
        self.depths.append(self.depth)

    def _convolutional(self, tag: str, _index: int, section) -> None:
        filters, size = section.int("filters"), section.int("size")
        stride, pad = section.int("stride", 1), size // 2 if section.int("pad", 0) else section.int("padding", 0)
        weights = self.weights
        if section.int("batch_normalize", 0):
            bias, scale, mean, var = (weights.take(filters) for _ in range(4))
        else:
            bias, scale, mean, var = weights.take(filters), None, None, None
        kernel = weights.take(filters * self.depth * size * size).reshape(filters, self.depth, size, size).copy()
        if scale is not None:  # fold batch norm: y = scale * (conv - mean) / sqrt(var + eps) + bias
            factor = scale / np.sqrt(var + BN_EPSILON)
            kernel *= factor[:, None, None, None]
            bias = bias - mean * factor
        self.nodes.append(helper.make_node(
            "Conv", [self.current, self.const(f"{tag}_w", kernel.astype(np.float32)),
                     self.const(f"{tag}_b", bias.astype(np.float32))],
            [f"{tag}_conv"], kernel_shape=[size, size], strides=[stride, stride], pads=[pad] * 4))
        self.current, self.depth = f"{tag}_conv", filters
        activation = section.options.get("activation", "linear")
        if activation == "leaky":
            self.nodes.append(helper.make_node("LeakyRelu", [self.current], [f"{tag}_act"], alpha=LEAKY_SLOPE))
            self.current = f"{tag}_act"
        elif activation != "linear":
            raise DarknetError(f"[convolutional] at line {section.line}: activation {activation!r} is not supported")

    def _maxpool(self, tag: str, _index: int, section) -> None:
        size, stride = section.int("size", 2), section.int("stride", 2)
        extra = section.int("padding", size - 1)
        self.nodes.append(helper.make_node(
            "MaxPool", [self.current], [f"{tag}_pool"], kernel_shape=[size, size], strides=[stride, stride],
            pads=[extra // 2, extra // 2, extra - extra // 2, extra - extra // 2]))
        self.current = f"{tag}_pool"

    def _upsample(self, tag: str, _index: int, section) -> None:
        factor = float(section.int("stride", 2))
        scales = self.const(f"{tag}_scales", np.array([1, 1, factor, factor], dtype=np.float32))
        self.nodes.append(helper.make_node("Resize", [self.current, "", scales], [f"{tag}_up"], mode="nearest"))
        self.current = f"{tag}_up"

    def _route(self, tag: str, index: int, section) -> None:
        sources = [index + v if v < 0 else v for v in (int(v) for v in section.options["layers"].split(","))]
        if any(not 0 <= s < index for s in sources):
            raise DarknetError(f"[route] at line {section.line} refers to a layer that does not exist")
        if len(sources) == 1:
            self.current, self.depth = self.names[sources[0]], self.depths[sources[0]]
        else:
            self.nodes.append(helper.make_node("Concat", [self.names[s] for s in sources], [f"{tag}_route"], axis=1))
            self.current, self.depth = f"{tag}_route", sum(self.depths[s] for s in sources)

    def _shortcut(self, tag: str, index: int, section) -> None:
        source = index + section.int("from") if section.int("from") < 0 else section.int("from")
        self.nodes.append(helper.make_node("Add", [self.current, self.names[source]], [f"{tag}_add"]))
        self.current = f"{tag}_add"

    def _yolo(self, _tag: str, _index: int, section) -> None:
        anchors = [int(v) for v in section.options["anchors"].split(",")]
        mask = [int(v) for v in section.options["mask"].split(",")]
        head = {"output": f"head{len(self.heads)}", "anchors": [anchors[2 * m:2 * m + 2] for m in mask],
                "classes": section.int("classes")}
        self.heads.append(head)
        self.nodes.append(helper.make_node("Identity", [self.current], [head["output"]]))
        self.outputs.append(helper.make_tensor_value_info(head["output"], TensorProto.FLOAT,
                                                          ["batch", self.depth, f"h{len(self.heads)}",
                                                           f"w{len(self.heads)}"]))


def convert(cfg_path: Path, weights_path: Path, out_path: Path) -> dict:
    """Write the ONNX model; return its yolo metadata."""
    sections = parse_cfg(cfg_path)
    net = sections[0]
    width, height, channels = net.int("width"), net.int("height"), net.int("channels", 3)
    weights = _Weights(weights_path)
    graph_builder = _Graph(weights, channels)
    for index, section in enumerate(sections[1:]):
        graph_builder.add(index, section)
    weights.check_consumed()
    if not graph_builder.heads:
        raise DarknetError(f"{cfg_path} has no [yolo] layer")
    graph = helper.make_graph(
        graph_builder.nodes, "yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", channels, height, width])],
        graph_builder.outputs, graph_builder.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tango2-darknet")
    metadata = {"input_width": width, "input_height": height, "heads": graph_builder.heads}
    helper.set_model_props(model, {"yolo": json.dumps(metadata)})
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return metadata
