"""The artifact manifest: what a model bundle is, what it was built from, and the digest of every file in it.

The manifest's canonical JSON bytes are what is signed and what identifies the artifact: its sha256 is the
artifact's digest, so two artifacts with the same digest are the same bytes (content addressing).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from tango2_ros.core.runtime.base import file_sha256

SCHEMA_VERSION = 1
TASKS = ("llm", "lam", "vlm", "detector", "ct-encoder", "classifier", "embedding")
FORMATS = {"gguf": (".gguf",), "onnx": (".onnx",)}
QUANTIZATIONS = ("f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_0", "q4_k_m", "q4_0", "q4_1", "int8", "uint8")
KINDS = ("model", "adapter")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SEMVER_PATTERN = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """A manifest is malformed or does not describe its files; the message names the field."""


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative, POSIX, no '..'
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    task: str
    format: str
    quantization: str
    files: tuple[FileEntry, ...]
    kind: str = "model"
    base_model: str = ""  # what it was derived from (a model name or an artifact reference)
    adapter_base: str = ""  # for kind=adapter: the artifact `name@version` the adapter applies to
    data_fingerprint: str = ""  # sha256 of the training data, empty when not trained here
    metrics: dict[str, float] = field(default_factory=dict)
    device_profiles: tuple[str, ...] = ()
    created: str = ""
    builder: str = ""
    description: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def reference(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def primary_file(self) -> FileEntry:
        """The file a runtime loads: the first one with the format's extension."""
        suffixes = FORMATS[self.format]
        for entry in self.files:
            if entry.path.endswith(suffixes):
                return entry
        raise ManifestError(f"{self.reference} has no {self.format} file")

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_bytes(self) -> bytes:
        """Canonical JSON: sorted keys, no whitespace variation, so the digest and signature are stable."""
        data = asdict(self)
        data["files"] = [asdict(entry) for entry in self.files]
        data["device_profiles"] = list(self.device_profiles)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Manifest":
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"manifest is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ManifestError("manifest must be a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ManifestError(f"unknown manifest field(s): {', '.join(unknown)}")
        for required in ("name", "version", "task", "format", "quantization", "files"):
            if required not in data:
                raise ManifestError(f"manifest lacks '{required}'")
        if data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ManifestError(f"manifest schema_version {data.get('schema_version')!r} is not {SCHEMA_VERSION}")
        files = data["files"]
        if not isinstance(files, list) or not files:
            raise ManifestError("manifest 'files' must be a non-empty list")
        entries = tuple(_file_entry(item, index) for index, item in enumerate(files))
        metrics = data.get("metrics", {})
        if not isinstance(metrics, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in metrics.items()
        ):
            raise ManifestError("manifest 'metrics' must map names to numbers")
        manifest = cls(
            **{k: v for k, v in data.items() if k not in ("files", "metrics", "device_profiles")},
            files=entries,
            metrics={k: float(v) for k, v in metrics.items()},
            device_profiles=tuple(_string_list(data.get("device_profiles", []), "device_profiles")),
        )
        manifest.check()
        return manifest

    def check(self) -> None:
        """Raise ManifestError unless every field has an allowed value."""
        for name in ("name", "version", "task", "format", "quantization", "kind", "base_model", "adapter_base",
                     "data_fingerprint", "created", "builder", "description"):
            if not isinstance(getattr(self, name), str):
                raise ManifestError(f"manifest '{name}' must be a string")
        if not NAME_PATTERN.match(self.name):
            raise ManifestError(f"model name {self.name!r} must be lower-case letters, digits, '.', '_' or '-'")
        if not SEMVER_PATTERN.match(self.version):
            raise ManifestError(f"version {self.version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
        _one_of("task", self.task, TASKS)
        _one_of("format", self.format, tuple(FORMATS))
        _one_of("quantization", self.quantization, QUANTIZATIONS)
        _one_of("kind", self.kind, KINDS)
        if self.kind == "adapter" and not self.adapter_base:
            raise ManifestError("an adapter artifact must name its base artifact in 'adapter_base'")
        if self.data_fingerprint and not SHA256_PATTERN.match(self.data_fingerprint):
            raise ManifestError("data_fingerprint must be a sha256 hex digest")
        paths = [entry.path for entry in self.files]
        if len(set(paths)) != len(paths):
            raise ManifestError("manifest lists a file twice")
        self.primary_file  # noqa: B018 - raises when the format's file is missing


def semver_key(version: str) -> tuple:
    """Sort key: releases above their pre-releases, numbers compared as numbers."""
    match = SEMVER_PATTERN.match(version)
    if not match:
        raise ManifestError(f"version {version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    major, minor, patch, pre = match.groups()
    pre_key = (1,) if pre is None else (0, *((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")))
    return int(major), int(minor), int(patch), pre_key


def is_release(version: str) -> bool:
    match = SEMVER_PATTERN.match(version)
    return bool(match) and match.group(4) is None


def describe_files(folder: Path, relative_paths: list[str]) -> tuple[FileEntry, ...]:
    """FileEntries for files inside `folder` (hashing each)."""
    entries = []
    for relative in relative_paths:
        path = folder / relative
        if not path.is_file():
            raise ManifestError(f"{path} is not a file")
        entries.append(FileEntry(path=PurePosixPath(relative).as_posix(), sha256=file_sha256(path), size=path.stat().st_size))
    return tuple(entries)


def verify_files(manifest: Manifest, folder: Path) -> None:
    """Raise ManifestError unless every file in `folder` has the size and sha256 the manifest lists."""
    for entry in manifest.files:
        path = folder / entry.path
        if not path.is_file():
            raise ManifestError(f"{manifest.reference}: file {entry.path} is missing")
        size = path.stat().st_size
        if size != entry.size:
            raise ManifestError(f"{manifest.reference}: {entry.path} has {size} bytes, the manifest says {entry.size}")
        actual = file_sha256(path)
        if actual != entry.sha256:
            raise ManifestError(f"{manifest.reference}: {entry.path} has sha256 {actual[:16]}..., "
                                f"the manifest says {entry.sha256[:16]}... (corrupted or tampered)")
    check_format(manifest, folder / manifest.primary_file.path)


def check_format(manifest: Manifest, path: Path) -> None:
    """The primary file must really be what the manifest's format says (magic bytes)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if manifest.format == "gguf" and head != b"GGUF":
        raise ManifestError(f"{manifest.reference}: {path.name} is not a GGUF file")
    if manifest.format == "onnx" and (not head or head[0] != 0x08):  # protobuf field 1 (ir_version), varint
        raise ManifestError(f"{manifest.reference}: {path.name} is not an ONNX model")


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _file_entry(item: Any, index: int) -> FileEntry:
    if not isinstance(item, dict) or set(item) != {"path", "sha256", "size"}:
        raise ManifestError(f"files[{index}] must have exactly 'path', 'sha256' and 'size'")
    path, sha, size = item["path"], item["sha256"], item["size"]
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or ".." in PurePosixPath(path).parts:
        raise ManifestError(f"files[{index}].path {path!r} must be a relative path inside the bundle")
    if not isinstance(sha, str) or not SHA256_PATTERN.match(sha):
        raise ManifestError(f"files[{index}].sha256 must be 64 lower-case hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"files[{index}].size must be a non-negative integer")
    return FileEntry(path=path, sha256=sha, size=size)


def _string_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"manifest '{name}' must be a list of strings")
    return value


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ManifestError(f"unknown {name} {value!r} (known: {', '.join(allowed)})")
