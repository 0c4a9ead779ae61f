"""Model files for the commands that run a model directly (no model manager): a path, or a registry reference
pulled into the local cache and verified like the model manager would."""
from __future__ import annotations

from pathlib import Path

from tango2_ros import paths
from tango2_ros.errors import UserError


def model_file(reference: str) -> tuple[Path, str, str]:
    """A model file from a path or a registry reference NAME@SPEC (pulled and verified): (path, name, version)."""
    path = Path(reference)
    if path.is_file():
        return path, path.stem, ""
    if "@" not in reference:
        raise UserError(f"model {reference}: no such file, and not an artifact reference NAME@VERSION|TAG")
    from tango2_ros.core.artifacts.cache import ArtifactCache, VerificationError
    from tango2_ros.core.artifacts.signing import TrustStore
    from tango2_ros.core.artifacts.stores import ArtifactError, open_store

    name, _, spec = reference.partition("@")
    try:
        pulled = ArtifactCache(paths.cache_dir(), TrustStore(paths.trusted_keys_dir())).pull(
            open_store(paths.default_store()), name, spec)
    except (ArtifactError, VerificationError, FileNotFoundError) as exc:
        raise UserError(f"model {reference}: {exc}") from None
    return pulled.primary_path, pulled.manifest.name, pulled.manifest.version
