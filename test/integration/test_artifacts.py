"""Artifacts end to end without ROS: manifests, signatures, the three stores (local folder, a real HTTP server,
a real OCI registry on loopback), the verified pull cache and its faults."""
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from helpers.servers import http_file_server, make_model_file, oci_registry
from tango2_ros.core.artifacts.cache import MANIFEST_FILE, SIGNATURE_FILE, ArtifactCache, VerificationError, verify_folder
from tango2_ros.core.artifacts.manifest import Manifest, ManifestError, semver_key
from tango2_ros.core.artifacts.publishing import publish_bundle, sign_bundle, write_bundle
from tango2_ros.core.artifacts.signing import TrustStore, generate_keypair
from tango2_ros.core.artifacts.stores import (
    ArtifactError, ArtifactNotFound, DiskFull, LocalStore, OciStore, StoreUnavailable, open_store,
)

MIB = 1 << 20


@pytest.fixture
def keys(tmp_path):
    """A trusted key and a key nobody trusts."""
    trusted_dir = tmp_path / "trusted"
    generate_keypair(tmp_path / "good.key", tmp_path / "good.pub")
    generate_keypair(tmp_path / "rogue.key", tmp_path / "rogue.pub")
    trust = TrustStore(trusted_dir)
    trust.trust(tmp_path / "good.pub")
    return {"trust": trust, "good": tmp_path / "good.key", "rogue": tmp_path / "rogue.key"}


def bundle(folder: Path, version: str, key: Path | None, size: int = 256 * 1024, seed: int = 1, name: str = "tiny-llm") -> Path:
    model = make_model_file(folder / "src" / f"{name}-{version}.gguf", size, seed)
    write_bundle(folder / "bundle", [model], name=name, version=version, task="llm", format="gguf", quantization="q4_0")
    if key:
        sign_bundle(folder / "bundle", key)
    return folder / "bundle"


def published_store(tmp_path, keys, versions=("1.0.0",), size=256 * 1024) -> LocalStore:
    store = LocalStore(tmp_path / "store")
    for index, version in enumerate(versions):
        publish_bundle(store, bundle(tmp_path / f"b{index}", version, keys["good"], size, seed=index + 1), keys["trust"])
    return store


# -- manifests ---------------------------------------------------------------------------------------------------
def test_manifest_round_trips_and_its_digest_is_its_identity(tmp_path, keys):
    folder = bundle(tmp_path, "1.2.3", keys["good"])
    raw = (folder / MANIFEST_FILE).read_bytes()
    manifest = Manifest.from_bytes(raw)
    assert manifest.to_bytes() == raw
    assert manifest.reference == "tiny-llm@1.2.3" and manifest.primary_file.path == "tiny-llm-1.2.3.gguf"
    assert manifest.digest().startswith("sha256:") and replace(manifest, description="x").digest() != manifest.digest()


@pytest.mark.parametrize("change, message", [
    ({"format": "safetensors"}, "unknown format"),
    ({"version": "1.0"}, "not a semantic version"),
    ({"name": "../etc"}, "model name"),
    ({"quantization": "q3_xs"}, "unknown quantization"),
    ({"files": [{"path": "../x.gguf", "sha256": "0" * 64, "size": 1}]}, "relative path inside"),
    ({"files": [{"path": "x.gguf", "sha256": "abc", "size": 1}]}, "64 lower-case hex"),
    ({"files": []}, "non-empty list"),
    ({"metrics": {"acc": "high"}}, "map names to numbers"),
    ({"surprise": 1}, "unknown manifest field"),
    ({"kind": "adapter"}, "adapter_base"),
])
def test_malformed_manifests_are_refused_with_the_field_named(tmp_path, keys, change, message):
    data = json.loads((bundle(tmp_path, "1.0.0", None) / MANIFEST_FILE).read_bytes())
    data.update(change)
    with pytest.raises(ManifestError, match=message):
        Manifest.from_dict(data)


def test_not_json_and_not_an_object_are_refused():
    with pytest.raises(ManifestError, match="not JSON"):
        Manifest.from_bytes(b"\xff{")
    with pytest.raises(ManifestError, match="JSON object"):
        Manifest.from_bytes(b"[1]")


def test_semver_order_puts_releases_above_prereleases():
    versions = ["1.0.0", "1.0.0-rc.1", "0.9.10", "0.9.9", "1.0.0-rc.10", "1.0.0-beta"]
    assert sorted(versions, key=semver_key) == ["0.9.9", "0.9.10", "1.0.0-beta", "1.0.0-rc.1", "1.0.0-rc.10", "1.0.0"]


# -- signatures and file checks ------------------------------------------------------------------------------------
def test_a_signed_bundle_verifies_and_names_its_signer(tmp_path, keys):
    manifest, signer = verify_folder(bundle(tmp_path, "1.0.0", keys["good"]), keys["trust"])
    assert manifest.reference == "tiny-llm@1.0.0" and signer.key_name == "good"


def test_unsigned_untrusted_and_tampered_bundles_are_refused(tmp_path, keys):
    unsigned = bundle(tmp_path / "u", "1.0.0", None)
    with pytest.raises(VerificationError, match="unsigned"):
        verify_folder(unsigned, keys["trust"])
    assert verify_folder(unsigned, keys["trust"], require_signature=False)[1] is None  # opt-in only

    with pytest.raises(VerificationError, match="untrusted key"):
        verify_folder(bundle(tmp_path / "r", "1.0.0", keys["rogue"]), keys["trust"])

    tampered = bundle(tmp_path / "t", "1.0.0", keys["good"])
    manifest_path = tampered / MANIFEST_FILE
    manifest_path.write_bytes(manifest_path.read_bytes().replace(b'"description":""', b'"description":"x"'))
    with pytest.raises(VerificationError, match="does not match the manifest"):
        verify_folder(tampered, keys["trust"])

    garbage = bundle(tmp_path / "g", "1.0.0", keys["good"])
    (garbage / SIGNATURE_FILE).write_text("{not json")
    with pytest.raises(VerificationError, match="malformed signature"):
        verify_folder(garbage, keys["trust"])


def test_one_changed_byte_in_a_model_file_is_caught(tmp_path, keys):
    folder = bundle(tmp_path, "1.0.0", keys["good"])
    model = folder / "tiny-llm-1.0.0.gguf"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="corrupted or tampered"):
        verify_folder(folder, keys["trust"])


def test_a_file_that_is_not_what_the_format_says_is_refused(tmp_path, keys):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ManifestError, match="not a GGUF file"):
        write_bundle(tmp_path / "b", [fake], name="fake", version="1.0.0", task="llm", format="gguf", quantization="f16")


def test_signing_keys_are_private_and_never_overwritten(tmp_path):
    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")


# -- local store -------------------------------------------------------------------------------------------------
def test_local_store_resolves_latest_tags_and_keeps_versions_immutable(tmp_path, keys):
    store = published_store(tmp_path, keys, ("1.0.0", "1.1.0", "2.0.0-rc.1"))
    assert store.names() == ["tiny-llm"]
    assert store.versions("tiny-llm") == ["1.0.0", "1.1.0", "2.0.0-rc.1"]
    assert store.resolve("tiny-llm") == "1.1.0"  # releases before pre-releases
    store.set_tag("tiny-llm", "best-edge-cpu-2c-4gb", "1.0.0")
    assert store.resolve("tiny-llm", "best-edge-cpu-2c-4gb") == "1.0.0"
    with pytest.raises(ArtifactNotFound, match="versions: 1.0.0, 1.1.0"):
        store.resolve("tiny-llm", "9.9.9")
    with pytest.raises(ArtifactNotFound):
        store.resolve("no-such-model")
    with pytest.raises(ArtifactNotFound, match="invalid model name"):
        store.versions("../../etc")
    # publishing other bytes under an existing version is refused; the same bytes again are a no-op
    with pytest.raises(ArtifactError, match="immutable"):
        publish_bundle(store, bundle(tmp_path / "again", "1.0.0", keys["good"], seed=99), keys["trust"])
    _, new = publish_bundle(store, bundle(tmp_path / "same", "1.0.0", keys["good"], seed=1), keys["trust"])
    assert new is False


def test_pull_verifies_renames_atomically_and_serves_from_cache(tmp_path, keys):
    store = published_store(tmp_path, keys)
    cache = ArtifactCache(tmp_path / "cache", keys["trust"])
    seen = []
    first = cache.pull(store, "tiny-llm", progress=lambda done, total: seen.append((done, total)))
    assert not first.from_cache and first.bytes_downloaded == first.manifest.total_size
    assert first.primary_path.read_bytes()[:4] == b"GGUF" and seen[-1][0] == seen[-1][1]
    assert not any((tmp_path / "cache" / ".incoming").iterdir())
    again = cache.pull(store, "tiny-llm", "1.0.0")
    assert again.from_cache and again.bytes_downloaded == 0


def test_a_corrupted_blob_in_the_store_never_reaches_the_cache(tmp_path, keys):
    store = published_store(tmp_path, keys)
    manifest = Manifest.from_bytes((tmp_path / "b0" / "bundle" / MANIFEST_FILE).read_bytes())
    blob = tmp_path / "store" / "blobs" / "sha256" / manifest.files[0].sha256
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    blob.write_bytes(bytes(data))
    cache = ArtifactCache(tmp_path / "cache", keys["trust"])
    with pytest.raises(VerificationError, match="corrupted or tampered"):
        cache.pull(store, "tiny-llm")
    assert cache.cached_versions("tiny-llm") == []
    assert not (tmp_path / "cache" / ".incoming" / "tiny-llm@1.0.0").exists()  # not resumed from bad bytes


def test_untrusted_artifacts_are_refused_before_any_file_is_downloaded(tmp_path, keys):
    store = LocalStore(tmp_path / "store")
    rogue_trust = TrustStore(tmp_path / "rogue-trusted")
    rogue_trust.trust(tmp_path / "rogue.pub")
    publish_bundle(store, bundle(tmp_path, "1.0.0", keys["rogue"]), rogue_trust)
    cache = ArtifactCache(tmp_path / "cache", keys["trust"])
    with pytest.raises(VerificationError, match="untrusted key"):
        cache.pull(store, "tiny-llm")
    assert not (tmp_path / "cache" / ".incoming" / "tiny-llm@1.0.0").exists()


def test_cache_evicts_least_recently_used_versions_beyond_its_limit(tmp_path, keys):
    store = published_store(tmp_path, keys, ("1.0.0", "1.1.0", "1.2.0"), size=MIB)
    cache = ArtifactCache(tmp_path / "cache", keys["trust"], max_bytes=int(2.5 * MIB))
    cache.pull(store, "tiny-llm", "1.0.0")
    cache.pull(store, "tiny-llm", "1.1.0")
    cache.pull(store, "tiny-llm", "1.0.0")  # used again: now 1.1.0 is the least recent
    cache.pull(store, "tiny-llm", "1.2.0")
    assert cache.cached_versions("tiny-llm") == ["1.0.0", "1.2.0"]


def test_disk_full_during_a_pull_cleans_up_and_says_so(tmp_path, keys):
    """A real write failure: the pull runs in a child process whose file size limit is below the model's size."""
    published_store(tmp_path, keys, size=4 * MIB)
    script = f"""
import resource, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({MIB}, {MIB}))
from pathlib import Path
from tango2_ros.core.artifacts.cache import ArtifactCache
from tango2_ros.core.artifacts.signing import TrustStore
from tango2_ros.core.artifacts.stores import DiskFull, LocalStore
try:
    ArtifactCache(Path({str(tmp_path / 'cache')!r}), TrustStore(Path({str(tmp_path / 'trusted')!r}))).pull(
        LocalStore(Path({str(tmp_path / 'store')!r})), "tiny-llm")
except DiskFull as exc:
    print("DiskFull:", exc)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "DiskFull: no space left while writing tiny-llm-1.0.0.gguf" in result.stdout, result.stderr
    assert not (tmp_path / "cache" / ".incoming" / "tiny-llm@1.0.0").exists()
    assert not (tmp_path / "cache" / "tiny-llm").exists()


def test_a_pull_that_cannot_fit_is_refused_before_downloading(tmp_path, keys, monkeypatch):
    store = published_store(tmp_path, keys)
    import shutil as shutil_module

    real = shutil_module.disk_usage
    monkeypatch.setattr("tango2_ros.core.artifacts.cache.shutil.disk_usage",
                        lambda path: real(path)._replace(free=1000))
    with pytest.raises(DiskFull, match="MiB free"):
        ArtifactCache(tmp_path / "cache", keys["trust"]).pull(store, "tiny-llm")


# -- HTTP store ----------------------------------------------------------------------------------------------------
def test_http_store_pulls_resumes_after_a_broken_connection_and_works_offline(tmp_path, keys):
    published_store(tmp_path, keys, ("1.0.0", "1.1.0"), size=2 * MIB)
    cache = ArtifactCache(tmp_path / "cache", keys["trust"])
    with http_file_server(tmp_path / "store") as server:
        store = open_store(server.url)
        assert store.versions("tiny-llm") == ["1.0.0", "1.1.0"] and not store.writable
        server.cut_after_bytes = MIB // 2
        with pytest.raises(StoreUnavailable, match="interrupted"):
            cache.pull(store, "tiny-llm", "1.1.0")
        partial = tmp_path / "cache" / ".incoming" / "tiny-llm@1.1.0" / "tiny-llm-1.1.0.gguf"
        kept = partial.stat().st_size
        assert MIB // 4 <= kept <= MIB // 2  # what arrived before the cut, less at most one chunk
        resumed = cache.pull(store, "tiny-llm", "1.1.0")
        assert resumed.bytes_downloaded == 2 * MIB - kept  # only the rest travelled
        assert verify_folder(resumed.folder, keys["trust"])[0].version == "1.1.0"
        with pytest.raises(ArtifactError, match="read-only"):
            store.publish(b"", None, tmp_path, "tiny-llm", "3.0.0", [])
    # the server is gone: the cache answers, and says so
    offline = cache.pull(open_store(server.url), "tiny-llm")
    assert offline.offline and offline.manifest.version == "1.1.0"
    with pytest.raises(StoreUnavailable, match="not in the cache"):
        cache.pull(open_store(server.url), "tiny-llm", "1.0.0")


# -- OCI registry --------------------------------------------------------------------------------------------------
def test_oci_registry_push_list_tag_pull_and_resume(tmp_path, keys):
    with oci_registry(tmp_path / "registry") as host:
        store = open_store(f"oci://{host}/tango2")
        assert isinstance(store, OciStore)
        for index, version in enumerate(("1.0.0", "1.1.0")):
            record, new = publish_bundle(store, bundle(tmp_path / f"o{index}", version, keys["good"], 2 * MIB, index + 1),
                                         keys["trust"])
            assert new and record.signature_digest
        assert store.names() == ["tiny-llm"] and store.versions("tiny-llm") == ["1.0.0", "1.1.0"]
        with pytest.raises(ArtifactError, match="immutable"):
            publish_bundle(store, bundle(tmp_path / "o9", "1.0.0", keys["good"], MIB, 9), keys["trust"])
        store.set_tag("tiny-llm", "best-edge-cpu-2c-4gb", "1.0.0")
        assert store.tags("tiny-llm") == {"best-edge-cpu-2c-4gb": "1.0.0"}

        cache = ArtifactCache(tmp_path / "cache", keys["trust"])
        incoming = tmp_path / "cache" / ".incoming" / "tiny-llm@1.1.0"
        incoming.mkdir(parents=True)
        source = tmp_path / "o1" / "bundle" / "tiny-llm-1.1.0.gguf"
        (incoming / source.name).write_bytes(source.read_bytes()[:MIB])  # an earlier pull stopped half-way
        pulled = cache.pull(store, "tiny-llm")
        assert pulled.manifest.version == "1.1.0" and pulled.bytes_downloaded == MIB
        assert pulled.primary_path.read_bytes() == source.read_bytes()
        assert cache.pull(store, "tiny-llm", "best-edge-cpu-2c-4gb").manifest.version == "1.0.0"
    with pytest.raises(StoreUnavailable, match="unreachable"):
        open_store(f"oci://{host}/tango2").versions("tiny-llm")


def test_malformed_store_locations_and_index_files_give_clear_errors(tmp_path):
    with pytest.raises(ArtifactError, match="oci://host:port/prefix"):
        open_store("oci:///nohost")
    (tmp_path / "index.json").write_text("{broken")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        LocalStore(tmp_path).names()
