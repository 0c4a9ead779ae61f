"""The chest-CT vision-language model: its bundle is checked part by part at load, its soft tokens reach
llama.cpp before the prompt, and what it writes goes through the findings classifier's sentence check."""
import json
import shutil
from pathlib import Path

import numpy
import pytest

from tango2_ros.core.runtime.base import ModelLoadError
from tango2_ros.core.runtime.default_models import default_llm_path
from tango2_ros.sdm.findings import Finding
from tango2_ros.sdm.labels import LABEL_NAMES
from tango2_ros.sdm.volume import Preprocessing

REPO = Path(__file__).resolve().parents[2]
FINDINGS_ONNX = REPO / "models/releases/ct-findings-phantom/1.1.0-f32/ct-findings.onnx"
ADAPTER = REPO / "models/releases/sdm-report/1.0.0-lora/adapter-lora.gguf"  # any adapter of the base fits


def _projector(path: Path, features: int, hidden: int, soft_tokens: int = 4) -> None:
    """An untrained projector (one linear layer) as ONNX, without torch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = numpy.random.default_rng(0)
    weight = numpy_helper.from_array((rng.standard_normal((features, soft_tokens * hidden)) * 0.01)
                                     .astype(numpy.float32), "weight")
    shape = numpy_helper.from_array(numpy.array([-1, soft_tokens, hidden], numpy.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "weight"], ["flat"]),
         helper.make_node("Reshape", ["flat", "shape"], ["soft_tokens"])], "projector",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("soft_tokens", TensorProto.FLOAT, ["batch", soft_tokens, hidden])],
        [weight, shape])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from tango2_ros.builder.ct_vlm import extract_encoder
    from tango2_ros.sdm.vlm import ADAPTER_FILE, ENCODER_FILE, PROJECTOR_FILE, VlmConventions

    folder = tmp_path_factory.mktemp("vlm")
    extract_encoder(FINDINGS_ONNX, folder / ENCODER_FILE, VlmConventions(Preprocessing(), "smollm2@1.0.0", 4))
    _projector(folder / PROJECTOR_FILE, 128, 576)
    shutil.copyfile(ADAPTER, folder / ADAPTER_FILE)
    return folder


@pytest.fixture(scope="module")
def vlm(bundle):
    from tango2_ros.sdm.vlm import CtReportVlm

    model = CtReportVlm(bundle, default_llm_path(), threads=1)
    yield model
    model.close()


def test_the_encoder_is_the_findings_network_up_to_its_pooled_features(bundle):
    """Cut from the classifier: its features, through the classifier's own last layer, give the classifier's
    probabilities; the conventions travel in its metadata."""
    import onnx
    import onnxruntime
    from onnx import numpy_helper

    from tango2_ros.sdm.vlm import ENCODER_FILE, read_conventions

    volume = numpy.random.default_rng(1).uniform(-1, 1, (2, 1, *Preprocessing().shape)).astype(numpy.float32)
    features = onnxruntime.InferenceSession(str(bundle / ENCODER_FILE)).run(None, {"volume": volume})[0]
    probabilities = onnxruntime.InferenceSession(str(FINDINGS_ONNX)).run(None, {"volume": volume})[0]
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(FINDINGS_ONNX)).graph.initializer}
    head = features @ weights["head.weight"].T + weights["head.bias"]
    assert features.shape == (2, 128)
    numpy.testing.assert_allclose(0.5 * (1 + numpy.tanh(head / 2)), probabilities, atol=1e-5)  # the sigmoid
    conventions = read_conventions(bundle)
    assert conventions.preprocessing == Preprocessing() and conventions.soft_tokens == 4


def test_a_volume_becomes_soft_tokens_read_before_the_prompt_and_the_answer_is_the_schema(vlm):
    volume = numpy.full(Preprocessing().shape, -1.0, numpy.float32)
    soft = vlm.soft_tokens(volume)
    assert soft.shape == (4, 576) and soft.dtype == numpy.float32
    answer = vlm.read(volume, max_tokens=60)
    assert answer.finish_reason in ("stop", "length") and answer.error == ""
    assert answer.raw_text.startswith("{") and set(answer.seconds) == {"encoder", "language_model"}
    assert set(answer.asserted) <= set(LABEL_NAMES)


@pytest.mark.parametrize("shape", [(16, 64, 64), (32, 64), (1, 32, 64, 64)])
def test_a_volume_the_encoder_cannot_take_is_refused_with_the_shape_it_wants(vlm, shape):
    with pytest.raises(ValueError, match=r"shape \(32, 64, 64\)"):
        vlm.read(numpy.zeros(shape, numpy.float32))
    assert vlm.read(numpy.full(Preprocessing().shape, -1.0, numpy.float32), max_tokens=2).error == ""


@pytest.mark.parametrize("damage, words", [
    ("no projector", "has no projector"), ("no adapter", "has no adapter"), ("no encoder", "has no encoder"),
    ("projector for 64 features", "encoder gives 128 features and its projector takes 64"),
    ("soft tokens of 575", "soft tokens of size 575; the language model .* takes 576"),
    ("encoder without metadata", "no tango2.ct_vlm metadata"),
    ("an adapter of another model", "LoRA"),
])
def test_a_damaged_bundle_is_refused_at_load_naming_the_part(bundle, tmp_path, damage, words):
    import onnx

    from tango2_ros.sdm.vlm import ADAPTER_FILE, ENCODER_FILE, PROJECTOR_FILE, CtReportVlm

    broken = tmp_path / "bundle"
    shutil.copytree(bundle, broken)
    if damage.startswith("no "):
        (broken / {"projector": PROJECTOR_FILE, "adapter": ADAPTER_FILE, "encoder": ENCODER_FILE}[
            damage.split()[1]]).unlink()
    elif damage == "projector for 64 features":
        _projector(broken / PROJECTOR_FILE, 64, 576)
    elif damage == "soft tokens of 575":
        _projector(broken / PROJECTOR_FILE, 128, 575)
    elif damage == "encoder without metadata":
        encoder = onnx.load(str(broken / ENCODER_FILE))
        del encoder.metadata_props[:]
        onnx.save(encoder, str(broken / ENCODER_FILE))
    else:
        (broken / ADAPTER_FILE).write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(ModelLoadError, match=words):
        CtReportVlm(broken, default_llm_path(), threads=1)


def test_a_text_only_model_is_not_taken_for_a_bundle(tmp_path):
    from tango2_ros.sdm.vlm import read_conventions

    shutil.copyfile(ADAPTER, tmp_path / "model.gguf")
    with pytest.raises(ModelLoadError, match="text-only language model, which cannot read an image"):
        read_conventions(tmp_path)


def _findings(present: set[str]) -> list[Finding]:
    return [Finding(label, 0.9 if label in present else 0.1, 0.5, label in present) for label in LABEL_NAMES]


def test_the_classifier_checks_every_sentence_the_vlm_writes():
    """What the VLM states against what the classifier rates: a sentence asserting an absent finding is dropped
    and listed, a present finding it left out is added, and the assertions are parsed back to the labels."""
    from tango2_ros.sdm.report import checked_draft, disagreements
    from tango2_ros.sdm.vlm import answer_assertions, disagreements_with

    raw = json.dumps({"sentences": [{"finding": "Emphysema", "sentence": "Emphysema is present."},
                                    {"finding": "Lung nodule", "sentence": "A pulmonary nodule is seen."}],
                      "impression": "1. Emphysema.\n2. Lung nodule."})
    findings = _findings({"Emphysema", "Pleural effusion"})
    assert answer_assertions(raw) == ["Emphysema", "Lung nodule"]
    assert disagreements_with(["Emphysema", "Lung nodule"], findings) == [
        "states lung nodule, which the classifier rates absent",
        "never states pleural effusion, which the classifier rates present"]
    draft = checked_draft(raw, findings, "ct-report-vlm@test")
    assert any("dropped 'A pulmonary nodule is seen.': lung nodule is given as absent" in c for c in draft.corrections)
    assert any("pleural effusion" in c for c in draft.corrections) and draft.contradicted
    assert disagreements(f"{draft.findings_text}\n{draft.impression}", findings) == []
    assert "Emphysema is present." in draft.findings_text
    assert answer_assertions("no JSON, but there is no consolidation and a pleural effusion.") == ["Pleural effusion"]
