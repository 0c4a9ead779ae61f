"""perception_node: a YOLO-family ONNX detector on camera images -> `sds/detections` (DetectionArray).

Subscribes `sds/image` (sensor_msgs/Image, rgb8/bgr8/mono8), resizes to the model's input (no letterbox, as the
Darknet models expect), runs onnxruntime, decodes the heads (tango2_ros.core.vision.yolo) and publishes boxes in
source-image pixels with class names and, when `camera_hfov_deg` is set, each box centre's bearing relative to
the camera axis (the tracker's camera input). `model_path` empty = the embedded yolov3-tiny COCO model,
converted from its Darknet files at configure time. Images it cannot use (other encodings, a data size that does
not match width x height x channels, empty images) are counted with the reason and dropped.
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from sensor_msgs.msg import Image

from tango2_msgs.msg import Detection, DetectionArray
from tango2_ros.core.runtime.onnx import OnnxRuntime
from tango2_ros.core.vision.yolo import detect, metadata_of
from tango2_ros.nodes.base import OK, WARN, Tango2Node, run_node

CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}


class PerceptionNode(Tango2Node):
    def __init__(self) -> None:
        super().__init__("perception_node")
        self.declare("model_path", "", "YOLO ONNX model (converted by tango2_ros.core.vision.darknet); empty = the "
                     "embedded yolov3-tiny COCO model.")
        self.declare("score_threshold", 0.25, "Minimum objectness x class score.", min_value=0.0, max_value=1.0)
        self.declare("nms_iou", 0.45, "Boxes of one class overlapping more than this are merged.", min_value=0.0,
                     max_value=1.0)
        self.declare("camera_hfov_deg", 0.0, "Horizontal field of view; 0 = unknown (bearings NaN).", min_value=0.0,
                     max_value=360.0)
        self.declare("threads", 2, "onnxruntime intra-op threads.", min_value=1, max_value=64)
        self._runtime: OnnxRuntime | None = None
        self._metadata: dict = {}
        self._names: list[str] = []
        self._scratch: tempfile.TemporaryDirectory | None = None
        self._counts = {"frames": 0, "rejected": 0, "detections": 0}
        self._active = False

    def executor_threads(self) -> int:
        return 1

    def configure(self) -> None:
        path = Path(self.param("model_path")) if self.param("model_path") else self._embedded_model()
        self._runtime = OnnxRuntime(path, threads=self.param("threads"))
        self._metadata = metadata_of(self._runtime.session)
        names_file = next(iter(sorted(path.parent.glob("*.names"))), None)
        classes = self._metadata["heads"][0]["classes"]
        self._names = names_file.read_text().splitlines()[:classes] if names_file else [str(i) for i in range(classes)]
        self._publisher = self.create_publisher(DetectionArray, "sds/detections", 10)
        self.create_subscription(Image, "sds/image", self._on_image, 2)
        self.set_status(WARN, f"waiting for images ({self._runtime.identity.label})")

    def activate(self) -> None:
        self._active = True

    def deactivate(self) -> None:
        self._active = False

    def cleanup(self) -> None:
        self._runtime = None
        if self._scratch is not None:
            self._scratch.cleanup()

    def _embedded_model(self) -> Path:
        from tango2_ros.core.artifacts.defaults import DEFAULT_ARTIFACTS

        detector = next(a for a in DEFAULT_ARTIFACTS if a.task == "detector")
        self._scratch = tempfile.TemporaryDirectory(prefix="tango2-detector-")
        files = detector.make_files(Path(self._scratch.name))
        for extra in files[1:]:  # the class names next to the model
            (Path(self._scratch.name) / extra.name).write_bytes(extra.read_bytes())
        return files[0]

    def _on_image(self, message: Image) -> None:
        if not self._active or self._runtime is None:
            return
        try:
            rgb = image_to_rgb(message)
        except ValueError as exc:
            self._counts["rejected"] += 1
            self.set_status(WARN, f"image rejected: {exc}", **self._counts)
            return
        started = time.perf_counter()
        boxes = self.detect(rgb)
        elapsed_ms = (time.perf_counter() - started) * 1e3
        out = DetectionArray(header=message.header, image_width_px=message.width, image_height_px=message.height,
                             model=self._runtime.identity.label, inference_ms=elapsed_ms)
        hfov = self.param("camera_hfov_deg")
        for box in boxes:
            out.detections.append(Detection(
                x_min_px=(box.cx - box.w / 2) * message.width, y_min_px=(box.cy - box.h / 2) * message.height,
                width_px=box.w * message.width, height_px=box.h * message.height, class_id=box.class_id,
                class_name=self._names[box.class_id] if box.class_id < len(self._names) else str(box.class_id),
                score=box.score, relative_bearing_deg=(box.cx - 0.5) * hfov if hfov > 0 else math.nan))
        self._publisher.publish(out)
        self._counts["frames"] += 1
        self._counts["detections"] += len(boxes)
        self.set_status(OK, f"detecting with {self._runtime.identity.label}", **self._counts,
                        inference_ms=f"{elapsed_ms:.1f}")

    def detect(self, rgb: np.ndarray):
        size = (self._metadata["input_width"], self._metadata["input_height"])
        tensor = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        outputs = self._runtime.infer({"images": tensor.transpose(2, 0, 1)[None]})
        return detect(outputs, self._metadata, self.param("score_threshold"), self.param("nms_iou"))


def image_to_rgb(message: Image) -> np.ndarray:
    """An HxWx3 uint8 RGB array, or ValueError naming what is wrong with the message."""
    channels = CHANNELS.get(message.encoding)
    if channels is None:
        raise ValueError(f"encoding {message.encoding!r} is not one of {', '.join(CHANNELS)}")
    if message.width == 0 or message.height == 0:
        raise ValueError("the image is empty")
    row = message.width * channels
    if message.step < row or len(message.data) < message.step * message.height:
        raise ValueError(f"{len(message.data)} bytes do not hold {message.height} rows of {message.width} x {channels} "
                         f"(step {message.step})")
    pixels = np.frombuffer(bytes(message.data), dtype=np.uint8)[: message.step * message.height]
    pixels = pixels.reshape(message.height, message.step)[:, :row].reshape(message.height, message.width, channels)
    if message.encoding == "bgr8":
        return pixels[:, :, ::-1]
    if message.encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    return pixels


def main(args: list[str] | None = None) -> int:
    return run_node(PerceptionNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
