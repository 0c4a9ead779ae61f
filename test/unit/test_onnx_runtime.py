"""The onnxruntime backend on a real ONNX model file written by the test (a small dense layer)."""
import numpy
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tango2_ros.core.runtime.base import ModelLoadError, RuntimeSlot
from tango2_ros.core.runtime.onnx import InferenceError, OnnxRuntime

WEIGHTS = numpy.arange(12, dtype=numpy.float32).reshape(4, 3) / 10.0
BIAS = numpy.array([0.5, -1.0, 0.0], dtype=numpy.float32)


def write_dense_model(path, weights=WEIGHTS, bias=BIAS):
    """y = relu(x @ W + b) with a free batch dimension."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["z"]),
         helper.make_node("Relu", ["z"], ["y"])],
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_inference_matches_numpy(tmp_path):
    runtime = OnnxRuntime(write_dense_model(tmp_path / "dense.onnx"), name="dense", version="1.0.0")
    x = numpy.random.default_rng(0).normal(size=(5, 4)).astype(numpy.float32)
    y = runtime.infer({"x": x})["y"]
    numpy.testing.assert_allclose(y, numpy.maximum(x @ WEIGHTS + BIAS, 0), rtol=1e-5, atol=1e-6)
    assert runtime.identity.label == "dense@1.0.0" and runtime.identity.format == "onnx"
    runtime.warm_up()
    health = runtime.health_check(budget_s=5.0)
    assert health.ok and health.latency_s < 5.0


@pytest.mark.parametrize(
    "feeds, words",
    [
        ({}, "missing ['x']"),
        ({"x": numpy.zeros((1, 4), numpy.float32), "extra": numpy.zeros(1)}, "unknown ['extra']"),
        ({"x": numpy.zeros((1, 5), numpy.float32)}, "has shape (1, 5), the model wants ('batch', 4)"),
        ({"x": numpy.zeros((4,), numpy.float32)}, "has shape (4,)"),
        ({"x": numpy.zeros((1, 4), numpy.float64)}, "element type float64"),
        ({"x": [[0.0, 0.0, 0.0, 0.0]]}, "must be a numpy array"),
    ],
)
def test_inputs_that_do_not_fit_give_clear_errors(tmp_path, feeds, words):
    runtime = OnnxRuntime(write_dense_model(tmp_path / "dense.onnx"))
    with pytest.raises(InferenceError) as error:
        runtime.infer(feeds)
    assert words in str(error.value)
    assert runtime.infer({"x": numpy.ones((2, 4), numpy.float32)})["y"].shape == (2, 3)  # still serving


@pytest.mark.parametrize("content", [None, b"", b"not a protobuf at all \x00\xff"])
def test_missing_or_corrupt_model_files(tmp_path, content):
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match="not found|could not load"):
        OnnxRuntime(path)


def test_a_model_that_produces_nan_fails_its_health_check(tmp_path):
    nan_weights = numpy.full((4, 3), numpy.nan, dtype=numpy.float32)
    runtime = OnnxRuntime(write_dense_model(tmp_path / "nan.onnx", weights=nan_weights))
    assert not runtime.health_check(5.0).ok


def test_swap_between_versions_in_a_slot(tmp_path):
    slot = RuntimeSlot()
    old = OnnxRuntime(write_dense_model(tmp_path / "v1.onnx"), version="1.0.0")
    new = OnnxRuntime(write_dense_model(tmp_path / "v2.onnx", bias=BIAS + 1.0), version="2.0.0")
    slot.replace(old)
    x = numpy.ones((1, 4), numpy.float32)
    with slot.lease() as runtime:
        before = runtime.infer({"x": x})["y"]
        slot.replace(new)  # an in-flight request keeps the version it started on
        assert runtime.identity.version == "1.0.0"
    with slot.lease() as runtime:
        after = runtime.infer({"x": x})["y"]
        assert runtime.identity.version == "2.0.0"
    numpy.testing.assert_allclose(after - before, numpy.maximum(x @ WEIGHTS + BIAS + 1, 0) - numpy.maximum(x @ WEIGHTS + BIAS, 0))
