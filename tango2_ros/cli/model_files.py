"""Model files for the commands that run a model directly (no model manager): a path, or a registry reference
pulled into the local cache and verified like the model manager would."""
from __future__ import annotations

from pathlib import Path

from tango2_ros import paths
from tango2_ros.errors import UserError


def model_file(reference: str) -> tuple[Path, str, str]:
    """A model file from a path or a registry reference NAME@SPEC (pulled and verified): (path, name, version)."""
    path, adapter, name, version = model_files(reference)
    if adapter is not None:
        raise UserError(f"model {reference} is a LoRA adapter: this command needs a whole model")
    return path, name, version


def model_folder(reference: str) -> tuple[Path, str, str]:
    """A model of several files (a VLM bundle): a folder, or an artifact pulled and verified, (folder, name,
    version)."""
    path = Path(reference)
    if path.is_dir():
        return path, path.name, ""
    if path.is_file():
        raise UserError(f"model {reference} is one file; this needs a bundle folder or an artifact NAME@VERSION|TAG")
    primary, adapter, name, version = model_files(reference)
    if adapter is not None:
        raise UserError(f"model {reference} is a LoRA adapter: this needs a bundle")
    return primary.parent, name, version


def model_files(reference: str) -> tuple[Path, Path | None, str, str]:
    """Like model_file, but an adapter artifact is welcome: (base model path, adapter path or None, name,
    version), the base pulled and verified as the model manager does."""
    path = Path(reference)
    if path.is_file():
        return path, None, path.stem, ""
    if "@" not in reference:
        raise UserError(f"model {reference}: no such file, and not an artifact reference NAME@VERSION|TAG")
    from tango2_ros.core.artifacts.cache import ArtifactCache, VerificationError
    from tango2_ros.core.artifacts.signing import TrustStore
    from tango2_ros.core.artifacts.stores import ArtifactError, open_store

    cache, store = ArtifactCache(paths.cache_dir(), TrustStore(paths.trusted_keys_dir())), open_store(paths.default_store())
    name, _, spec = reference.partition("@")
    try:
        pulled = cache.pull(store, name, spec)
        manifest = pulled.manifest
        if manifest.kind != "adapter":
            return pulled.primary_path, None, manifest.name, manifest.version
        base_name, _, base_version = manifest.adapter_base.partition("@")
        base = cache.pull(store, base_name, base_version)
    except (ArtifactError, VerificationError, FileNotFoundError) as exc:
        raise UserError(f"model {reference}: {exc}") from None
    return base.primary_path, pulled.primary_path, manifest.name, manifest.version


def open_llm(reference: str, n_ctx_per_seq: int):
    """An LlmRuntime in this process for a model file or artifact, or an adapter on its base (UserError when it
    does not load)."""
    from tango2_ros.core.runtime.base import ModelLoadError
    from tango2_ros.core.runtime.llm import LlmOptions, LlmRuntime

    path, adapter, name, version = model_files(reference)
    try:
        return LlmRuntime(path, LlmOptions(n_parallel=1, n_ctx_per_seq=n_ctx_per_seq, lora_path=str(adapter or "")),
                          name=name, version=version)
    except ModelLoadError as exc:
        raise UserError(str(exc)) from None


def profile_model(profile_name: str, slot: str) -> str:
    """NAME@VERSION (or @latest) that a profile's model manager deploys to a slot: what a command runs by default."""
    from tango2_ros.bringup.profiles import load_profile

    manager = next((n for n in load_profile(profile_name).nodes if n.executable == "model_manager"), None)
    if manager is None or f"{slot}.model" not in manager.parameters:
        raise UserError(f"the {profile_name} profile deploys no model to a slot {slot!r}: give the model")
    return f"{manager.parameters[f'{slot}.model']}@{manager.parameters.get(f'{slot}.version') or 'latest'}"
