"""Making artifacts: describe model files in a manifest, sign it, publish the bundle to a store."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from tango2_ros.core.artifacts.cache import MANIFEST_FILE, SIGNATURE_FILE, verify_folder
from tango2_ros.core.artifacts.manifest import Manifest, describe_files, utc_now, verify_files
from tango2_ros.core.artifacts.signing import TrustStore, load_private_key, sign
from tango2_ros.core.artifacts.stores import ArtifactError, ArtifactNotFound, ArtifactRecord, Store

BUILDER = "tango2-ros/0.1"


class VersionConflict(ArtifactError):
    """The version is already published with other files; versions are immutable."""


def write_bundle(folder: Path, files: list[Path], **fields) -> Manifest:
    """Copy model files into a bundle folder and write its manifest (fields: name, version, task, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for source in files:
        target = folder / source.name
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        names.append(source.name)
    fields.setdefault("created", utc_now())
    fields.setdefault("builder", BUILDER)
    manifest = Manifest(files=describe_files(folder, names), **fields)
    manifest.check()
    verify_files(manifest, folder)
    (folder / MANIFEST_FILE).write_bytes(manifest.to_bytes())
    (folder / SIGNATURE_FILE).unlink(missing_ok=True)
    return manifest


def sign_bundle(folder: Path, private_key_path: Path) -> str:
    """Sign a bundle's manifest; return the key id."""
    if not (folder / MANIFEST_FILE).is_file():
        raise ArtifactError(f"{folder} is not a bundle: it has no {MANIFEST_FILE}")
    manifest_bytes = (folder / MANIFEST_FILE).read_bytes()
    Manifest.from_bytes(manifest_bytes)
    signature = sign(manifest_bytes, load_private_key(private_key_path))
    (folder / SIGNATURE_FILE).write_bytes(signature)
    return json.loads(signature)["key_id"]


def publish_bundle(store: Store, folder: Path, trust: TrustStore, require_signature: bool = True) -> tuple[ArtifactRecord, bool]:
    """Verify a bundle folder and publish it; return (record, False) when that exact content was already there.

    A version that exists with the same files (say, the same model imported again) counts as published.
    """
    manifest, _ = verify_folder(folder, trust, require_signature)
    try:
        existing = store.record(manifest.name, manifest.version)
    except ArtifactNotFound:
        existing = None
    if existing is not None:
        published = Manifest.from_bytes(store.read_blob(existing, existing.manifest_digest))
        if published.files == manifest.files:
            return existing, False
        raise VersionConflict(f"{manifest.reference} is already published with other files; versions are immutable "
                              "(publish a new version)")
    signature_path = folder / SIGNATURE_FILE
    record = store.publish(
        (folder / MANIFEST_FILE).read_bytes(),
        signature_path.read_bytes() if signature_path.is_file() else None,
        folder, manifest.name, manifest.version, [(e.path, e.sha256) for e in manifest.files],
    )
    return record, True

