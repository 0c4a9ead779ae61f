"""Trained releases kept in the repository: exported from a store, verified file by file, published signed with
this machine's key and tagged at set-up; a tampered or misplaced release is refused before anything is published."""
import json
import shutil

import pytest

from helpers.servers import make_model_file
from tango2_ros.core.artifacts.cache import ArtifactCache
from tango2_ros.core.artifacts.publishing import publish_bundle, sign_bundle, write_bundle
from tango2_ros.core.artifacts.releases import export_release, find_releases, import_releases
from tango2_ros.core.artifacts.signing import TrustStore, generate_keypair
from tango2_ros.core.artifacts.stores import ArtifactError, LocalStore
from tango2_ros.paths import releases_dir


@pytest.fixture
def built(tmp_path):
    """A version published by a 'builder' machine, exported into a releases folder, and a fresh machine's key."""
    generate_keypair(tmp_path / "builder.key", tmp_path / "builder.pub")
    builder_trust = TrustStore(tmp_path / "builder-trusted")
    builder_trust.trust(tmp_path / "builder.pub")
    model = make_model_file(tmp_path / "src" / "tiny.gguf", 64 * 1024, 3)
    write_bundle(tmp_path / "bundle", [model], name="tiny-llm", version="1.1.0-lora", task="llm", format="gguf",
                 quantization="f16")
    sign_bundle(tmp_path / "bundle", tmp_path / "builder.key")
    builder_store = LocalStore(tmp_path / "builder-store")
    publish_bundle(builder_store, tmp_path / "bundle", builder_trust)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.md").write_text("# build report\n")
    pulled = ArtifactCache(tmp_path / "cache", builder_trust).pull(builder_store, "tiny-llm", "1.1.0-lora")
    root = tmp_path / "releases"
    export_release(pulled.folder, root, ["best-edge"], "tango2 build recipes/tiny/recipe.yaml", tmp_path / "report")
    generate_keypair(tmp_path / "local.key", tmp_path / "local.pub")
    trust = TrustStore(tmp_path / "trusted")
    trust.trust(tmp_path / "local.pub")
    return {"root": root, "trust": trust, "key": tmp_path / "local.key", "store": LocalStore(tmp_path / "store"),
            "folder": root / "tiny-llm" / "1.1.0-lora"}


def test_a_release_is_published_signed_here_and_tagged_once(built):
    assert (built["folder"] / "report.md").is_file()
    assert json.loads((built["folder"] / "release.json").read_text())["tags"] == ["best-edge"]
    store = built["store"]
    assert import_releases(built["root"], store, built["trust"], built["key"]) == [("tiny-llm@1.1.0-lora", True)]
    assert store.tags("tiny-llm") == {"best-edge": "1.1.0-lora"}
    assert import_releases(built["root"], store, built["trust"], built["key"]) == [("tiny-llm@1.1.0-lora", False)]
    pulled = ArtifactCache(built["root"].parent / "fresh-cache", built["trust"]).pull(store, "tiny-llm", "best-edge")
    assert pulled.manifest.version == "1.1.0-lora"


def test_a_local_build_of_the_same_version_is_kept_and_said(built):
    bundle = built["root"].parent / "local-build"
    write_bundle(bundle, [make_model_file(built["root"].parent / "other" / "tiny.gguf", 64 * 1024, 7)],
                 name="tiny-llm", version="1.1.0-lora", task="llm", format="gguf", quantization="f16")
    sign_bundle(bundle, built["key"])
    publish_bundle(built["store"], bundle, built["trust"])
    warnings = []
    assert import_releases(built["root"], built["store"], built["trust"], built["key"], warnings.append) == [
        ("tiny-llm@1.1.0-lora", False)]
    assert "its own build of that version" in warnings[0]


def test_exporting_the_same_version_twice_is_refused(built, tmp_path):
    with pytest.raises(ArtifactError, match="immutable"):
        export_release(built["folder"], built["root"], [], "x")


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "tiny.gguf").write_bytes(b"GGUF" + bytes(100)), "tiny.gguf has"),
    (lambda f: (f / "tiny.gguf").unlink(), "tiny.gguf is missing"),
    (lambda f: (f / "release.json").unlink(), "release.json"),
    (lambda f: (f / "release.json").write_text('{"tags": [1]}'), "list of tags"),
    (lambda f: (f / "manifest.json").write_text("{"), "not JSON"),
    (lambda f: shutil.move(f, f.parent / "9.9.9"), "expected in tiny-llm/1.1.0-lora"),
])
def test_a_damaged_release_is_refused_and_nothing_is_published(built, damage, message):
    # a second, intact release must not be published either: all are verified first
    shutil.copytree(built["folder"].parent, built["root"] / "aaa-first")
    (built["root"] / "aaa-first" / "1.1.0-lora" / "manifest.json").write_bytes(
        (built["folder"] / "manifest.json").read_bytes().replace(b'"tiny-llm"', b'"aaa-first"'))
    damage(built["folder"])
    with pytest.raises(ArtifactError, match=message.replace("(", r"\(")):
        import_releases(built["root"], built["store"], built["trust"], built["key"])
    assert built["store"].names() == []


def test_every_release_in_the_repository_verifies_loads_and_passes_its_recipes_gate():
    from pathlib import Path

    from tango2_ros.builder.recipe import load_recipe
    from tango2_ros.cli.model_files import model_file
    from tango2_ros.core.runtime.llm import LlmOptions, LlmRuntime
    from tango2_ros.core.runtime.onnx import OnnxRuntime

    releases = find_releases(releases_dir())
    assert releases, "the repository ships its trained releases"
    for release in releases:
        command = release.rebuild.split()
        assert command[0] == "tango2" and command[1] in ("build", "learn"), release.reference
        recipe = load_recipe(Path(releases_dir()).parents[1] / command[2])
        assert recipe.name == release.manifest.name
        assert release.manifest.metrics[recipe.metric] >= recipe.min_metric, release.manifest.metrics
        primary = release.folder / release.manifest.primary_file.path
        if release.manifest.format == "onnx":
            runtime = OnnxRuntime(primary, threads=1)
            assert runtime.health_check(budget_s=30.0).ok
        elif release.manifest.kind == "adapter":  # a LoRA on a base model that set-up imports from PyPI
            base, _, _ = model_file(release.manifest.adapter_base)
            runtime = LlmRuntime(base, LlmOptions(n_threads=1, n_parallel=1, n_ctx_per_seq=512, lora_path=str(primary)))
            try:
                assert runtime.health_check(budget_s=60.0).ok
            finally:
                runtime.close()
        else:
            raise AssertionError(f"{release.reference}: no load check for a {release.manifest.format} model")
