"""Encoder models to ONNX: a transformers folder becomes one ONNX graph that maps token ids to normalised
sentence embeddings (mean pooling included), then onnxruntime's dynamic int8 quantisation makes it ~4x smaller.

The tokenizer files travel with the model in the artifact, so a node can run it with onnxruntime alone.
"""
from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")
MODEL_FILE = "model.onnx"


def export_encoder(model_dir: Path, out_dir: Path) -> Path:
    """Export `model_dir` (a transformers encoder) into out_dir/model.onnx plus its tokenizer files."""
    import warnings

    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    class SentenceEncoder(torch.nn.Module):
        def __init__(self, encoder) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    encoder = AutoModel.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    sample = tokenizer(["a sample sentence", "another"], return_tensors="pt", padding=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / MODEL_FILE
    with warnings.catch_warnings():  # the tracer warns about Python control flow it folds for these shapes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            SentenceEncoder(encoder), (sample["input_ids"], sample["attention_mask"]), str(target),
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                          "embedding": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
    copy_tokenizer(model_dir, out_dir)
    return target


def copy_tokenizer(source_dir: Path, out_dir: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source_dir / name).is_file() and source_dir.resolve() != out_dir.resolve():
            shutil.copyfile(source_dir / name, out_dir / name)


def quantize_int8(source: Path, out_dir: Path) -> Path:
    """Dynamic int8 quantisation of the weights (activations stay float), with the tokenizer files copied."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # the quantiser suggests pre-processing on the root logger
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / MODEL_FILE
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    copy_tokenizer(source.parent, out_dir)
    return target


def bundle_files(model: Path) -> list[Path]:
    """The model file and the tokenizer files next to it."""
    return [model, *(model.parent / n for n in TOKENIZER_FILES if (model.parent / n).is_file())]
