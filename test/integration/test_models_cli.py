"""`tango2 models ...` as a user runs it: keys, import, sign, verify, list, inspect, pull, push (to a real OCI
registry), and clear one-line errors for bad input."""
import json
import os
import subprocess
import sys

import pytest

from helpers.servers import make_model_file, oci_registry

TANGO2 = [sys.executable, "-m", "tango2_ros.cli", "models"]


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """A private models/ folder (store, cache, keys) for the commands under test."""
    monkeypatch.setenv("TANGO2_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("TANGO2_MODEL_STORE", raising=False)
    return tmp_path / "models"


def models(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*TANGO2, *args], capture_output=True, text=True, timeout=120, env=os.environ.copy())
    if check:
        assert result.returncode == 0, result.stderr
    return result


def as_json(*args: str) -> dict:
    return json.loads(models(*args, "--json").stdout)


def user_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip()
    assert line.startswith("tango2: error:") and "\n" not in line, result.stderr
    for word in words:
        assert word in line, line


def test_keygen_import_list_inspect_pull_verify(models_dir, tmp_path):
    key = as_json("keygen", "--trust")
    assert key["created"] and (models_dir / "keys" / "trusted" / "local.pub").is_file()
    assert not as_json("keygen", "--if-missing")["created"]
    model = make_model_file(tmp_path / "tiny.gguf", 300_000)
    imported = as_json("import", str(model), "--name", "tiny", "--version", "0.1.0", "--task", "llm",
                       "--quantization", "q8_0")
    assert imported["published"] and imported["key_id"] == key["key_id"]
    again = as_json("import", str(model), "--name", "tiny", "--version", "0.1.0", "--task", "llm", "--quantization", "q8_0")
    assert not again["published"]  # the same file again is already there
    listing = as_json("list")
    assert listing["models"]["tiny"]["versions"] == ["0.1.0"] and listing["models"]["tiny"]["cached"] == []
    manifest = as_json("inspect", "tiny")["manifest"]
    assert manifest["quantization"] == "q8_0" and manifest["files"][0]["size"] == 300_000
    pulled = as_json("pull", "tiny@0.1.0")
    assert pulled["bytes_downloaded"] == 300_000 and pulled["path"].endswith("tiny.gguf")
    verified = as_json("verify", "tiny@0.1.0")
    assert verified["ok"] and verified["key_name"] == "local"
    # one byte changed in the cached copy: verify fails with exit 1 and says what
    cached = tmp_path / "models" / "cache" / "tiny" / "0.1.0" / "tiny.gguf"
    data = bytearray(cached.read_bytes())
    data[-1] ^= 1
    cached.write_bytes(bytes(data))
    broken = models("verify", "tiny@0.1.0", check=False)
    assert broken.returncode == 1 and "corrupted or tampered" in broken.stdout


def test_sign_and_push_a_bundle_folder_to_an_oci_registry_and_pull_it_back(models_dir, tmp_path):
    models("keygen", "--trust")
    from tango2_ros.core.artifacts.publishing import write_bundle

    bundle = tmp_path / "bundle"
    write_bundle(bundle, [make_model_file(tmp_path / "tiny.gguf", 200_000)], name="tiny", version="1.0.0",
                 task="llm", format="gguf", quantization="f16")
    user_error(models("push", str(bundle), check=False), "unsigned")
    assert as_json("sign", str(bundle))["key_id"]
    with oci_registry(tmp_path / "registry") as host:
        store = f"oci://{host}/fleet"
        pushed = as_json("push", str(bundle), "--store", store, "--tag", "best-edge-cpu-2c-4gb")
        assert pushed["published"]
        assert as_json("list", "--store", store)["models"]["tiny"]["tags"] == {"best-edge-cpu-2c-4gb": "1.0.0"}
        pulled = as_json("pull", "tiny@best-edge-cpu-2c-4gb", "--store", store)
        assert pulled["bytes_downloaded"] == 200_000
        # copy between stores: from the OCI registry into the local one
        copied = as_json("push", "tiny@1.0.0", "--from", store)
        assert copied["published"] and as_json("list")["models"]["tiny"]["versions"] == ["1.0.0"]


@pytest.mark.parametrize("args, words", [
    (["inspect", "nothing-here"], ["'nothing-here' is not in"]),
    (["pull", "tiny@9.9.9"], ["not in"]),
    (["pull", "BAD NAME"], ["invalid model name"]),
    (["list", "--store", "oci://127.0.0.1:1/x"], ["unreachable"]),
    (["list", "--store", "http://127.0.0.1:1"], ["unreachable"]),
    (["import", "/nonexistent.gguf", "--name", "a", "--version", "1.0.0", "--task", "llm", "--quantization", "f16"],
     ["is not a file"]),
    (["sign", "/nonexistent"], ["manifest"]),
    (["push", "tiny@1.0.0"], ["--from"]),
    (["verify", "ghost@1.0.0"], ["neither a bundle folder nor in the cache"]),
])
def test_bad_input_is_one_line_and_exit_code_2(models_dir, args, words):
    user_error(models(*args, check=False), *words)


def test_import_refuses_an_unknown_format_and_a_bad_version(models_dir, tmp_path):
    models("keygen", "--trust")
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0" * 100)
    user_error(models("import", str(weights), "--name", "a", "--version", "1.0.0", "--task", "llm",
                      "--quantization", "f16", check=False), "unknown model format")
    model = make_model_file(tmp_path / "m.gguf", 1000)
    user_error(models("import", str(model), "--name", "a", "--version", "v1", "--task", "llm", "--quantization", "f16",
                      check=False), "not a semantic version")


def test_keygen_never_overwrites_a_key(models_dir):
    models("keygen")
    user_error(models("keygen", check=False), "refusing to overwrite")
