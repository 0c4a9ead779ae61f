"""Model registries for tests and benchmarks: a local store with keys, built from real model files."""
from __future__ import annotations

from pathlib import Path

from tango2_ros.core.artifacts.publishing import publish_bundle, sign_bundle, write_bundle
from tango2_ros.core.artifacts.signing import TrustStore, generate_keypair
from tango2_ros.core.artifacts.stores import LocalStore


def make_keys(root: Path, *names: str, trusted: tuple[str, ...] = ("fleet",)) -> TrustStore:
    """Key pairs under root/keys; the `trusted` ones go into root/keys/trusted (what the manager accepts)."""
    for name in names:
        generate_keypair(root / "keys" / f"{name}.key", root / "keys" / f"{name}.pub")
    trust = TrustStore(root / "keys" / "trusted")
    for name in trusted:
        trust.trust(root / "keys" / f"{name}.pub")
    return trust


def publish(root: Path, name: str, version: str, source: Path | list[Path], key: str = "fleet",
            trust: TrustStore | None = None, quantization: str = "q4_1", **fields) -> None:
    """Bundle the model file (or files: a VLM bundle's, with task and format in `fields`), sign it with
    root/keys/<key>.key and publish it to root/store."""
    folder = root / "bundles" / f"{name}-{version}"
    fields = {"task": "llm", "format": "gguf", **fields}
    write_bundle(folder, source if isinstance(source, list) else [source], name=name, version=version,
                 quantization=quantization, **fields)
    sign_bundle(folder, root / "keys" / f"{key}.key")
    publish_bundle(LocalStore(root / "store"), folder, trust or TrustStore(root / "keys" / "trusted"))


def manager_arguments(root: Path, namespace: str, model: str, **parameters) -> list[str]:
    """`python -m` arguments for a model_manager named `models` in `namespace` serving one `llm` slot."""
    params = {"store": str(root / "store"), "cache_dir": str(root / "cache"),
              "trusted_keys_dir": str(root / "keys" / "trusted"), "slots": "[llm]", "llm.model": model,
              "llm.node": f"{namespace}/llm_node", **parameters}
    args = ["-m", "tango2_ros.nodes.model_manager", "--ros-args", "-r", "__node:=models", "-r", f"__ns:={namespace}"]
    for key, value in params.items():
        args += ["-p", f"{key}:={value}"]
    return args


def llm_arguments(namespace: str, *extra: str) -> list[str]:
    return ["-m", "tango2_ros.nodes.llm_node", "--ros-args", "-r", "__node:=llm_node", "-r", f"__ns:={namespace}",
            *[item for parameter in extra for item in ("-p", parameter)]]


def shadow_llm_arguments(namespace: str, reference: str, n_ctx_per_seq: int) -> list[str]:
    """An llm_node `llm_shadow` serving the registry model `reference` on `llm_shadow/generate`, one sequence at
    `nice` 10: a candidate in shadow beside the serving llm_node."""
    from tango2_ros.cli.model_files import model_files

    path, adapter, name, version = model_files(reference)
    return ["-m", "tango2_ros.nodes.llm_node", "--ros-args", "-r", "__node:=llm_shadow", "-r", f"__ns:={namespace}",
            "-r", "llm/generate:=llm_shadow/generate", "-p", "n_parallel:=1", "-p", f"n_ctx_per_seq:={n_ctx_per_seq}",
            "-p", "nice:=10", "-p", f"model_path:={path}", "-p", f"lora_path:={adapter or ''}",
            "-p", f"model_name:={name}", "-p", f"model_version:={version}"]


def make_lora_adapter(path: Path, rank: int = 2, seed: int = 0) -> Path:
    """A real GGUF LoRA adapter for SmolLM2-135M (one attention matrix of the first layer), written directly with
    the `gguf` package, so registry tests need no fine-tuning run."""
    import numpy as np
    from gguf import GGUFWriter

    rng = np.random.default_rng(seed)
    writer = GGUFWriter(str(path), arch="llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))
    writer.add_tensor("blk.0.attn_q.weight.lora_a", rng.normal(0, 0.01, (rank, 576)).astype(np.float32))
    writer.add_tensor("blk.0.attn_q.weight.lora_b", rng.normal(0, 0.01, (576, rank)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
