"""LoRA fine-tuning of a GGUF base model with transformers + peft (CPU for small models, CUDA when asked).

The GGUF is loaded into transformers (de-quantised to float32), LoRA matrices are trained on the recipe's
chats with the loss on the assistant's answers only, then exported both merged (a full model) and alone (an
adapter). Imports of torch/transformers/peft stay inside the functions: the rest of TANGO2 runs without them.

With `workers` > 1 the training is data-parallel through torch.distributed (DistributedDataParallel; gloo on CPU,
NCCL on CUDA with one GPU per worker), each worker taking its share of every batch, their gradients averaged at
each step, so all of them hold the same LoRA weights; rank 0's are exported. The workers are processes on this
machine, or, given a Ray cluster, Ray actors wherever the cluster places them (rank 0's node is the rendezvous;
every node needs the base model at the same path).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tango2_ros.builder.dataset import Example
from tango2_ros.builder.gguf_export import export_lora, export_model, lora_state, read_lora
from tango2_ros.builder.recipe import FinetuneConfig


@dataclass
class FinetuneResult:
    merged_gguf: Path | None  # None when not asked for (nothing is quantised from it)
    adapter_gguf: Path
    losses: list[float]
    seconds: float


def _batches(tokenizer, examples: list[Example], batch_size: int, steps: int, seed: int, rank: int = 0,
             world: int = 1):
    """Token ids and labels with everything but the answers masked (-100), cycling through shuffled examples; a
    data-parallel worker `rank` of `world` takes rows rank, rank + world, ... of every batch."""
    import torch

    encoded = []
    for example in examples:
        prompt = tokenizer.apply_chat_template(example.prompt, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(example.as_chat(), tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        labels = [-100] * len(prompt_ids) + full_ids[len(prompt_ids):]
        encoded.append((full_ids, labels))
    rng = random.Random(seed)
    order: list[int] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for _ in range(steps):
        batch = []
        for _ in range(min(batch_size, len(encoded))):
            if not order:
                order = _length_grouped(encoded, batch_size, rng)
            batch.append(encoded[order.pop()])
        batch = batch[rank::world]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        yield ids, labels, mask


def _length_grouped(encoded: list, batch_size: int, rng: random.Random) -> list[int]:
    """One epoch's order, shuffled, with examples of similar length next to each other (in windows of a few
    batches) so that a batch pads little: on a CPU the padding is paid in full."""
    order = list(range(len(encoded)))
    rng.shuffle(order)
    window = batch_size * 8
    grouped = []
    for start in range(0, len(order), window):
        grouped += sorted(order[start:start + window], key=lambda i: len(encoded[i][0]))
    batches = [grouped[i:i + batch_size] for i in range(0, len(grouped), batch_size)]
    rng.shuffle(batches)
    return [i for batch in reversed(batches) for i in reversed(batch)]


def _bfloat16(precision: str, device: str) -> bool:
    """Whether to train under bfloat16 autocast: asked for, or `auto` on hardware with native bfloat16 (elsewhere
    it is emulated and slower than float32)."""
    if precision != "auto":
        return precision == "bfloat16"
    if device.startswith("cuda"):
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def finetune(base_gguf: Path, examples: list[Example], config: FinetuneConfig, out_dir: Path, device: str = "cpu",
             progress: Callable[[int, int, float], None] | None = None, cluster: str = "",
             merged: bool = True) -> FinetuneResult:
    """Train the LoRA; export it as a GGUF adapter and, with `merged`, the base with it merged as a GGUF F16 (the
    source of quantised candidates: 270 MB for SmolLM2-135M, not written when only the adapter ships)."""
    started = time.monotonic()
    if config.workers > 1 or cluster:
        trained, losses = _data_parallel(base_gguf, examples, config, device, cluster)
        _tokenizer, peft_model = _load(base_gguf, config, "cpu")
        if peft_model.load_state_dict(trained, strict=False).unexpected_keys:
            raise RuntimeError("the workers' LoRA weights do not fit the model")
    else:
        tokenizer, peft_model = _load(base_gguf, config, device)
        losses = _train(peft_model, tokenizer, examples, config, device, progress)
    peft_model.eval()
    peft_model.to("cpu")
    out_dir.mkdir(parents=True, exist_ok=True)
    adapter = out_dir / "adapter-lora.gguf"
    export_lora(peft_model, config.alpha, adapter)
    merged_path = out_dir / "merged-f16.gguf" if merged else None
    if merged_path:
        export_model(peft_model.merge_and_unload(), base_gguf, merged_path)
    return FinetuneResult(merged_path, adapter, losses, time.monotonic() - started)


def _load(base_gguf: Path, config: FinetuneConfig, device: str):
    """The tokenizer, and the base model with fresh LoRA matrices (seeded: every worker starts from the same), or
    with those of `config.start_adapter`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base_gguf.parent), gguf_file=base_gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(base_gguf.parent), gguf_file=base_gguf.name, dtype=torch.float32)
    model.to(device)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0,
                      target_modules=list(config.target_modules))
    peft_model = get_peft_model(model, lora)
    if config.start_adapter:
        adapter = read_lora(Path(config.start_adapter))
        if adapter.alpha != config.alpha:
            raise ValueError(f"the adapter {config.start_adapter} has alpha {adapter.alpha:g}, the fine-tune "
                             f"{config.alpha:g}")
        peft_model.load_state_dict(lora_state(peft_model, adapter), strict=False)
    return tokenizer, peft_model


def _train(model, tokenizer, examples: list[Example], config: FinetuneConfig, device: str,
           progress: Callable[[int, int, float], None] | None = None, rank: int = 0, world: int = 1) -> list[float]:
    """The training loop; `model` is the peft model or its DistributedDataParallel wrapper. The losses: this
    worker's share of each batch."""
    import torch

    steps = TrainingSteps([p for p in model.parameters() if p.requires_grad], config.learning_rate, config.steps,
                          progress)
    autocast = _bfloat16(config.precision, device)
    model.train()
    for ids, labels, mask in _batches(tokenizer, examples, config.batch_size, config.steps, config.seed, rank, world):
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
        steps.take(loss)
    return steps.losses


class TrainingSteps:
    """AdamW over `parameters` for `steps` steps, the learning rate falling linearly to a tenth over the run (the
    last steps settle instead of jumping about); `take(loss)` is one step, its loss kept and reported."""

    def __init__(self, parameters, learning_rate: float, steps: int,
                 progress: Callable[[int, int, float], None] | None = None) -> None:
        import torch

        self.optimizer = torch.optim.AdamW(parameters, lr=learning_rate)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0 - 0.9 * step / max(steps, 1))
        self.steps, self.progress, self.losses = steps, progress, []

    def take(self, loss) -> None:
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad()
        self.losses.append(float(loss.item()))
        if self.progress:
            self.progress(len(self.losses), self.steps, self.losses[-1])


def _data_parallel(base_gguf: Path, examples: list[Example], config: FinetuneConfig, device: str,
                   cluster: str) -> tuple[dict, list]:
    """Train in `config.workers` workers; rank 0's LoRA weights and the mean of the workers' losses per step.
    The workers' final weights are compared: DDP keeps them equal, and a run where they differ is refused."""
    import torch

    world = config.workers
    if not cluster and device.startswith("cuda") and torch.cuda.device_count() < world:
        raise RuntimeError(f"{world} workers on CUDA need {world} GPUs; {torch.cuda.device_count()} found")
    ran = _on_ray(cluster, world, base_gguf, examples, config, device) if cluster else \
        _on_this_machine(world, base_gguf, examples, config, device)
    reports = [report for _, report in ran]
    if len({report["lora_sha256"] for report in reports}) != 1:
        raise RuntimeError("the data-parallel workers ended with different LoRA weights")
    losses = [sum(step) / world for step in zip(*(report["losses"] for report in reports))]
    return ran[0][0], losses


def _on_this_machine(world: int, base_gguf: Path, examples: list[Example], config: FinetuneConfig,
                     device: str) -> list[tuple[dict | None, dict]]:
    import torch
    import torch.multiprocessing as spawning

    from tango2_ros.core.net import free_port

    with tempfile.TemporaryDirectory(prefix="tango2-ddp-") as scratch:
        spawning.spawn(_spawned, args=(world, free_port(), base_gguf, examples, config, device, Path(scratch)),
                       nprocs=world, join=True)
        reports = [json.loads((Path(scratch) / f"rank{rank}.json").read_text()) for rank in range(world)]
        return [(torch.load(Path(scratch) / "lora.pt"), reports[0]), *((None, report) for report in reports[1:])]


def _spawned(rank: int, world: int, port: int, base_gguf: Path, examples: list[Example], config: FinetuneConfig,
             device: str, scratch: Path) -> None:
    """torch.multiprocessing.spawn's entry point: one worker, its results left in `scratch`."""
    import torch

    local = f"cuda:{rank}" if device.startswith("cuda") else device
    lora, report = _rank(rank, world, "127.0.0.1", port, base_gguf, examples, config, local)
    if lora is not None:
        torch.save(lora, scratch / "lora.pt")
    (scratch / f"rank{rank}.json").write_text(json.dumps(report))


def _on_ray(cluster: str, world: int, base_gguf: Path, examples: list[Example], config: FinetuneConfig,
            device: str) -> list[tuple[dict | None, dict]]:
    from tango2_ros.builder.sweep import connect

    ray = connect(cluster)
    try:
        cuda = device.startswith("cuda")
        worker = ray.remote(num_cpus=1, num_gpus=1 if cuda else 0)(_RayWorker)
        workers = [worker.remote() for _ in range(world)]
        address, port = ray.get(workers[0].rendezvous.remote())
        return ray.get([w.train.remote(rank, world, address, port, base_gguf, examples, config,
                                       "cuda:0" if cuda else device) for rank, w in enumerate(workers)])
    finally:
        ray.shutdown()


class _RayWorker:
    """A Ray actor hosting one worker; rank 0's names the rendezvous (its node's address and a free port)."""

    def rendezvous(self) -> tuple[str, int]:
        import ray

        from tango2_ros.core.net import free_port

        return ray.util.get_node_ip_address(), free_port()

    def train(self, *arguments) -> tuple[dict | None, dict]:
        return _rank(*arguments)


def _rank(rank: int, world: int, address: str, port: int, base_gguf: Path, examples: list[Example],
          config: FinetuneConfig, device: str) -> tuple[dict | None, dict]:
    """One data-parallel worker: (rank 0's LoRA weights, else None; {"losses", "lora_sha256"})."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR=address, MASTER_PORT=str(port))
    cuda = device.startswith("cuda")
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        tokenizer, peft_model = _load(base_gguf, config, device)
        parallel = DistributedDataParallel(peft_model, device_ids=[torch.device(device).index] if cuda else None)
        losses = _train(parallel, tokenizer, examples, config, device, rank=rank, world=world)
        lora = {name: tensor.detach().cpu() for name, tensor in peft_model.state_dict().items() if "lora_" in name}
        digest = hashlib.sha256()
        for name in sorted(lora):
            digest.update(name.encode() + lora[name].numpy().tobytes())
        return (lora if rank == 0 else None), {"losses": losses, "lora_sha256": digest.hexdigest()}
    finally:
        dist.destroy_process_group()
