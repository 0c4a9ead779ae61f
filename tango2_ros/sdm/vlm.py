"""The chest-CT vision-language model: a 3-D encoder and a projector (ONNX, onnxruntime) turn a preprocessed
volume into soft tokens of the language model's hidden size, which llama.cpp reads before the text of the request
(`LlamaEngine`'s embedding batches); the language model is the on-device base GGUF with the bundle's LoRA adapter.

A bundle is a folder: `ct-encoder.onnx` (volume -> features; its metadata `tango2.ct_vlm` holds the preprocessing
conventions, the base model it was trained with and the prompt), `ct-projector.onnx` (features -> soft tokens) and
`adapter-lora.gguf`. Everything that can be checked before serving is checked at load, with a message naming the
part: a missing part, an encoder whose output the projector cannot take, soft tokens of another size than the
language model's hidden size, an adapter llama.cpp refuses. The model writes the report's JSON (`VLM_SCHEMA`) from
the image alone; `tango2_ros.sdm.report.checked_draft` then holds every sentence against the findings classifier,
as for the text-only writer.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy

from tango2_ros.core.runtime.base import HealthReport, ModelIdentity, ModelLoadError, ModelRuntime, golden_check
from tango2_ros.sdm.findings import Finding
from tango2_ros.sdm.labels import LABEL_NAMES
from tango2_ros.sdm.report import Draft, asserted_and_denied, checked_draft
from tango2_ros.sdm.volume import CtVolume, Preprocessing, preprocess

ENCODER_FILE, PROJECTOR_FILE, ADAPTER_FILE = "ct-encoder.onnx", "ct-projector.onnx", "adapter-lora.gguf"
ENCODER_INPUT, ENCODER_OUTPUT, PROJECTOR_OUTPUT = "volume", "features", "soft_tokens"
METADATA_KEY = "tango2.ct_vlm"
PROMPT = ("You are drafting a chest CT report for a radiologist from the CT above. For each finding you see write one "
          "short sentence for the FINDINGS section, then a short IMPRESSION. Answer in JSON.")
MAX_SENTENCES = 6
# The answer: one sentence per finding the model sees (any CT-RATE label), and the impression.
VLM_SCHEMA = {
    "type": "object",
    "properties": {
        "sentences": {"type": "array", "maxItems": MAX_SENTENCES, "items": {
            "type": "object",
            "properties": {"finding": {"type": "string", "enum": list(LABEL_NAMES)},
                           "sentence": {"type": "string", "maxLength": 160}},
            "required": ["finding", "sentence"]}},
        "impression": {"type": "string", "maxLength": 300},
    },
    "required": ["sentences", "impression"],
}


@dataclass(frozen=True)
class VlmConventions:
    """What the bundle was trained with: the volume's preprocessing, the base language model and the prompt."""
    preprocessing: Preprocessing
    base_model: str
    soft_tokens: int
    prompt: str = PROMPT

    def as_json(self) -> str:
        return json.dumps({"preprocessing": {k: list(v) if isinstance(v, tuple) else v
                                             for k, v in self.preprocessing.__dict__.items()},
                           "base_model": self.base_model, "soft_tokens": self.soft_tokens, "prompt": self.prompt})

    @classmethod
    def from_json(cls, text: str) -> "VlmConventions":
        data = json.loads(text)
        conventions = {k: tuple(v) if isinstance(v, list) else v for k, v in data["preprocessing"].items()}
        return cls(Preprocessing(**conventions), str(data["base_model"]), int(data["soft_tokens"]),
                   str(data.get("prompt", PROMPT)))


@dataclass
class VlmAnswer:
    """The model's raw JSON, the labels its text states as present, and the seconds of each stage."""
    raw_text: str
    asserted: list[str]
    finish_reason: str
    error: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


def answer_assertions(raw_text: str) -> list[str]:
    """The CT-RATE labels a raw answer states as present (its sentences and impression, negations excluded);
    a sentence counts for what it says, not for the label it was filed under."""
    try:
        answer = json.loads(raw_text)
        sentences = [str(item.get("sentence", "")) for item in answer.get("sentences", []) if isinstance(item, dict)]
        text = "\n".join(sentences + [str(answer.get("impression", ""))])
    except (json.JSONDecodeError, AttributeError, TypeError):
        text = raw_text
    asserted, _ = asserted_and_denied(text)
    return [label for label in LABEL_NAMES if label in asserted]


class CtReportVlm(ModelRuntime):
    """A loaded bundle: encoder and projector sessions and the language model with the bundle's adapter."""

    def __init__(self, bundle: str | Path, base_gguf: str | Path, *, threads: int = 2, name: str = "",
                 version: str = "", llm_options=None) -> None:
        from tango2_ros.core.runtime.llm import LlmOptions, LlmRuntime
        from tango2_ros.core.runtime.onnx import OnnxRuntime

        folder = Path(bundle)
        if not folder.is_dir():
            raise ModelLoadError(f"VLM bundle not found: {folder} is not a folder")
        if not str(base_gguf):
            raise ModelLoadError(f"the VLM bundle {folder} was given no language model to run on (its base GGUF)")
        parts = {"encoder": folder / ENCODER_FILE, "projector": folder / PROJECTOR_FILE, "adapter": folder / ADAPTER_FILE}
        for part, path in parts.items():
            if not path.is_file():
                raise ModelLoadError(f"the VLM bundle {folder} has no {part} ({path.name})")
        self.encoder = OnnxRuntime(parts["encoder"], threads=threads)
        self.projector = OnnxRuntime(parts["projector"], threads=threads)
        self.conventions = _conventions(self.encoder.session, parts["encoder"])
        features = self.encoder.session.get_outputs()[0].shape[-1]
        takes = self.projector.session.get_inputs()[0].shape[-1]
        if features != takes:
            raise ModelLoadError(f"the VLM bundle's encoder gives {features} features and its projector takes {takes}")
        options = llm_options or LlmOptions(n_threads=threads, n_parallel=1, n_ctx_per_seq=1024, max_queue=4)
        self.llm = LlmRuntime(base_gguf, replace(options, lora_path=str(parts["adapter"])))
        hidden = self.projector.session.get_outputs()[0].shape[-1]
        if hidden != self.llm.engine.n_embd:
            self.llm.close()
            raise ModelLoadError(f"the VLM bundle's projector gives soft tokens of size {hidden}; the language model "
                                 f"{self.llm.identity.label} takes {self.llm.engine.n_embd} (another base model?)")
        if not name:
            name, version = _manifest_name(folder) or (folder.name, version)
        encoder = ModelIdentity.of_file(parts["encoder"], "vlm-bundle", name, version)
        self.identity = replace(encoder, path=str(folder), size_bytes=sum(p.stat().st_size for p in parts.values()))

    @property
    def preprocessing(self) -> Preprocessing:
        return self.conventions.preprocessing

    def soft_tokens(self, model_input: numpy.ndarray) -> numpy.ndarray:
        """(soft_tokens, hidden) float32 for one preprocessed volume of the encoder's shape."""
        expected = tuple(self.conventions.preprocessing.shape)
        if model_input.shape != expected:
            raise ValueError(f"the VLM's encoder takes a preprocessed volume of shape {expected}, not "
                             f"{tuple(model_input.shape)}")
        volume = model_input[None, None].astype(numpy.float32)
        features = self.encoder.infer({ENCODER_INPUT: volume})[ENCODER_OUTPUT]
        tokens = self.projector.infer({ENCODER_OUTPUT: features})[PROJECTOR_OUTPUT]
        return numpy.ascontiguousarray(tokens[0], dtype=numpy.float32)

    def read(self, model_input: numpy.ndarray, max_tokens: int = 300) -> VlmAnswer:
        """The model's answer for one preprocessed volume (raises ValueError for one of the wrong shape)."""
        from tango2_ros.core.runtime.llm import ChatTurn

        started = time.monotonic()
        soft = self.soft_tokens(model_input)
        encoded = time.monotonic()
        prompt = self.llm.chat_prompt([ChatTurn("user", self.conventions.prompt)])
        result = self.llm.generate(prompt, max_tokens=max_tokens, schema=_schema(), prefix_embeddings=soft)
        finished = time.monotonic()
        failed = result.finish_reason not in ("stop", "length")
        return VlmAnswer(result.text, answer_assertions(result.text) if not failed else [], result.finish_reason,
                         result.error, {"encoder": encoded - started, "language_model": finished - encoded})

    def warm_up(self) -> None:
        self.read(numpy.full(self.conventions.preprocessing.shape, -1.0, numpy.float32), max_tokens=2)

    def health_check(self, budget_s: float) -> HealthReport:
        def golden() -> str:
            answer = self.read(numpy.full(self.conventions.preprocessing.shape, -1.0, numpy.float32), max_tokens=120)
            if answer.error:
                return f"failed: {answer.error}"
            try:
                json.loads(answer.raw_text)
            except json.JSONDecodeError:
                return "gave no JSON" if answer.finish_reason == "stop" else ""
            return ""

        return golden_check(golden, budget_s, "golden air-only volume")

    def close(self) -> None:
        self.llm.close()
        self.encoder.close()
        self.projector.close()


class VlmWriter:
    """The report text from the image: the VLM's answer, checked sentence by sentence against the classifier's
    findings (a sentence asserting what the classifier rates absent is dropped and listed)."""

    reads_the_volume = True  # ReportPipeline gives it the study's volume as well as the findings

    def __init__(self, vlm: CtReportVlm, max_tokens: int = 300) -> None:
        self.vlm, self.max_tokens = vlm, max_tokens
        self.last_answer: VlmAnswer | None = None

    def __call__(self, findings: list[Finding], volume: CtVolume) -> Draft:
        from tango2_ros.sdm.report import template_draft

        answer = self.last_answer = self.vlm.read(preprocess(volume, self.vlm.preprocessing), self.max_tokens)
        if answer.error or not answer.raw_text.strip():
            draft = template_draft(findings)
            draft.corrections = [f"the VLM failed ({answer.error or 'no text'}): standard wording"]
            return draft
        return checked_draft(answer.raw_text, findings, self.vlm.identity.label)


def disagreements_with(asserted: list[str], findings: list[Finding]) -> list[str]:
    """The labels where the raw text and the classifier differ: stated but rated absent, or rated present but
    not stated."""
    present = {f.label for f in findings if f.present}
    return [f"states {label.lower()}, which the classifier rates absent" for label in asserted if label not in present] \
        + [f"never states {label.lower()}, which the classifier rates present" for label in LABEL_NAMES
           if label in present and label not in asserted]


def _manifest_name(folder: Path) -> tuple[str, str] | None:
    """(name, version) from the artifact manifest beside the bundle's files (a registry pull or a release), if any."""
    from tango2_ros.core.artifacts.cache import MANIFEST_FILE

    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        return str(manifest["name"]), str(manifest["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _schema():
    from tango2_ros.core.runtime.schema import compile_schema

    return compile_schema(json.dumps(VLM_SCHEMA))


def read_conventions(bundle: str | Path) -> VlmConventions:
    """A bundle's conventions (first of all, which base model it needs) without loading the bundle."""
    from tango2_ros.core.runtime.onnx import OnnxRuntime

    folder = Path(bundle)
    path = folder / ENCODER_FILE
    if not path.is_file():
        text_only = any(folder.glob("*.gguf")) and not (folder / PROJECTOR_FILE).exists()
        raise ModelLoadError(f"{folder} is not a VLM bundle: it has no encoder ({ENCODER_FILE})" + (
            "; it holds a text-only language model, which cannot read an image" if text_only else ""))
    return _conventions(OnnxRuntime(path, threads=1).session, path)


def _conventions(encoder, path: Path) -> VlmConventions:
    metadata = encoder.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in metadata:
        raise ModelLoadError(f"{path} has no {METADATA_KEY} metadata (preprocessing, base model): not a VLM encoder")
    try:
        return VlmConventions.from_json(metadata[METADATA_KEY])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path}: unreadable {METADATA_KEY} metadata ({exc})") from None
