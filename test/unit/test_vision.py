"""The Darknet-to-ONNX converter and YOLO decoding, checked against OpenCV's own Darknet loader on the real
yolov3-tiny weights, and the detector's journey into the registry as a signed default artifact."""
import json

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from tango2_ros.core.artifacts.cache import ArtifactCache
from tango2_ros.core.artifacts.defaults import YOLO_PACKAGE, import_defaults
from tango2_ros.core.artifacts.signing import TrustStore, generate_keypair
from tango2_ros.core.artifacts.stores import LocalStore
from tango2_ros.core.runtime.default_models import package_file
from tango2_ros.core.vision.darknet import DarknetError, convert
from tango2_ros.core.vision.yolo import candidates, detect, metadata_of

DARKNET = package_file(YOLO_PACKAGE, "mlmodels")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    path = tmp_path_factory.mktemp("yolo") / "yolov3-tiny.onnx"
    convert(DARKNET / "yolov3-tiny.cfg", DARKNET / "yolov3-tiny.weights", path)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_converted_model_matches_opencvs_darknet_loader(converted):
    net = cv2.dnn.readNetFromDarknet(str(DARKNET / "yolov3-tiny.cfg"), str(DARKNET / "yolov3-tiny.weights"))
    image = np.random.default_rng(7).random((1, 3, 416, 416), dtype=np.float32)
    net.setInput(image)
    raw_reference = net.forward(["conv_15", "conv_22"])
    decoded_reference = np.concatenate(net.forward(["yolo_16", "yolo_23"]))
    outputs = dict(zip(["head0", "head1"], converted.run(None, {"images": image})))
    for ours, theirs in zip(outputs.values(), raw_reference):
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() <= 1e-3 * np.abs(theirs).max()
    table = candidates(outputs, metadata_of(converted))
    assert table.shape == decoded_reference.shape == (2535, 85)
    assert np.abs(table[:, :5] - decoded_reference[:, :5]).max() < 1e-3  # boxes and objectness


def test_decoding_finds_a_planted_box_and_suppresses_its_duplicate(converted):
    metadata = metadata_of(converted)
    head0 = np.full((1, 255, 13, 13), -10.0, dtype=np.float32)  # nothing anywhere...
    head1 = np.full((1, 255, 26, 26), -10.0, dtype=np.float32)
    boat = 8  # COCO class 8 is "boat"
    anchor = 1  # 135 x 169 pixels
    for row, col, logit in ((6, 4, 6.0), (6, 5, 5.0)):  # ...except two neighbouring cells, same anchor and class
        base = anchor * 85
        head0[0, base:base + 4, row, col] = 0.0  # centre of the cell, anchor-sized
        head0[0, base + 4, row, col] = 6.0
        head0[0, base + 5 + boat, row, col] = logit
    boxes = detect({"head0": head0, "head1": head1}, metadata, score_threshold=0.5)
    assert len(boxes) == 1, boxes  # the weaker, heavily overlapping duplicate is suppressed
    box = boxes[0]
    assert box.class_id == boat and box.score > 0.99
    assert abs(box.cx - 4.5 / 13) < 1e-6 and abs(box.cy - 6.5 / 13) < 1e-6
    assert abs(box.w - 135 / 416) < 1e-6 and abs(box.h - 169 / 416) < 1e-6


def test_bad_darknet_files_are_named(tmp_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[net]\nwidth=416\nheight=416\n[convolutional]\nfilters=16\nsize=3\n junk line\n")
    with pytest.raises(DarknetError, match="bad.cfg:7"):
        convert(cfg, DARKNET / "yolov3-tiny.weights", tmp_path / "x.onnx")
    cfg.write_text((DARKNET / "yolov3-tiny.cfg").read_text())
    short = tmp_path / "short.weights"
    short.write_bytes((DARKNET / "yolov3-tiny.weights").read_bytes()[:100_000])
    with pytest.raises(DarknetError, match="ends early"):
        convert(cfg, short, tmp_path / "x.onnx")
    long = tmp_path / "long.weights"
    long.write_bytes((DARKNET / "yolov3-tiny.weights").read_bytes() + bytes(400))
    with pytest.raises(DarknetError, match="100 weights the cfg does not use"):
        convert(cfg, long, tmp_path / "x.onnx")
    cfg.write_text("[net]\nwidth=416\nheight=416\n[convolutional]\nfilters=1\nsize=1\nactivation=mish\n[yolo]\n")
    with pytest.raises(DarknetError, match="activation 'mish' is not supported"):
        convert(cfg, long, tmp_path / "x.onnx")


def test_the_detector_is_a_signed_default_artifact(tmp_path):
    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    trust = TrustStore(tmp_path / "trusted")
    trust.trust(tmp_path / "k.pub")
    store = LocalStore(tmp_path / "store")
    assert dict(import_defaults(store, trust, tmp_path / "k.key"))["yolov3-tiny-coco@1.0.0"] is True
    assert dict(import_defaults(store, trust, tmp_path / "k.key"))["yolov3-tiny-coco@1.0.0"] is False
    pulled = ArtifactCache(tmp_path / "cache", trust).pull(store, "yolov3-tiny-coco")
    assert pulled.manifest.task == "detector" and pulled.manifest.format == "onnx"
    names = (pulled.folder / "coco.names").read_text().splitlines()
    assert len(names) == 80 and names[8] == "boat" and names[0] == "person"
    session = ort.InferenceSession(str(pulled.primary_path), providers=["CPUExecutionProvider"])
    assert json.loads(session.get_modelmeta().custom_metadata_map["yolo"])["heads"][0]["classes"] == 80
