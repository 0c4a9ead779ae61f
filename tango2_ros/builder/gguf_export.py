"""Writing transformers weights back to GGUF: a full F16 model, or a LoRA adapter llama.cpp applies at load time.

Tokenizer, chat template and hyper-parameters are copied from the base GGUF (the `gguf` package cannot detect
a BPE pre-tokenizer from a bare checkpoint). llama.cpp keeps the rows of q_proj and k_proj in another RoPE
order than transformers, so those (and a LoRA's B matrices for them) are permuted per head; without that the
file loads but answers are garbage.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SKIPPED_FIELDS = ("general.architecture", "general.file_type", "general.quantization_version", "general.type")


def _rope_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _copy_metadata(reader, writer) -> None:
    from gguf import GGUFValueType

    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name in SKIPPED_FIELDS:
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)


class _NameMap:
    def __init__(self, config) -> None:
        from gguf import MODEL_ARCH, get_tensor_name_map

        self.map = get_tensor_name_map(MODEL_ARCH.LLAMA, config.num_hidden_layers)
        self.n_head = config.num_attention_heads
        self.n_kv_head = config.num_key_value_heads

    def gguf_name(self, hf_name: str) -> str:
        name = self.map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"no GGUF name for tensor {hf_name}")
        return name

    def permute_for(self, hf_name: str, rows: np.ndarray) -> np.ndarray:
        if "q_proj" in hf_name:
            return _rope_permute(rows, self.n_head)
        if "k_proj" in hf_name:
            return _rope_permute(rows, self.n_kv_head)
        return rows


def _write(writer) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def export_model(model, reference_gguf: Path, out_path: Path) -> None:
    """A (merged) LlamaForCausalLM as a GGUF F16 file."""
    from gguf import GGUFReader, GGUFWriter, LlamaFileType

    names = _NameMap(model.config)
    writer = GGUFWriter(str(out_path), arch="llama")
    _copy_metadata(GGUFReader(str(reference_gguf)), writer)
    writer.add_file_type(LlamaFileType.MOSTLY_F16)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        data = names.permute_for(hf_name, tensor.detach().float().numpy())
        writer.add_tensor(names.gguf_name(hf_name), data.astype(np.float16 if data.ndim == 2 else np.float32))
    _write(writer)


def export_lora(peft_model, alpha: float, out_path: Path) -> None:
    """The LoRA matrices of a peft model as a GGUF adapter (`general.type = adapter`), in float16 as llama.cpp's
    own converter writes them: half the size, and the adapter's product is computed in float32 anyway."""
    from gguf import GGUFWriter

    config = peft_model.get_base_model().config
    names = _NameMap(config)
    writer = GGUFWriter(str(out_path), arch="llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(alpha))
    for key, tensor in peft_model.state_dict().items():
        if ".lora_A." not in key and ".lora_B." not in key:
            continue
        module = key.replace("base_model.model.", "", 1).split(".lora_")[0]
        base_name = names.gguf_name(module + ".weight")
        data = tensor.detach().float().numpy()
        if ".lora_B." in key:
            writer.add_tensor(f"{base_name}.lora_b", names.permute_for(module, data).astype(np.float16))
        else:
            writer.add_tensor(f"{base_name}.lora_a", data.astype(np.float16))
    _write(writer)
