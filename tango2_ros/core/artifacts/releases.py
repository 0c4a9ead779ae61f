"""Trained releases that travel with the repository: `models/releases/<name>/<version>/`.

A release folder holds the artifact's manifest (unsigned: each machine signs with its own key), its model files,
`release.json` (the tags it carries, the recipe and command that rebuild it) and the build report. Set-up
verifies every file against the manifest and publishes the release into the local store signed with this
machine's key, so that no fresh machine trains anything. `export_release` writes such a folder from a built,
published artifact.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tango2_ros.core.artifacts.cache import MANIFEST_FILE
from tango2_ros.core.artifacts.manifest import Manifest, ManifestError, verify_files
from tango2_ros.core.artifacts.publishing import VersionConflict, publish_bundle, sign_bundle
from tango2_ros.core.artifacts.signing import TrustStore
from tango2_ros.core.artifacts.stores import ArtifactError, Store

RELEASE_FILE = "release.json"
REPORT_FILES = ("report.md", "report.png")


@dataclass(frozen=True)
class Release:
    folder: Path
    manifest: Manifest
    tags: tuple[str, ...]
    rebuild: str  # the command that rebuilds it from source

    @property
    def reference(self) -> str:
        return self.manifest.reference


def read_release(folder: Path) -> Release:
    """A release folder whose files all match its manifest; ArtifactError naming the folder otherwise."""
    try:
        manifest = Manifest.from_bytes((folder / MANIFEST_FILE).read_bytes())
        info = json.loads((folder / RELEASE_FILE).read_text(encoding="utf-8"))
        verify_files(manifest, folder)
    except (OSError, ValueError, ManifestError) as exc:
        raise ArtifactError(f"release {folder}: {exc}") from None
    if not isinstance(info, dict) or not all(isinstance(t, str) for t in info.get("tags", [])):
        raise ArtifactError(f"release {folder}: {RELEASE_FILE} must be an object with a list of tags")
    if folder.name != manifest.version or folder.parent.name != manifest.name:
        raise ArtifactError(f"release {folder}: holds {manifest.reference}, expected in {manifest.name}/{manifest.version}")
    return Release(folder, manifest, tuple(info.get("tags", [])), str(info.get("rebuild", "")))


def find_releases(root: Path) -> list[Release]:
    if not root.is_dir():
        return []
    return [read_release(folder) for folder in sorted(root.glob("*/*")) if (folder / MANIFEST_FILE).is_file()]


def import_releases(root: Path, store: Store, trust: TrustStore, private_key: Path,
                    warn: Callable[[str], None] = lambda message: None) -> list[tuple[str, bool]]:
    """Publish every release under `root` signed with `private_key` and point its tags at it; (reference,
    newly published) pairs. Every release is verified before any is published. A version this store already holds
    with other files (built here by its recipe) is kept, and `warn` says so."""
    releases = find_releases(root)
    results = []
    for release in releases:
        with tempfile.TemporaryDirectory(prefix="tango2-release-") as scratch:
            bundle = Path(scratch) / "bundle"
            _copy_artifact(release.folder, bundle, release.manifest)
            sign_bundle(bundle, private_key)
            try:
                _, new = publish_bundle(store, bundle, trust)
            except VersionConflict as exc:
                warn(f"{release.reference}: this registry has its own build of that version; kept it ({exc})")
                results.append((release.reference, False))
                continue
        for tag in release.tags:
            if store.tags(release.manifest.name).get(tag) != release.manifest.version:
                store.set_tag(release.manifest.name, tag, release.manifest.version)
        results.append((release.reference, new))
    return results


def export_release(folder: Path, root: Path, tags: list[str], rebuild: str, report_dir: Path | None = None) -> Path:
    """Copy a verified artifact folder (a pulled cache entry or a bundle) into `root/<name>/<version>/`."""
    manifest = Manifest.from_bytes((folder / MANIFEST_FILE).read_bytes())
    verify_files(manifest, folder)
    target = root / manifest.name / manifest.version
    if target.exists():
        raise ArtifactError(f"{target} exists: releases are immutable (build a new version)")
    _copy_artifact(folder, target, manifest)
    for name in REPORT_FILES:
        if report_dir is not None and (report_dir / name).is_file():
            shutil.copyfile(report_dir / name, target / name)
    (target / RELEASE_FILE).write_text(json.dumps({"tags": list(tags), "rebuild": rebuild}, indent=1) + "\n",
                                       encoding="utf-8")
    return target


def _copy_artifact(source: Path, target: Path, manifest: Manifest) -> None:
    """The manifest and the files it lists (no signature: whoever publishes signs)."""
    target.mkdir(parents=True)
    shutil.copyfile(source / MANIFEST_FILE, target / MANIFEST_FILE)
    for entry in manifest.files:
        (target / entry.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / entry.path, target / entry.path)
