"""Building the chest-CT vision-language model (`tango2_ros.sdm.vlm`): encoder, projector and LoRA, from phantoms.

The encoder is the findings network's trunk, cut out of its ONNX file up to the pooled features (so it starts
from what the classifier learned, and stays frozen); the projector (an MLP from the standardised features to
`soft_tokens` vectors of the language model's hidden size) and a LoRA on the base model are trained together on
(volume, report) pairs: the phantom's true findings written by the report writer's teacher
(`tango2_ros.sdm.teaching`), a new wording each time a phantom comes round. The loss is on the answer's tokens
only. Held-out figures come from phantoms of seeds that neither this training nor the findings model's used
(`evaluate`).
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy

from tango2_ros.sdm.findings import Finding
from tango2_ros.sdm.labels import LABEL_NAMES
from tango2_ros.sdm.teaching import teacher_answer
from tango2_ros.sdm.vlm import (
    ADAPTER_FILE, ENCODER_FILE, ENCODER_INPUT, ENCODER_OUTPUT, METADATA_KEY, PROJECTOR_FILE, PROJECTOR_OUTPUT,
    VlmConventions,
)


@dataclass(frozen=True)
class VlmTrainingOptions:
    soft_tokens: int = 8
    projector_hidden: int = 512
    steps: int = 400
    align_steps: int = 100  # of those, the first ones train the projector alone (the LoRA frozen)
    batch_size: int = 4
    learning_rate: float = 2e-3
    rank: int = 8
    alpha: int = 16
    seed: int = 0
    precision: str = "auto"  # as for the LoRA fine-tune: bfloat16 autocast where the CPU or GPU has it natively


def extract_encoder(findings_onnx: Path, out: Path, conventions: VlmConventions) -> Path:
    """The findings network up to its pooled features (the input of its last linear layer), output `features`,
    with the VLM's conventions in its metadata."""
    import onnx

    model = onnx.load(str(findings_onnx))
    head = next((node for node in reversed(model.graph.node) if node.op_type in ("Gemm", "MatMul")), None)
    if head is None:
        raise ValueError(f"{findings_onnx} has no final linear layer to cut the encoder at")
    pooled = head.input[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.utils.extract_model(str(findings_onnx), str(out), [ENCODER_INPUT], [pooled])
    encoder = onnx.load(str(out))
    for node in encoder.graph.node:
        node.output[:] = [ENCODER_OUTPUT if name == pooled else name for name in node.output]
    encoder.graph.output[0].name = ENCODER_OUTPUT
    del encoder.metadata_props[:]
    entry = encoder.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, conventions.as_json()
    onnx.checker.check_model(encoder)
    onnx.save(encoder, str(out))
    return out


def encode(encoder_path: Path, inputs: numpy.ndarray, threads: int = 2) -> numpy.ndarray:
    """Encoder features (N, F) of preprocessed volumes (N, 1, D, H, W)."""
    from tango2_ros.core.runtime.onnx import OnnxRuntime

    encoder = OnnxRuntime(encoder_path, threads=threads)
    return numpy.concatenate([encoder.infer({ENCODER_INPUT: inputs[i:i + 32].astype(numpy.float32)})[ENCODER_OUTPUT]
                              for i in range(0, len(inputs), 32)])


def truth_findings(targets: numpy.ndarray) -> list[Finding]:
    """A phantom's true labels as findings (all eighteen assessed)."""
    return [Finding(label, float(value), 0.5, bool(value > 0.5)) for label, value in zip(LABEL_NAMES, targets)]


def classifier_head(findings_onnx: Path) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The findings network's last linear layer (labels x features, labels): what its features mean."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(findings_onnx))
    head = next(node for node in reversed(model.graph.node) if node.op_type in ("Gemm", "MatMul"))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return weights[head.input[1]], weights[head.input[2]]


def projector(features: int, options: VlmTrainingOptions, hidden_size: int, mean: numpy.ndarray,
              std: numpy.ndarray, head: tuple[numpy.ndarray, numpy.ndarray] | None = None):
    """Standardise the features (the training set's mean and spread, kept in the module), two layers to
    `soft_tokens` x `hidden_size`. With the classifier's `head`, the first units of the hidden layer start as its
    label logits: the projector starts from what the findings network reads out of the features, and the language
    model learns to read those units within a few hundred steps instead of thousands."""
    import torch
    from torch import nn

    class Projector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
            self.layers = nn.Sequential(nn.Linear(features, options.projector_hidden), nn.GELU(),
                                        nn.Linear(options.projector_hidden, options.soft_tokens * hidden_size))
            if head is not None:  # W f + b on the raw features = (W * std) z + (W mean + b) on the standardised
                weight, bias = head
                with torch.no_grad():
                    self.layers[0].weight[:len(weight)] = torch.as_tensor(weight * std, dtype=torch.float32)
                    self.layers[0].bias[:len(weight)] = torch.as_tensor(weight @ mean + bias, dtype=torch.float32)
            # soft tokens on the scale of the token embeddings the model knows (their spread is about 0.14)
            nn.init.normal_(self.layers[2].weight, std=0.01)
            nn.init.zeros_(self.layers[2].bias)

        def forward(self, x):
            return self.layers((x - self.mean) / self.std).reshape(x.shape[0], options.soft_tokens, hidden_size)

    return Projector()


def _encoded_prompt(tokenizer, prompt: str) -> list[int]:
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def train(base_gguf: Path, features: numpy.ndarray, targets: numpy.ndarray, options: VlmTrainingOptions,
          conventions: VlmConventions, progress: Callable[[int, int, float], None] | None = None,
          head: tuple[numpy.ndarray, numpy.ndarray] | None = None, device: str = "cpu"):
    """(projector, peft model, losses): AdamW over projector and LoRA, the loss on the answer's tokens; each step
    draws `batch_size` phantoms and a fresh teacher wording for each. The first `align_steps` train the projector
    alone, as LLaVA aligns its projector first: trained together from the start, the LoRA learns the answers'
    most common findings and the model never learns to look at the soft tokens."""
    import torch

    from tango2_ros.builder.finetune import TrainingSteps, _bfloat16, _load
    from tango2_ros.builder.recipe import FinetuneConfig

    config = FinetuneConfig(rank=options.rank, alpha=options.alpha, steps=options.steps,
                            learning_rate=options.learning_rate, batch_size=options.batch_size, seed=options.seed,
                            target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                            "down_proj"))
    tokenizer, model = _load(base_gguf, config, device)
    hidden = model.get_base_model().config.hidden_size
    project = projector(features.shape[1], options, hidden, features.mean(0), features.std(0) + 1e-6, head).to(device)
    embed = model.get_base_model().get_input_embeddings()
    prompt_ids = _encoded_prompt(tokenizer, conventions.prompt)
    end = tokenizer("<|im_end|>\n", add_special_tokens=False)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    lora = [p for p in model.parameters() if p.requires_grad]
    steps = TrainingSteps(lora + list(project.parameters()), options.learning_rate, options.steps, progress)
    rng, order = random.Random(options.seed), []
    autocast = _bfloat16(options.precision, device)
    model.train()
    for step in range(options.steps):
        for parameter in lora:
            parameter.requires_grad_(step >= options.align_steps)
        if len(order) < options.batch_size:
            order += rng.sample(range(len(features)), len(features))
        batch, order = order[:options.batch_size], order[options.batch_size:]
        answers = [tokenizer(json.dumps(teacher_answer(truth_findings(targets[i]), rng)), add_special_tokens=False)
                   ["input_ids"] + end for i in batch]
        width = len(prompt_ids) + max(len(a) for a in answers)
        ids = torch.tensor([prompt_ids + a + [pad] * (width - len(prompt_ids) - len(a)) for a in answers])
        labels = torch.tensor([[-100] * (options.soft_tokens + len(prompt_ids)) + a + [-100] * (
            width - len(prompt_ids) - len(a)) for a in answers])
        mask = torch.tensor([[1] * (options.soft_tokens + len(prompt_ids) + len(a)) + [0] * (
            width - len(prompt_ids) - len(a)) for a in answers])
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
            inputs = torch.cat([project(torch.from_numpy(features[batch]).to(device)), embed(ids.to(device))], dim=1)
            loss = model(inputs_embeds=inputs, attention_mask=mask.to(device), labels=labels.to(device)).loss
        steps.take(loss)
    model.eval()
    project.eval()
    return project.to("cpu"), model.to("cpu"), steps.losses


def export_bundle(out_dir: Path, encoder: Path, project, model, options: VlmTrainingOptions) -> Path:
    """The bundle folder: the encoder (copied), the projector as ONNX, the LoRA as a GGUF adapter."""
    import shutil
    import warnings

    import torch

    from tango2_ros.builder.gguf_export import export_lora

    out_dir.mkdir(parents=True, exist_ok=True)
    if encoder.resolve() != (out_dir / ENCODER_FILE).resolve():
        shutil.copyfile(encoder, out_dir / ENCODER_FILE)
    sample = torch.zeros((1, int(project.mean.shape[0])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(project, (sample,), str(out_dir / PROJECTOR_FILE), input_names=[ENCODER_OUTPUT],
                          output_names=[PROJECTOR_OUTPUT], dynamic_axes={ENCODER_OUTPUT: {0: "batch"},
                                                                         PROJECTOR_OUTPUT: {0: "batch"}},
                          opset_version=17, dynamo=False)
    export_lora(model, options.alpha, out_dir / ADAPTER_FILE)
    return out_dir


@dataclass
class VlmEvaluation:
    """Held-out figures: the findings the text asserts against the truth and against the classifier."""
    studies: int
    micro: dict[str, float]
    per_label: dict[str, dict[str, float]]
    disagreement_rate: float  # share of studies whose raw text differs from the classifier (before the check)
    agreement_after_check: float  # share of studies whose checked text agrees with the classifier's findings
    classifier_micro_f1: float  # the classifier's own, over the labels it assesses: the baseline
    hallucinated_per_report: float  # asserted labels the truth does not hold, per study
    unusable: int  # answers that were not the JSON asked for
    seconds: dict[str, float]  # mean per study and stage
    raw_texts: list[str]  # what the model wrote for each study

    @property
    def classifier_agreement(self) -> float:
        """Share of studies whose asserted labels are the classifier's present ones."""
        return 1.0 - self.disagreement_rate

    def as_dict(self) -> dict:
        figures = {key: value for key, value in self.__dict__.items() if key != "raw_texts"}
        return {**figures, "classifier_agreement": self.classifier_agreement}


def evaluate(vlm, classifier, inputs: numpy.ndarray, targets: numpy.ndarray,
             progress: Callable[[int, int], None] | None = None) -> VlmEvaluation:
    """Run the VLM (llama.cpp, as served) and the classifier on preprocessed volumes with known truth; the VLM's
    raw text is judged before the sentence check, and its checked draft after."""
    from tango2_ros.sdm.report import checked_draft, disagreements
    from tango2_ros.sdm.training import f1_counts
    from tango2_ros.sdm.vlm import disagreements_with

    counts = {label: [0, 0, 0] for label in LABEL_NAMES}  # tp, fp, fn
    disagree = agree_after = hallucinated = unusable = 0
    seconds = {"encoder": 0.0, "language_model": 0.0, "classifier": 0.0}
    raw_texts, rated = [], []
    for index, (volume, target) in enumerate(zip(inputs, targets)):
        model_input = volume[0].astype(numpy.float32)
        started = time.monotonic()
        findings = classifier.predict(model_input)
        seconds["classifier"] += time.monotonic() - started
        rated.append([f.present for f in findings])
        answer = vlm.read(model_input)
        raw_texts.append(answer.raw_text)
        for stage, value in answer.seconds.items():
            seconds[stage] += value
        draft = checked_draft(answer.raw_text, findings, vlm.identity.label)
        unusable += draft.unusable
        agree_after += not disagreements(f"{draft.findings_text}\n{draft.impression}", findings)
        asserted = set(answer.asserted)
        truth = {label for label, value in zip(LABEL_NAMES, target) if value > 0.5}
        for label in LABEL_NAMES:
            counts[label][0] += label in asserted and label in truth
            counts[label][1] += label in asserted and label not in truth
            counts[label][2] += label not in asserted and label in truth
        hallucinated += len(asserted - truth)
        disagree += bool(disagreements_with(sorted(asserted), findings))
        if progress:
            progress(index + 1, len(inputs))
    n = max(1, len(inputs))
    tp, fp, fn = (sum(c[i] for c in counts.values()) for i in range(3))
    assessed = [LABEL_NAMES.index(label) for label in sorted(classifier.trained, key=LABEL_NAMES.index)]
    classifier_f1 = float(f1_counts(numpy.array(rated, dtype=bool)[:, assessed],
                                    numpy.asarray(targets)[:, assessed] > 0.5)[0])
    return VlmEvaluation(
        studies=len(inputs), micro=precision_recall_f1(tp, fp, fn),
        per_label={label: precision_recall_f1(*c) for label, c in counts.items() if sum(c)},
        disagreement_rate=disagree / n, agreement_after_check=agree_after / n, classifier_micro_f1=classifier_f1,
        hallucinated_per_report=hallucinated / n, unusable=unusable,
        seconds={stage: value / n for stage, value in seconds.items()}, raw_texts=raw_texts)


def precision_recall_f1(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}


SETS_FILE = "vlm-sets.npz"


def train_candidates(recipe, work_dir: Path, say: Callable[[str], None], store, cache,
                     progress: Callable[[int, int, float], None] | None = None, device: str = "cpu"):
    """The builder's road (base `new:ct-report-vlm`): pull the findings model and the language model, render the
    phantoms, train, export the bundle. Returns (bundle folder, losses, seconds, held-out sets file, language model
    reference); the held-out phantoms are the findings model's own evaluation seeds, which neither trained on."""
    from tango2_ros.sdm.training import phantom_set
    from tango2_ros.sdm.volume import Preprocessing

    training, phantoms = dict(recipe.extra["training"]), recipe.extra["phantoms"]
    pulled = {key: cache.pull(store, *training.pop(key).partition("@")[::2]) for key in ("encoder", "language_model")}
    options = VlmTrainingOptions(**{"seed": phantoms["seed"], **training})
    conventions = VlmConventions(Preprocessing(), pulled["language_model"].manifest.reference, options.soft_tokens)
    encoder = extract_encoder(pulled["encoder"].primary_path, work_dir / "encoder" / ENCODER_FILE, conventions)
    started = time.monotonic()
    train_x, train_y = phantom_set(phantoms["seed"], phantoms["train"])
    eval_x, eval_y = phantom_set(phantoms["seed"] + 2_000_000, phantoms["eval"])
    say(f"      {phantoms['train']} training and {phantoms['eval']} held-out phantoms in "
        f"{time.monotonic() - started:.0f} s; encoder from {pulled['encoder'].manifest.reference}")
    sets = work_dir / SETS_FILE
    numpy.savez_compressed(sets, inputs=eval_x, targets=eval_y,
                           classifier=numpy.array(str(pulled["encoder"].primary_path)))
    bundle, stamp = work_dir / "f32", work_dir / "training.json"
    key = {"extra": recipe.extra, "encoder": pulled["encoder"].manifest.reference,
           "language_model": pulled["language_model"].manifest.reference}
    done = json.loads(stamp.read_text()) if stamp.is_file() else {}
    if done.get("key") == key and all((bundle / name).is_file() for name in (ENCODER_FILE, PROJECTOR_FILE,
                                                                                ADAPTER_FILE)):
        say(f"      reusing the training of a previous run ({stamp})")  # a build stopped later resumes here
        return bundle, done["losses"], done["seconds"], sets, pulled["language_model"]
    stamp.unlink(missing_ok=True)
    started = time.monotonic()
    project, model, losses = train(pulled["language_model"].primary_path, encode(encoder, train_x), train_y, options,
                                   conventions, progress, classifier_head(pulled["encoder"].primary_path), device)
    seconds = time.monotonic() - started
    export_bundle(bundle, encoder, project, model, options)
    stamp.write_text(json.dumps({"key": key, "losses": losses, "seconds": seconds}))  # written last
    return bundle, losses, seconds, sets, pulled["language_model"]


def run_vlm(bundle: Path, base: Path, sets_file: Path, threads: int):
    """The builder's evaluation of a bundle: micro-F1 of the asserted findings on the held-out phantoms, with the
    agreement figures as groups; speed in studies per second."""
    from tango2_ros.builder.evaluation import Evaluation, peak_resident_mb
    from tango2_ros.sdm.findings import FindingsModel
    from tango2_ros.sdm.vlm import CtReportVlm

    sets = numpy.load(sets_file)
    vlm = CtReportVlm(bundle, base, threads=threads)
    try:
        vlm.warm_up()
        figures = evaluate(vlm, FindingsModel(str(sets["classifier"]), threads=threads), sets["inputs"],
                           sets["targets"])
    finally:
        vlm.close()
    per_study = sum(figures.seconds.values())
    return Evaluation(figures.micro["f1"], 1 / per_study if per_study else 0.0, per_study, peak_resident_mb(),
                      figures.raw_texts, {"disagreement_rate": figures.disagreement_rate,
                                "classifier_agreement": figures.classifier_agreement,
                                "hallucinated_per_report": figures.hallucinated_per_report})

