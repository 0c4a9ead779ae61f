"""Quantisation with llama.cpp's own quantiser (through llama-cpp-python's C API)."""
from __future__ import annotations

import ctypes
from pathlib import Path

import llama_cpp

FTYPES = {
    "f16": "LLAMA_FTYPE_MOSTLY_F16", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
}


class QuantizeError(RuntimeError):
    pass


@llama_cpp.llama_log_callback
def _quiet(level: int, text: bytes, user_data) -> None:
    """llama.cpp's quantiser logs every tensor; the builder reports results itself."""


def quantize(source: Path, target: Path, level: str, threads: int = 2) -> None:
    """Write `source` quantised to `level`; an already quantised source is re-quantised (with its loss)."""
    llama_cpp.llama_log_set(_quiet, ctypes.c_void_p())
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPES[level])
    params.nthread = threads
    params.allow_requantize = True
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if status != 0 or not target.is_file():
        target.unlink(missing_ok=True)
        raise QuantizeError(f"llama.cpp could not quantise {source.name} to {level} (status {status})")
