"""perception_node: a YOLO-family ONNX detector on camera images -> `sds/detections` (DetectionArray).

Subscribes `sds/image` (sensor_msgs/Image, rgb8/bgr8/mono8), resizes to the model's input (no letterbox, as the
Darknet models expect), runs onnxruntime, decodes the heads (tango2_ros.core.vision.yolo) and publishes boxes in
source-image pixels with class names and, when `camera_hfov_deg` is set, each box centre's bearing relative to
the camera axis (the tracker's camera input). `model_path` empty = the embedded yolov3-tiny COCO model,
converted from its Darknet files at configure time; the model manager swaps in another through `~/load_model`
(tango2_ros.nodes.serving), between frames. Images it cannot use (other encodings, a data size that does not match
width x height x channels, empty images) are counted with the reason and dropped.
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from sensor_msgs.msg import Image

from tango2_msgs.msg import Detection, DetectionArray
from tango2_ros.core.runtime.serving import ModelSpec
from tango2_ros.core.vision.detector import Detector
from tango2_ros.nodes.base import OK, WARN, Tango2Node, run_node
from tango2_ros.nodes.serving import ModelService
from tango2_ros.ros.conversions.images import image_from_ros


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
        self.model = ModelService(self, self._open, 10.0, "detection of the golden frame")
        self._scratch: tempfile.TemporaryDirectory | None = None
        self._counts = {"frames": 0, "rejected": 0, "detections": 0}
        self._publisher = None

    def executor_threads(self) -> int:
        return 1

    def _open(self, spec: ModelSpec, _beside: bool) -> Detector:
        return Detector(spec.path, threads=self.param("threads"), name=spec.name, version=spec.version)

    def configure(self) -> None:
        path = self.param("model_path") or str(self._embedded_model())
        self.model.load(ModelSpec(path))
        self.model.start()
        self._publisher = self.create_lifecycle_publisher(DetectionArray, "sds/detections", 10)
        self.create_subscription(Image, "sds/image", self._on_image, 2)

    def cleanup(self) -> None:
        self.model.stop()
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
        if self._publisher is None or not self._publisher.is_activated:
            return  # no inference while inactive
        try:
            rgb = image_from_ros(message)
        except ValueError as exc:
            self._counts["rejected"] += 1
            self.set_status(WARN, f"image rejected: {exc}", **self._counts)
            return
        with self.model.served.slot.lease() as detector:
            started = time.perf_counter()
            boxes = detector.detect(rgb, self.param("score_threshold"), self.param("nms_iou"))
            elapsed_ms = (time.perf_counter() - started) * 1e3
        out = DetectionArray(header=message.header, image_width_px=message.width, image_height_px=message.height,
                             model=detector.identity.label, inference_ms=elapsed_ms)
        hfov = self.param("camera_hfov_deg")
        for box in boxes:
            out.detections.append(Detection(
                x_min_px=(box.cx - box.w / 2) * message.width, y_min_px=(box.cy - box.h / 2) * message.height,
                width_px=box.w * message.width, height_px=box.h * message.height, class_id=box.class_id,
                class_name=detector.names[box.class_id] if box.class_id < len(detector.names) else str(box.class_id),
                score=box.score, relative_bearing_deg=(box.cx - 0.5) * hfov if hfov > 0 else math.nan))
        self._publisher.publish(out)
        self._counts["frames"] += 1
        self._counts["detections"] += len(boxes)
        self.set_status(OK, f"detecting with {detector.identity.label}")
        self.model.count(detector.identity.label, False, **self._counts, inference_ms=f"{elapsed_ms:.1f}")


def main(args: list[str] | None = None) -> int:
    return run_node(PerceptionNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
