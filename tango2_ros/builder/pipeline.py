"""The build pipeline: base model -> optional LoRA fine-tune -> GGUF export -> quantisation -> evaluation ->
gates and device budgets -> signed artifacts in the registry, the best candidate per device profile tagged.
An encoder (a transformers folder) takes the ONNX road instead: export -> onnxruntime int8 -> evaluation -> ...

A base named by a LoRA adapter release (the model in service, `lam-tomato@2.0.0-lora`) is continued: the fine-tune
starts from that adapter's matrices (with its rank and alpha) on the model it applies to, so the new adapter still
applies to the base model PyPI provides and the model in service is the baseline it must beat.

Candidates are published as pre-release versions of the recipe's version (`1.1.0-q8-0`, `1.1.0-lora`), so
they never become a slot's "latest release" by accident; a slot deploys one by version or by its
`best-<profile>` tag. The untouched base model is evaluated too, as the baseline of the report.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from tango2_ros.builder.dataset import fingerprint, load_examples, load_pairs
from tango2_ros.builder.evaluate import Evaluation, evaluate_in_subprocess
from tango2_ros.builder.onnx_export import bundle_files
from tango2_ros.builder.quantize import quantize
from tango2_ros.builder.recipe import Recipe
from tango2_ros.core.artifacts.cache import ArtifactCache
from tango2_ros.core.artifacts.publishing import publish_bundle, sign_bundle, write_bundle
from tango2_ros.core.artifacts.signing import TrustStore
from tango2_ros.core.artifacts.stores import Store
from tango2_ros.errors import UserError

MB = 1e6


@dataclass(frozen=True)
class BaseModel:
    """What a build starts from."""

    reference: str  # its artifact reference where it comes from the registry (the model an adapter applies to)
    path: Path | None  # the model file; None for a network trained here from scratch
    adapter: Path | None = None  # the LoRA in service that the fine-tune continues (the base named an adapter)
    adapter_reference: str = ""

    @property
    def derived_from(self) -> str:
        """What a candidate is derived from, as its manifest's `base_model` says."""
        return self.adapter_reference or self.reference


@dataclass
class Candidate:
    label: str  # base, f16, q8_0, ..., lora
    model: Path  # the GGUF that is loaded
    adapter: Path | None = None  # LoRA applied on top of `model`
    base: Path | None = None  # the language model a VLM bundle (`model`, a folder) runs on
    quantization: str = ""
    evaluation: Evaluation | None = None
    failures: list[str] = field(default_factory=list)  # gates it did not pass
    profiles: list[str] = field(default_factory=list)  # device profiles whose budgets it fits
    version: str = ""  # set when published

    @property
    def kind(self) -> str:
        return "adapter" if self.adapter else "model"

    @property
    def files(self) -> list[Path]:
        """What the artifact carries: the adapter alone, a GGUF file, an ONNX model with its tokenizer, or a VLM
        bundle's files."""
        if self.adapter:
            return [self.adapter]
        if self.model.is_dir():
            return sorted(path for path in self.model.iterdir() if path.is_file())
        return bundle_files(self.model) if self.model.suffix == ".onnx" else [self.model]

    @property
    def ship_bytes(self) -> int:
        """What travels to a device that already has the base: the adapter alone, or the whole model."""
        return sum(f.stat().st_size for f in self.files)

    @property
    def device_bytes(self) -> int:
        """What must fit on the device."""
        under = self.model if self.adapter else self.base
        return self.ship_bytes + (under.stat().st_size if under else 0)


@dataclass
class BuildResult:
    """What a build made; `evaluated` lists the baseline and the candidates, the baseline once when it is one."""

    recipe: Recipe
    candidates: list[Candidate]
    baseline: Candidate
    tags: dict[str, str]  # tag -> version
    losses: list[float]
    finetune_s: float
    data_fingerprint: str
    work_dir: Path
    base: BaseModel

    @property
    def evaluated(self) -> list[Candidate]:
        return [self.baseline, *(c for c in self.candidates if c is not self.baseline)]


def version_of(recipe: Recipe, label: str) -> str:
    return f"{recipe.version}-{label.replace('_', '-')}"


def build(recipe: Recipe, store: Store, cache: ArtifactCache, trust: TrustStore, key: Path, work_dir: Path,
          say: Callable[[str], None], train_progress: Callable[[int, int, float], None] | None = None,
          device: str = "cpu", publish: bool = True, cluster: str = "") -> BuildResult:
    steps = (3 if recipe.trained_from_scratch else 4 + bool(recipe.finetune)) + bool(publish) + bool(recipe.teacher)
    step = iter(range(1, steps + 1))
    work_dir.mkdir(parents=True, exist_ok=True)
    if recipe.teacher:
        teacher = recipe.teacher
        say(f"[{next(step)}/{steps}] teacher {teacher.name}: {teacher.train} scenarios to learn from, {teacher.eval} "
            f"held out (other seeds), languages {', '.join(teacher.languages)}")
        from tango2_ros.builder.teachers import write_sets

        train, held_out = write_sets(teacher, work_dir / "data")
        recipe = replace(recipe, train=train, eval=held_out)

    if recipe.trained_from_scratch:
        say(f"[{next(step)}/{steps}] train {recipe.base} on phantoms ({device})")
        baseline, candidates, losses, finetune_s, eval_file, base = _trained_candidates(
            recipe, work_dir, say, train_progress, store, cache, device)
        data_fingerprint = fingerprint_of_phantoms(recipe)
        eval_count = recipe.extra["phantoms"]["eval"]
    else:
        base = _base(recipe, store, cache)
        if base.adapter:
            recipe = _continuing(recipe, base)
            say(f"[{next(step)}/{steps}] base model {base.reference} with the adapter in service "
                f"{base.adapter_reference} (continued: rank {recipe.finetune.rank}, alpha {recipe.finetune.alpha:g})")
        else:
            say(f"[{next(step)}/{steps}] base model {recipe.base}")
        eval_file = recipe.eval
        eval_count = len(load_pairs(recipe.eval) if recipe.format == "onnx" else load_examples(recipe.eval))
        data_fingerprint = fingerprint(recipe.train, recipe.eval)
        baseline, candidates, losses, finetune_s = _base_candidates(recipe, base, work_dir, say, step, steps,
                                                                    device, train_progress, cluster)

    say(f"[{next(step)}/{steps}] evaluate {len(candidates) + 1} candidates on {eval_count} examples "
        f"({recipe.metric})")
    evaluated: dict[tuple, Evaluation] = {}  # a network trained here is its own baseline: evaluated once
    for candidate in [baseline, *(c for c in candidates if c is not baseline)]:
        files = (candidate.model, candidate.adapter)
        if files not in evaluated:
            evaluated[files] = evaluate_in_subprocess(candidate.model, candidate.adapter, eval_file, recipe.metric,
                                                      recipe.max_tokens, base=candidate.base)
        candidate.evaluation = evaluated[files]
        e = candidate.evaluation
        say(f"      {candidate.label:<7} {recipe.metric} {e.metric:.2f}  {e.tokens_per_s:6.1f} {speed_unit(recipe)}  "
            f"peak {e.peak_memory_mb:5.0f} MB  file {candidate.ship_bytes / MB:6.1f} MB")

    say(f"[{next(step)}/{steps}] gates (min {recipe.metric} {recipe.min_metric:g}) and device profiles")
    passed = judge(candidates, recipe, baseline)
    if any(c.adapter for c in candidates) and recipe.publish_adapter and not base.reference:
        say("      the adapter is not published: its base is a file, not an artifact in the registry")
        passed = [c for c in passed if c.kind != "adapter"]

    tags: dict[str, str] = {}
    if publish:
        say(f"[{next(step)}/{steps}] sign and publish {len(passed)} of {len(candidates)} candidates to {store.location}")
        for candidate in passed:
            candidate.version = version_of(recipe, candidate.label)
            publish_candidate(candidate, recipe, store, trust, key, base, data_fingerprint)
        for profile, best in best_per_profile(passed, recipe).items():
            tags[f"best-{profile}"] = best.version
            store.set_tag(recipe.name, f"best-{profile}", best.version)
    return BuildResult(recipe, candidates, baseline, tags, losses, finetune_s, data_fingerprint, work_dir, base)


def speed_unit(recipe: Recipe) -> str:
    return "studies/s" if recipe.metric in ("micro_f1", "vlm_micro_f1") else "tok/s"


def fingerprint_of_phantoms(recipe: Recipe) -> str:
    """Generated data is fingerprinted by what generates it: the generator's counts and seed."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(recipe.extra, sort_keys=True).encode()).hexdigest()


def _trained_candidates(recipe: Recipe, work_dir: Path, say, progress, store: Store, cache: ArtifactCache,
                        device: str = "cpu"):
    """A network trained here: (baseline, candidates, losses, seconds, held-out sets, the base model it runs on:
    none for the findings network, the language model for the VLM)."""
    if recipe.task == "vlm":
        from tango2_ros.builder.ct_vlm import train_candidates as train_vlm

        bundle, losses, seconds, eval_file, language_model = train_vlm(recipe, work_dir, say, store, cache, progress,
                                                                       device)
        if losses:
            say(f"      loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps in {seconds:.0f} s")
        candidate = Candidate("f32", bundle, base=language_model.primary_path, quantization="f32")
        return candidate, [candidate], losses, seconds, eval_file, BaseModel(language_model.manifest.reference,
                                                                             language_model.primary_path)
    from tango2_ros.builder.ct_findings import train_candidates

    exported, models, losses, seconds, eval_file = train_candidates(recipe, work_dir, say, progress)
    say(f"      loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} epochs in {seconds:.0f} s")
    candidates = [Candidate(level, model, quantization=level) for level, model in models.items()]
    return Candidate("base", exported), candidates, losses, seconds, eval_file, BaseModel("", None)


def _base_candidates(recipe: Recipe, base: BaseModel, work_dir: Path, say, step, steps: int, device: str,
                     train_progress, cluster: str = ""):
    """Fine-tune (optional) and quantise a base model: (baseline, candidates, losses, fine-tune seconds)."""
    train_examples = load_examples(recipe.train) if recipe.train else []
    base_path = base.path
    source, adapter, losses, finetune_s = base_path, None, [], 0.0
    if recipe.finetune:
        say(f"[{next(step)}/{steps}] LoRA fine-tune: rank {recipe.finetune.rank}, {recipe.finetune.steps} steps on "
            f"{len(train_examples)} examples ({device}" + (f", {recipe.finetune.workers} workers" if
                                                           recipe.finetune.workers > 1 else "")
            + (f" on the Ray cluster {cluster}" if cluster else "") + ")")
        tuned = _finetuned(recipe, base_path, train_examples, work_dir, device, train_progress, say, cluster)
        source, adapter, losses, finetune_s = tuned.merged_gguf, tuned.adapter_gguf, tuned.losses, tuned.seconds
        say(f"      loss {losses[0]:.3f} -> {losses[-1]:.3f} in {finetune_s:.0f} s; "
            f"adapter {adapter.stat().st_size / MB:.1f} MB")

    if recipe.format == "onnx":
        say(f"[{next(step)}/{steps}] export to ONNX and quantise: {', '.join(recipe.quantizations)}")
        baseline, candidates = _onnx_candidates(recipe, base_path, work_dir)
    else:
        levels = ", ".join(recipe.quantizations) or "nothing (the adapter on the base model is the candidate)"
        say(f"[{next(step)}/{steps}] quantise: {levels}")
        baseline, candidates = _gguf_candidates(recipe, base, source, adapter, work_dir)
    return baseline, candidates, losses, finetune_s


def _finetuned(recipe: Recipe, base_path: Path, examples, work_dir: Path, device: str, progress, say,
               cluster: str = ""):
    """The LoRA fine-tune, or the one a previous run of the same recipe left in the work folder: a build that
    was interrupted later (evaluating, publishing) resumes without training again. The stamp is written last,
    so an interrupted fine-tune is redone."""
    from tango2_ros.builder.finetune import FinetuneResult, finetune

    stamp = work_dir / "finetune.json"
    merged = bool(recipe.quantizations)  # the merged model is only the source of quantised candidates
    key = json.loads(json.dumps({"base": str(base_path), "base_bytes": base_path.stat().st_size,  # as stored
                                 "config": asdict(recipe.finetune), "data": fingerprint(recipe.train), "device": device,
                                 "merged": merged}))
    if stamp.is_file():
        done = json.loads(stamp.read_text())
        merged_gguf = Path(done["merged_gguf"]) if done.get("merged_gguf") else None
        files = [Path(done["adapter_gguf"]), *([merged_gguf] if merged_gguf else [])]
        if done.get("key") == key and all(f.is_file() for f in files):
            say(f"      reusing the fine-tune of a previous run ({stamp})")
            return FinetuneResult(merged_gguf, files[0], done["losses"], done["seconds"])
    stamp.unlink(missing_ok=True)
    tuned = finetune(base_path, examples, recipe.finetune, work_dir, device, progress, cluster, merged)
    stamp.write_text(json.dumps({"key": key, "merged_gguf": str(tuned.merged_gguf) if tuned.merged_gguf else None,
                                 "adapter_gguf": str(tuned.adapter_gguf), "losses": tuned.losses,
                                 "seconds": tuned.seconds}))
    return tuned


def _gguf_candidates(recipe: Recipe, base: BaseModel, source: Path, adapter: Path | None,
                     work_dir: Path) -> tuple[Candidate, list[Candidate]]:
    """Each quantisation of the (fine-tuned) model, and the adapter on the untouched base; the baseline is the base
    (with the adapter in service, where the build continues one)."""
    candidates = []
    for level in recipe.quantizations:
        target = work_dir / f"{recipe.name}-{version_of(recipe, level)}.gguf"
        if level == "f16" and recipe.finetune:
            shutil.copyfile(source, target)  # the export is F16 already
        else:
            quantize(source, target, level)
        candidates.append(Candidate(level, target, quantization=level))
    if adapter is not None and recipe.publish_adapter:
        candidates.append(Candidate("lora", base.path, adapter=adapter, quantization="f32"))
    return Candidate("base", base.path, adapter=base.adapter), candidates


def _onnx_candidates(recipe: Recipe, base_dir: Path, work_dir: Path) -> tuple[Candidate, list[Candidate]]:
    """The encoder exported as it is (the baseline, and the f32 candidate) and its int8 quantisation."""
    from tango2_ros.builder.onnx_export import export_encoder, quantize_int8

    exported = export_encoder(base_dir, work_dir / "f32")
    candidates = []
    for level in recipe.quantizations:
        model = exported if level == "f32" else quantize_int8(exported, work_dir / level)
        candidates.append(Candidate(level, model, quantization=level))
    return Candidate("base", exported), candidates


def judge(candidates: list[Candidate], recipe: Recipe, baseline: Candidate | None = None) -> list[Candidate]:
    """Apply the recipe's quality gates (against the base model too, with `beat_base`) and each device
    profile's budgets; return the candidates that pass."""
    for candidate in candidates:
        e = candidate.evaluation
        if e.metric < recipe.min_metric:
            candidate.failures.append(f"{recipe.metric} {e.metric:.2f} < {recipe.min_metric:g}")
        if recipe.beat_base and baseline is not None and e.metric <= baseline.evaluation.metric:
            candidate.failures.append(f"{recipe.metric} {e.metric:.2f} is not above the base model's "
                                      f"{baseline.evaluation.metric:.2f}")
        candidate.profiles = [budget.name for budget in recipe.profiles
                              if not budget.violations(candidate.device_bytes / MB, e.peak_memory_mb, e.tokens_per_s)]
    return [c for c in candidates if not c.failures]


def best_per_profile(passed: list[Candidate], recipe: Recipe) -> dict[str, Candidate]:
    """Per device profile, the passing candidate with the best metric (the smaller one on a tie)."""
    best = {}
    for budget in recipe.profiles:
        fitting = [c for c in passed if budget.name in c.profiles]
        if fitting:
            best[budget.name] = max(fitting, key=lambda c: (c.evaluation.metric, -c.device_bytes))
    return best


def _base(recipe: Recipe, store: Store, cache: ArtifactCache) -> BaseModel:
    """The base model file (and its artifact reference when it comes from the registry); for an adapter release,
    the model it applies to, with the adapter."""
    if not recipe.base_is_artifact:
        path = Path(recipe.base)
        if not path.exists():
            raise FileNotFoundError(f"base model {path} not found")
        return BaseModel("", path)
    name, _, spec = recipe.base.partition("@")
    pulled = cache.pull(store, name, spec)
    if pulled.manifest.kind != "adapter":
        return BaseModel(pulled.manifest.reference, pulled.primary_path)
    if not recipe.finetune:
        raise UserError(f"base {recipe.base} is a LoRA adapter: a recipe on it needs a finetune section (which "
                        f"continues the adapter)")
    under_name, _, under_spec = pulled.manifest.adapter_base.partition("@")
    under = cache.pull(store, under_name, under_spec)
    return BaseModel(under.manifest.reference, under.primary_path, pulled.primary_path, pulled.manifest.reference)


def _continuing(recipe: Recipe, base: BaseModel) -> Recipe:
    """The recipe with its fine-tune starting from the adapter in service, at that adapter's rank and alpha."""
    from tango2_ros.builder.gguf_export import read_lora

    try:
        adapter = read_lora(base.adapter)
    except ValueError as exc:
        raise UserError(f"base {recipe.base}: {exc}") from None
    alpha = int(adapter.alpha) if adapter.alpha.is_integer() else adapter.alpha
    return replace(recipe, finetune=replace(recipe.finetune, rank=adapter.rank, alpha=alpha,
                                            start_adapter=str(base.adapter)))


def publish_candidate(candidate: Candidate, recipe: Recipe, store: Store, trust: TrustStore, key: Path,
                      base: BaseModel, data_fingerprint: str, extra_metrics: dict | None = None) -> None:
    """Sign and publish one candidate as `recipe.name@candidate.version` (its evaluation in the manifest)."""
    e = candidate.evaluation
    with tempfile.TemporaryDirectory(prefix="tango2-build-") as scratch:
        folder = Path(scratch)
        write_bundle(
            folder, candidate.files, name=recipe.name, version=candidate.version, task=recipe.task,
            format=recipe.format, quantization=candidate.quantization, kind=candidate.kind,
            base_model=base.derived_from or Path(recipe.base).name,
            adapter_base=base.reference if candidate.adapter else "", data_fingerprint=data_fingerprint,
            metrics={recipe.metric: e.metric, "tokens_per_s": e.tokens_per_s, "latency_s": e.latency_s,
                     "peak_memory_mb": e.peak_memory_mb, **{f"{recipe.metric}_{g}": v for g, v in e.groups.items()},
                     **(extra_metrics or {})},
            device_profiles=tuple(candidate.profiles), description=recipe.description,
        )
        sign_bundle(folder, key)
        publish_bundle(store, folder, trust)

