"""Build recipes: what a domain engineer writes to get device-sized, evaluated, signed model versions.

    name: colreg-assistant            # artifact name in the registry
    version: 1.1.0                    # candidates are published as 1.1.0-q8-0, 1.1.0-q4-k-m, 1.1.0-lora, ...
    base: smollm2-135m-instruct@1.0.0 # an artifact in the store, a GGUF file, or a transformers encoder folder
                                      # (a path, or package:<python package>/<folder> for one shipped in a package)
                                      # (exported to ONNX: quantizations f32/int8, metric retrieval, eval pairs
                                      # {"query": ..., "positive": ...})
    data: {train: train.jsonl, eval: eval.jsonl}     # relative to the recipe file
    finetune: {rank: 8, alpha: 16, steps: 20, learning_rate: 0.001}   # optional LoRA fine-tune
                                      # (also batch_size, target_modules, seed, precision: float32|bfloat16|auto)
    quantizations: [f16, q8_0, q4_k_m]
    publish_adapter: true             # also publish the LoRA adapter alone (a few MB on top of the base)
    evaluation: {metric: contains, max_tokens: 48}
    gates: {min_metric: 0.5}
    device_profiles: [edge-cpu-2c-4gb, jetson-orin-8gb]

Instead of data files a recipe may name a domain's **teacher**, which generates the training and held-out sets
from the domain's deterministic reference (split by scenario, never by sample) and judges answers with the
domain's own check (metric `fact_check`: the share of answers the check leaves unchanged):

    teacher: {name: sds-describer, train: 300, eval: 40, seed: 0, languages: [en, ko]}

A third kind of base, `new:ct-findings-3d`, is a network trained from scratch (tango2_ros.sdm.training) on
synthetic chest CTs: `data` then gives phantom counts {train: 900, tune: 150, eval: 200, seed: 0}, `training`
its options {epochs, batch_size, learning_rate}; it is exported to ONNX (f32, int8) and scored by micro-F1.
`new:ct-report-vlm` is the chest-CT vision-language model (tango2_ros.builder.ct_vlm): the findings network's
trunk as encoder, a projector and a LoRA on a GGUF language model trained on phantoms and teacher reports;
`training` names {encoder: findings artifact, language_model: GGUF artifact} and {steps, align_steps,
batch_size, learning_rate, soft_tokens, rank}; it is published as one bundle and scored by the micro-F1 of the
findings its text asserts (`vlm_micro_f1`).

Device profiles come from config/device_profiles.yaml (budgets: file size, memory, tokens/s); a recipe may add
its own under `device_profile_budgets`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tango2_ros import paths
from tango2_ros.core.artifacts.manifest import NAME_PATTERN, SEMVER_PATTERN
from tango2_ros.core.runtime.default_models import package_file
from tango2_ros.errors import UserError

# Two kinds of base: a GGUF language model (an artifact or a file) is fine-tuned and quantised with llama.cpp;
# a transformers encoder folder is exported to ONNX and quantised with onnxruntime.
QUANTIZATIONS = {"gguf": ("f16", "q8_0", "q6_k", "q5_k_m", "q5_0", "q4_k_m", "q4_0", "q4_1"), "onnx": ("f32", "int8")}
METRICS = {"gguf": ("exact_match", "contains", "json_valid", "fact_check"), "onnx": ("retrieval",),
           "ct-findings": ("micro_f1",), "ct-report-vlm": ("vlm_micro_f1",)}
DEFAULTS = {"gguf": {"task": "llm", "quantizations": ["q8_0"], "metric": "contains"},
            "onnx": {"task": "embedding", "quantizations": ["f32", "int8"], "metric": "retrieval"},
            "ct-findings": {"task": "classifier", "quantizations": ["f32", "int8"], "metric": "micro_f1"},
            "ct-report-vlm": {"task": "vlm", "quantizations": ["f32"], "metric": "vlm_micro_f1"}}
TRAINED_BASES = {"new:ct-findings-3d": "ct-findings", "new:ct-report-vlm": "ct-report-vlm"}
PHANTOM_KEYS = {"train": (16, 100000), "tune": (8, 100000), "eval": (8, 100000), "seed": (0, 2 ** 31)}
TRAINING_KEYS = {"ct-findings": {"epochs": (1, 1000), "batch_size": (1, 256), "learning_rate": (1e-6, 1.0)},
                 "ct-report-vlm": {"steps": (1, 100000), "align_steps": (0, 100000), "batch_size": (1, 256),
                                   "learning_rate": (1e-6, 1.0), "soft_tokens": (1, 256), "rank": (1, 256)}}
TRAINING_MODELS = {"ct-report-vlm": ("encoder", "language_model")}  # artifacts the training starts from
TOP_KEYS = {"name", "version", "description", "base", "data", "teacher", "finetune", "training", "quantizations",
            "publish_adapter", "evaluation", "gates", "device_profiles", "device_profile_budgets"}
TEACHER_KEYS = {"name": None, "train": (1, 100000), "eval": (1, 100000), "seed": (0, 2 ** 31), "languages": None}
BUDGET_KEYS = {"max_file_mb", "max_memory_mb", "min_tokens_per_s", "description"}


@dataclass(frozen=True)
class FinetuneConfig:
    rank: int = 8
    alpha: int = 16
    steps: int = 20
    learning_rate: float = 1e-3
    batch_size: int = 4
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    seed: int = 0
    # float32, or bfloat16 (autocast; the LoRA weights stay float32), or auto: bfloat16 where the hardware has it
    # (CUDA, a CPU with AVX-512 BF16 or AMX; measured 1.45x faster per step on a 2-core Zen 4), else float32
    precision: str = "float32"
    # data-parallel processes (torch.distributed: gloo on CPU, NCCL on CUDA), each taking its share of every batch
    workers: int = 1
    # a GGUF LoRA adapter the training starts from (set by the builder when the base is an adapter release)
    start_adapter: str = ""


PRECISIONS = ("float32", "bfloat16", "auto")


@dataclass(frozen=True)
class TeacherConfig:
    """Generated teaching data: `train` and `eval` scenarios (studies, days) from disjoint seeds."""

    name: str
    train: int
    eval: int
    seed: int = 0
    languages: tuple[str, ...] = ("en",)


@dataclass(frozen=True)
class DeviceBudget:
    name: str
    max_file_mb: float | None = None
    max_memory_mb: float | None = None
    min_tokens_per_s: float | None = None
    description: str = ""

    def violations(self, file_mb: float, memory_mb: float, tokens_per_s: float) -> list[str]:
        """The budget lines a candidate breaks (empty = it fits)."""
        broken = []
        if self.max_file_mb is not None and file_mb > self.max_file_mb:
            broken.append(f"file {file_mb:.0f} MB > {self.max_file_mb:g}")
        if self.max_memory_mb is not None and memory_mb > self.max_memory_mb:
            broken.append(f"memory {memory_mb:.0f} MB > {self.max_memory_mb:g}")
        if self.min_tokens_per_s is not None and tokens_per_s < self.min_tokens_per_s:
            broken.append(f"{tokens_per_s:.0f} tok/s < {self.min_tokens_per_s:g}")
        return broken


@dataclass(frozen=True)
class Recipe:
    source: Path
    name: str
    version: str
    base: str  # name@version of an artifact, a GGUF path, or a transformers encoder folder
    format: str  # of the candidates: gguf or onnx
    task: str
    train: Path | None
    eval: Path | None  # None for a network trained on phantoms (its sets are in `extra`) or a teacher's (generated)
    finetune: FinetuneConfig | None
    quantizations: tuple[str, ...]
    publish_adapter: bool
    metric: str
    max_tokens: int
    min_metric: float
    profiles: tuple[DeviceBudget, ...]
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    teacher: TeacherConfig | None = None
    beat_base: bool = False  # gate: a candidate must score above the base model (the model in service)

    @property
    def base_is_artifact(self) -> bool:
        return "@" in self.base and not Path(self.base).exists()

    @property
    def trained_from_scratch(self) -> bool:
        return self.base in TRAINED_BASES


def load_recipe(path: Path) -> Recipe:
    if not path.is_file():
        raise UserError(f"recipe {path} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: malformed YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: a recipe is a mapping of keys (name, version, base, data, ...)")

    def fail(message: str) -> UserError:
        return UserError(f"{path}: {message}")

    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(TOP_KEYS))})")
    for key in ("name", "version", "base"):
        if key not in data:
            raise fail(f"'{key}' is required")
    if ("data" in data) == ("teacher" in data):
        raise fail("give either 'data' (train/eval files) or a 'teacher' that generates them")
    name, version = str(data["name"]), str(data["version"])
    if not NAME_PATTERN.match(name):
        raise fail(f"name {name!r}: lower-case letters, digits, '.', '_' or '-'")
    match = SEMVER_PATTERN.match(version)
    if not match or match.group(4):
        raise fail(f"version {version!r} must be a release MAJOR.MINOR.PATCH (candidates get suffixes)")
    data_section = _mapping(data, "data", fail)
    teacher = _teacher(data.get("teacher"), fail) if "teacher" in data else None
    if teacher is None and "eval" not in data_section:
        raise fail("data.eval (an evaluation JSONL file) is required")
    folder = path.parent
    base = str(data["base"])
    if base.startswith("new:"):
        return _trained_recipe(path, data, data_section, fail)
    if "training" in data:
        raise fail("'training' is for networks trained from scratch (base new:...)")
    base = _resolved_base(base, folder, fail)
    fmt = "onnx" if Path(base).is_dir() else "gguf"
    defaults = DEFAULTS[fmt]
    train = folder / data_section["train"] if data_section.get("train") else None
    finetune = _finetune(data.get("finetune"), fail)
    if teacher is not None and fmt != "gguf":
        raise fail(f"teacher {teacher.name} teaches a language model's answers; the base {data['base']} is an encoder, "
                   "not a GGUF language model")
    if finetune and fmt != "gguf":
        raise fail("finetune is for GGUF language models; an encoder folder is exported and quantised as it is")
    if finetune and train is None and teacher is None:
        raise fail("finetune needs data.train")
    quantizations, metric = _candidates_and_metric(data, fmt, fail)
    if (metric == "fact_check") != (teacher is not None):
        raise fail("metric fact_check is the teacher's check: it needs a teacher, and a teacher needs it")
    evaluation, gates = _mapping(data, "evaluation", fail), _mapping(data, "gates", fail)
    return Recipe(
        source=path, name=name, version=version, base=base, format=fmt, task=defaults["task"], train=train,
        eval=folder / data_section["eval"] if "eval" in data_section else None, finetune=finetune,
        quantizations=quantizations, teacher=teacher, beat_base=bool(gates.get("beat_base", False)),
        publish_adapter=bool(data.get("publish_adapter", finetune is not None)), metric=metric,
        max_tokens=_number(evaluation.get("max_tokens", 48), "evaluation.max_tokens", fail, int, 1, 4096),
        min_metric=_number(gates.get("min_metric", 0.0), "gates.min_metric", fail, float, 0.0, 1.0),
        profiles=_profiles(data, fail), description=str(data.get("description", "")),
    )


def _teacher(value, fail) -> TeacherConfig:
    from tango2_ros.builder.teachers import TEACHERS

    if not isinstance(value, dict):
        raise fail("'teacher' must be a mapping (name, train, eval, seed, languages)")
    unknown = sorted(set(value) - set(TEACHER_KEYS))
    if unknown:
        raise fail(f"unknown teacher key(s) {', '.join(unknown)} (known: {', '.join(TEACHER_KEYS)})")
    name = str(value.get("name", ""))
    if name not in TEACHERS:
        raise fail(f"unknown teacher {name!r} (known: {', '.join(TEACHERS)})")
    counts = {key: _number(value.get(key, 0 if key == "seed" else None), f"teacher.{key}", fail, int, *limits)
              for key, limits in TEACHER_KEYS.items() if limits}
    languages = value.get("languages", ["en"])
    spoken = TEACHERS[name].languages
    if not isinstance(languages, list) or not languages or any(lang not in spoken for lang in languages):
        raise fail(f"teacher.languages must list some of {', '.join(spoken)}, not {languages!r}")
    return TeacherConfig(name, counts["train"], counts["eval"], counts["seed"], tuple(languages))


def _resolved_base(base: str, folder: Path, fail) -> str:
    """A registry reference as it is; `package:NAME/PATH` inside an installed package; a path from the recipe's folder."""
    if base.startswith("package:"):  # a model shipped inside an installed Python package
        package, _, inside = base[len("package:"):].partition("/")
        try:
            return str(package_file(package, inside))
        except FileNotFoundError as exc:
            raise fail(f"base {base}: {exc}") from exc
    return base if "@" in base else str((folder / base).resolve())


def _candidates_and_metric(data: dict, fmt: str, fail) -> tuple[tuple[str, ...], str]:
    defaults = DEFAULTS[fmt]
    quantizations = tuple(str(q) for q in data.get("quantizations", defaults["quantizations"]))
    for quantization in quantizations:
        if quantization not in QUANTIZATIONS[fmt]:
            raise fail(f"unknown quantization {quantization!r} for a {fmt} model (known: {', '.join(QUANTIZATIONS[fmt])})")
    metric = str(_mapping(data, "evaluation", fail).get("metric", defaults["metric"]))
    if metric not in METRICS[fmt]:
        raise fail(f"unknown metric {metric!r} for a {fmt} model (known: {', '.join(METRICS[fmt])})")
    return quantizations, metric


def _trained_recipe(path: Path, data: dict, data_section: dict, fail) -> Recipe:
    """A network trained from scratch on generated data: counts instead of files, training options."""
    base = str(data["base"])
    if base not in TRAINED_BASES:
        raise fail(f"unknown base {base!r} (networks trained here: {', '.join(TRAINED_BASES)})")
    kind = TRAINED_BASES[base]
    if data.get("finetune"):
        raise fail("finetune is for GGUF language models; this network is trained from scratch (training:)")
    phantoms = {key: _number(data_section.get(key, low if key != "seed" else 0), f"data.{key}", fail, int, low, high)
                for key, (low, high) in PHANTOM_KEYS.items()}
    unknown = sorted(set(data_section) - set(PHANTOM_KEYS))
    training_section = _mapping(data, "training", fail)
    models = TRAINING_MODELS.get(kind, ())
    unknown += sorted(f"training.{k}" for k in set(training_section) - set(TRAINING_KEYS[kind]) - set(models))
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}")
    training = {key: _number(training_section[key], f"training.{key}", fail, float if key == "learning_rate" else int,
                             low, high) for key, (low, high) in TRAINING_KEYS[kind].items() if key in training_section}
    for key in models:
        reference = str(training_section.get(key, ""))
        if "@" not in reference:
            raise fail(f"training.{key} must name an artifact NAME@VERSION|TAG, not {reference!r}")
        training[key] = reference
    defaults = DEFAULTS[kind]
    quantizations = tuple(str(q) for q in data.get("quantizations", defaults["quantizations"]))
    for quantization in quantizations:
        if quantization not in QUANTIZATIONS["onnx"]:
            raise fail(f"unknown quantization {quantization!r} (known: {', '.join(QUANTIZATIONS['onnx'])})")
    metric = str(_mapping(data, "evaluation", fail).get("metric", defaults["metric"]))
    if metric not in METRICS[kind]:
        raise fail(f"unknown metric {metric!r} for {base} (known: {', '.join(METRICS[kind])})")
    gates = _mapping(data, "gates", fail)
    return Recipe(
        source=path, name=str(data["name"]), version=str(data["version"]), base=base, format="onnx",
        task=defaults["task"], train=None, eval=None, finetune=None, quantizations=quantizations,
        publish_adapter=False, metric=metric, max_tokens=1,
        min_metric=_number(gates.get("min_metric", 0.0), "gates.min_metric", fail, float, 0.0, 1.0),
        profiles=_profiles(data, fail), description=str(data.get("description", "")),
        extra={"phantoms": phantoms, "training": training},
    )


def _profiles(data: dict, fail) -> tuple[DeviceBudget, ...]:
    budgets = {**_packaged_budgets(), **_budgets(data.get("device_profile_budgets", {}), fail)}
    profiles = []
    for profile in data.get("device_profiles", []):
        if profile not in budgets:
            raise fail(f"unknown device profile {profile!r} (known: {', '.join(sorted(budgets))})")
        profiles.append(budgets[profile])
    return tuple(profiles)


def _mapping(data: dict, key: str, fail) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise fail(f"'{key}' must be a mapping")
    return value


def _number(value, name: str, fail, kind, low: float, high: float):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise fail(f"{name} must be a number in [{low:g}, {high:g}], not {value!r}")
    return kind(value)


def _finetune(value, fail) -> FinetuneConfig | None:
    if value is None or value is False:
        return None
    if not isinstance(value, dict):
        raise fail("'finetune' must be a mapping (rank, alpha, steps, learning_rate, ...)")
    known = set(FinetuneConfig.__dataclass_fields__)
    unknown = sorted(set(value) - known)
    if unknown:
        raise fail(f"unknown finetune key(s) {', '.join(unknown)}")
    config = FinetuneConfig(**{k: tuple(v) if k == "target_modules" else v for k, v in value.items()})
    _number(config.rank, "finetune.rank", fail, int, 1, 256)
    _number(config.steps, "finetune.steps", fail, int, 1, 100000)
    _number(config.learning_rate, "finetune.learning_rate", fail, float, 1e-7, 1.0)
    _number(config.batch_size, "finetune.batch_size", fail, int, 1, 1024)
    _number(config.workers, "finetune.workers", fail, int, 1, 64)
    if config.workers > config.batch_size:
        raise fail(f"finetune.workers {config.workers} > batch_size {config.batch_size}: each takes part of a batch")
    if config.precision not in PRECISIONS:
        raise fail(f"finetune.precision {config.precision!r}: use one of {', '.join(PRECISIONS)}")
    return config


def _budgets(data, fail) -> dict[str, DeviceBudget]:
    if not isinstance(data, dict):
        raise fail("device profile budgets must be a mapping of profile name to budgets")
    budgets = {}
    for name, values in data.items():
        if not isinstance(values, dict) or set(values) - BUDGET_KEYS:
            raise fail(f"device profile {name}: budgets are {', '.join(sorted(BUDGET_KEYS))}")
        budgets[name] = DeviceBudget(name=name, **values)
    return budgets


def _packaged_budgets() -> dict[str, DeviceBudget]:
    path = paths.share_dir() / "config" / "device_profiles.yaml"
    return _budgets(yaml.safe_load(path.read_text()) or {}, lambda m: UserError(f"{path}: {m}"))
