"""The pull cache: verified artifacts on this machine, fetched atomically and resumably, bounded in size.

A pull resolves the version in the store, checks the signature against the trust store *before* fetching the
files, downloads each file into `.incoming/<name>@<version>/` (a later pull resumes what an interrupted one
left), verifies every file's sha256, and only then renames the folder to `<name>/<version>/`. So a folder
under its final name is always complete and verified. When the store cannot be reached, pulls are served from
the cache (re-verified). The cache evicts least recently used versions beyond its size limit.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tango2_ros.core.artifacts.manifest import Manifest, ManifestError, semver_key, verify_files
from tango2_ros.core.artifacts.signing import SignatureError, SignatureInfo, TrustStore
from tango2_ros.core.artifacts.stores import (
    ArtifactError, DiskFull, Store, StoreUnavailable, sha256_digest,
)

MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "signature.json"
INCOMING = ".incoming"
DISK_MARGIN_BYTES = 16 << 20


class VerificationError(ArtifactError):
    """The artifact is unsigned, untrusted, tampered with or malformed."""


@dataclass
class PullResult:
    manifest: Manifest
    folder: Path
    signer: SignatureInfo | None
    from_cache: bool
    offline: bool = False  # the store was unreachable and the cache served the pull
    bytes_downloaded: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # resolve, download, verify (seconds)

    @property
    def primary_path(self) -> Path:
        return self.folder / self.manifest.primary_file.path


def verify_manifest(manifest_bytes: bytes, signature_bytes: bytes | None, trust: TrustStore,
                    require_signature: bool) -> tuple[Manifest, SignatureInfo | None]:
    """Parse a manifest and check its signature (unless signatures are not required and there is none)."""
    try:
        manifest = Manifest.from_bytes(manifest_bytes)
    except ManifestError as exc:
        raise VerificationError(str(exc)) from exc
    if not signature_bytes and not require_signature:
        return manifest, None
    try:
        return manifest, trust.verify(manifest_bytes, signature_bytes)
    except SignatureError as exc:
        raise VerificationError(f"{manifest.reference}: {exc}") from exc


def verify_folder(folder: Path, trust: TrustStore, require_signature: bool = True) -> tuple[Manifest, SignatureInfo | None]:
    """Verify an artifact folder (manifest.json, signature.json, files) completely."""
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise VerificationError(f"{folder} has no {MANIFEST_FILE}")
    signature_path = folder / SIGNATURE_FILE
    signature = signature_path.read_bytes() if signature_path.is_file() else None
    manifest, signer = verify_manifest(manifest_path.read_bytes(), signature, trust, require_signature)
    try:
        verify_files(manifest, folder)
    except ManifestError as exc:
        raise VerificationError(str(exc)) from exc
    return manifest, signer


class ArtifactCache:
    def __init__(self, root: Path, trust: TrustStore, max_bytes: int = 20 << 30, require_signature: bool = True) -> None:
        self.root = root
        self.trust = trust
        self.max_bytes = max_bytes
        self.require_signature = require_signature

    def folder(self, name: str, version: str) -> Path:
        return self.root / name / version

    def cached_versions(self, name: str) -> list[str]:
        base = self.root / name
        if not base.is_dir():
            return []
        return sorted((p.name for p in base.iterdir() if (p / MANIFEST_FILE).is_file()), key=semver_key)

    def pull(self, store: Store, name: str, spec: str = "", progress: Callable[[int, int], None] | None = None,
             keep: tuple[Path, ...] = ()) -> PullResult:
        """Fetch and verify `name@spec` (see Store.resolve); `keep` are folders eviction must not touch."""
        started = time.monotonic()
        try:
            version = store.resolve(name, spec)
            record = store.record(name, version)
        except StoreUnavailable as exc:
            return self._offline(name, spec, exc, started)
        resolved = time.monotonic()
        target = self.folder(name, version)
        if target.is_dir() and (target / MANIFEST_FILE).is_file():
            if sha256_digest((target / MANIFEST_FILE).read_bytes()) == record.manifest_digest:
                result = self._from_cache(target, from_cache=True)
                result.timings = {"resolve": resolved - started, **result.timings}
                return result
            shutil.rmtree(target)  # a version's bytes never change in a store: this copy is stale or damaged
        manifest_bytes = store.read_blob(record, record.manifest_digest)
        signature_bytes = store.read_blob(record, record.signature_digest) if record.signature_digest else None
        manifest, signer = verify_manifest(manifest_bytes, signature_bytes, self.trust, self.require_signature)
        if manifest.reference != f"{name}@{version}":
            raise VerificationError(f"the store's {name}@{version} holds a manifest for {manifest.reference}")
        incoming = self.root / INCOMING / f"{name}@{version}"
        downloaded = self._download(store, record, manifest, incoming, progress)
        fetched = time.monotonic()
        try:
            verify_files(manifest, incoming)
        except ManifestError as exc:
            shutil.rmtree(incoming, ignore_errors=True)  # a wrong file must not be resumed
            raise VerificationError(str(exc)) from exc
        (incoming / MANIFEST_FILE).write_bytes(manifest_bytes)
        if signature_bytes:
            (incoming / SIGNATURE_FILE).write_bytes(signature_bytes)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(incoming, target)
        verified = time.monotonic()
        self.evict(keep=(target, *keep))
        return PullResult(manifest, target, signer, from_cache=False, bytes_downloaded=downloaded,
                          timings={"resolve": resolved - started, "download": fetched - resolved,
                                   "verify": verified - fetched})

    def _download(self, store: Store, record, manifest: Manifest, incoming: Path,
                  progress: Callable[[int, int], None] | None) -> int:
        incoming.mkdir(parents=True, exist_ok=True)
        present = sum((incoming / e.path).stat().st_size for e in manifest.files if (incoming / e.path).is_file())
        needed = manifest.total_size - present
        free = shutil.disk_usage(incoming).free
        if needed + DISK_MARGIN_BYTES > free:
            raise DiskFull(f"{manifest.reference} needs {needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free in {self.root}")
        done = [present]

        def advance(count: int) -> None:
            done[0] += count
            if progress:
                progress(done[0], manifest.total_size)

        for entry in manifest.files:
            destination = incoming / entry.path
            destination.parent.mkdir(parents=True, exist_ok=True)
            if destination.is_file() and destination.stat().st_size > entry.size:
                destination.unlink()  # longer than the real file: not a prefix of it
            if destination.is_file() and destination.stat().st_size == entry.size:
                continue
            try:
                store.download_blob(record, f"sha256:{entry.sha256}", destination, advance)
            except DiskFull:
                shutil.rmtree(incoming, ignore_errors=True)
                raise
        return done[0] - present

    def _from_cache(self, folder: Path, from_cache: bool) -> PullResult:
        started = time.monotonic()
        manifest, signer = verify_folder(folder, self.trust, self.require_signature)
        os.utime(folder)  # recently used: evicted last
        return PullResult(manifest, folder, signer, from_cache=from_cache,
                          timings={"verify": time.monotonic() - started})

    def _offline(self, name: str, spec: str, cause: StoreUnavailable, started: float) -> PullResult:
        versions = self.cached_versions(name)
        if spec in ("", "latest"):
            candidates = versions[-1:]
        else:
            candidates = [spec] if spec in versions else []
        if not candidates:
            raise StoreUnavailable(f"{cause}; and {name}@{spec or 'latest'} is not in the cache {self.root}") from cause
        result = self._from_cache(self.folder(name, candidates[0]), from_cache=True)
        result.offline = True
        result.timings = {"resolve": time.monotonic() - started - result.timings["verify"], **result.timings}
        return result

    def evict(self, keep: tuple[Path, ...] = ()) -> list[str]:
        """Remove least recently used versions until the cache fits its limit; return what was removed."""
        folders = [v for n in self.root.iterdir() if n.is_dir() and n.name != INCOMING
                   for v in n.iterdir() if v.is_dir()] if self.root.is_dir() else []
        sizes = {f: sum(p.stat().st_size for p in f.rglob("*") if p.is_file()) for f in folders}
        total = sum(sizes.values())
        removed = []
        kept = {k.resolve() for k in keep}
        for folder in sorted(folders, key=lambda f: f.stat().st_mtime):
            if total <= self.max_bytes:
                break
            if folder.resolve() in kept:
                continue
            shutil.rmtree(folder)
            total -= sizes[folder]
            removed.append(f"{folder.parent.name}@{folder.name}")
        return removed
