"""Writing transformers weights back to GGUF: a full F16 model, or a LoRA adapter llama.cpp applies at load time;
and reading such an adapter back, so that a fine-tune can continue the LoRA of the model in service.

Tokenizer, chat template and hyper-parameters are copied from the base GGUF (the `gguf` package cannot detect
a BPE pre-tokenizer from a bare checkpoint). llama.cpp keeps the rows of q_proj and k_proj in another RoPE
order than transformers, so those (and a LoRA's B matrices for them) are permuted per head; without that the
file loads but answers are garbage.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SKIPPED_FIELDS = ("general.architecture", "general.file_type", "general.quantization_version", "general.type")


def _rope_permute(weight: np.ndarray, n_head: int, inverse: bool = False) -> np.ndarray:
    """Rows from transformers' RoPE order to llama.cpp's per head (`inverse`: back)."""
    half = weight.shape[0] // n_head // 2
    grouped = (n_head, half, 2) if inverse else (n_head, 2, half)
    return weight.reshape(*grouped, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


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

    def permute_for(self, hf_name: str, rows: np.ndarray, inverse: bool = False) -> np.ndarray:
        if "q_proj" in hf_name:
            return _rope_permute(rows, self.n_head, inverse)
        if "k_proj" in hf_name:
            return _rope_permute(rows, self.n_kv_head, inverse)
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
    state = peft_model.state_dict()
    for key, module, gguf_name in _lora_tensors(state, names):
        data = state[key].detach().float().numpy()
        if gguf_name.endswith(".lora_b"):
            data = names.permute_for(module, data)
        writer.add_tensor(gguf_name, data.astype(np.float16))
    _write(writer)


def _lora_tensors(state: dict, names: _NameMap):
    """(peft state-dict key, transformers module, GGUF tensor name) of each LoRA matrix of a peft state dict."""
    for key in state:
        if ".lora_A." not in key and ".lora_B." not in key:
            continue
        module = key.replace("base_model.model.", "", 1).split(".lora_")[0]
        suffix = ".lora_b" if ".lora_B." in key else ".lora_a"
        yield key, module, names.gguf_name(module + ".weight") + suffix


@dataclass(frozen=True)
class LoraAdapter:
    """A GGUF LoRA adapter as read back: its scale and its matrices by GGUF tensor name (llama.cpp's row order)."""

    alpha: float
    tensors: dict[str, np.ndarray]

    @property
    def rank(self) -> int:
        return min(t.shape[0] for name, t in self.tensors.items() if name.endswith(".lora_a"))


def read_lora(path: Path) -> LoraAdapter:
    """The alpha and matrices of a GGUF LoRA adapter; a file that is not one is refused with the reason."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a GGUF file ({exc})") from None
    kind = reader.fields.get("general.type")
    alpha = reader.fields.get("adapter.lora.alpha")
    if kind is None or kind.contents() != "adapter" or alpha is None:
        raise ValueError(f"{path}: not a LoRA adapter (no general.type = adapter with adapter.lora.alpha)")
    # GGUF lists the dimensions innermost first; numpy's shape is the reverse
    tensors = {t.name: np.array(t.data, dtype=np.float32).reshape(tuple(int(d) for d in reversed(t.shape)))
               for t in reader.tensors}
    return LoraAdapter(float(alpha.contents()), tensors)


def lora_state(peft_model, adapter: LoraAdapter) -> dict:
    """The peft state dict that puts `adapter`'s matrices into `peft_model` (the inverse of `export_lora`): every
    LoRA matrix of the adapter must have its place, with the same shape; the model's others keep theirs."""
    import torch

    names = _NameMap(peft_model.get_base_model().config)
    state, current, placed = {}, peft_model.state_dict(), set()
    for key, module, gguf_name in _lora_tensors(current, names):
        if gguf_name not in adapter.tensors:
            continue
        data = adapter.tensors[gguf_name]
        if gguf_name.endswith(".lora_b"):
            data = names.permute_for(module, data, inverse=True)
        if tuple(data.shape) != tuple(current[key].shape):
            raise ValueError(f"the adapter's {gguf_name} is {tuple(data.shape)}, the model's LoRA "
                             f"{tuple(current[key].shape)}: train with the adapter's rank")
        state[key] = torch.from_numpy(np.ascontiguousarray(data))
        placed.add(gguf_name)
    missing = sorted(set(adapter.tensors) - placed)
    if missing:
        raise ValueError(f"the adapter has LoRA matrices the fine-tune does not train ({', '.join(missing[:3])}"
                         f"{', ...' if len(missing) > 3 else ''}): add their modules to target_modules")
    return state
