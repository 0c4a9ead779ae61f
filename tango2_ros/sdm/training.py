"""Training the small 3-D findings network on phantoms, exporting it to ONNX with its conventions in the
model's metadata, and scoring a model on a set of studies.

The studies go through exactly the path a received study takes (rendered on a scanner grid, Hounsfield units,
`volume.preprocess`), so the network sees at training time what the node will give it.
"""
from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy

from tango2_ros.sdm.labels import BY_SLUG, LABEL_NAMES
from tango2_ros.sdm.phantom import INSERTABLE, Grid, random_findings, render
from tango2_ros.sdm.volume import CtVolume, Preprocessing, preprocess

TRAINED_LABELS = tuple(BY_SLUG[slug].name for slug in INSERTABLE)
INPUT_NAME, OUTPUT_NAME = "volume", "probabilities"


@dataclass(frozen=True)
class TrainingOptions:
    studies: int = 900
    epochs: int = 12
    batch_size: int = 12
    learning_rate: float = 3e-3
    seed: int = 0
    workers: int = 2


def phantom_batch(seeds: list[int], conventions: Preprocessing = Preprocessing(),
                  grid: Grid = Grid()) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Model inputs (N, 1, D, H, W) float16 and 18-label targets (N, 18) for the phantoms of these seeds."""
    inputs, targets = [], []
    for seed in seeds:
        rng = numpy.random.default_rng(seed + 7_000_000)
        study = render(random_findings(rng), seed=seed, grid=grid)
        volume = CtVolume(hu=study.hu.astype(numpy.float32), spacing=grid.spacing)
        inputs.append(preprocess(volume, conventions)[None].astype(numpy.float16))
        targets.append([study.truth()[name] for name in LABEL_NAMES])
    return numpy.stack(inputs), numpy.asarray(targets, dtype=numpy.float32)


def phantom_set(first_seed: int, count: int, workers: int = 2,
                conventions: Preprocessing = Preprocessing()) -> tuple[numpy.ndarray, numpy.ndarray]:
    """`count` phantoms from `first_seed` on, rendered in `workers` processes."""
    chunks = [list(range(start, min(start + 50, first_seed + count))) for start in range(first_seed,
                                                                                         first_seed + count, 50)]
    if workers <= 1:
        parts = [phantom_batch(chunk, conventions) for chunk in chunks]
    else:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(phantom_batch, chunks, [conventions] * len(chunks)))
    return numpy.concatenate([p[0] for p in parts]), numpy.concatenate([p[1] for p in parts])


# Radiologists' windows, computed inside the network from the [-1, 1] input (HU / 1000): lung (emphysema against
# normal lung), soft tissue (fluid, fat and nodes in the mediastinum), and dense (calcium, bone, metal).
WINDOWS_HU = ((-1000.0, -700.0), (-160.0, 240.0), (150.0, 1000.0))


def network():
    """The windows as extra channels, a full-resolution convolution and max pooling, three strided 3-D convolutions
    (32-64-64 channels), global max and mean pooling, one linear layer."""
    import torch
    from torch import nn

    def block(inputs: int, outputs: int, stride) -> nn.Sequential:
        return nn.Sequential(nn.Conv3d(inputs, outputs, 3, stride=stride, padding=1, bias=False),
                             nn.BatchNorm3d(outputs), nn.ReLU(inplace=True))

    class FindingsNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # full resolution first, then max pooling, so small dense lesions survive the first reduction
            self.features = nn.Sequential(block(1 + len(WINDOWS_HU), 8, 1), nn.MaxPool3d((1, 2, 2)),
                                          block(8, 32, 2), block(32, 64, 2), block(64, 64, 2))
            self.head = nn.Linear(128, len(LABEL_NAMES))

        def forward(self, volume):
            hu = volume * 1000.0
            windows = [torch.clamp((hu - low) / (high - low), 0.0, 1.0) for low, high in WINDOWS_HU]
            features = self.features(torch.cat([volume, *windows], dim=1))
            pooled = torch.cat([features.amax(dim=(2, 3, 4)), features.mean(dim=(2, 3, 4))], dim=1)
            return torch.sigmoid(self.head(pooled))

    return FindingsNet()


def train(inputs: numpy.ndarray, targets: numpy.ndarray, options: TrainingOptions,
          progress: Callable[[int, int, float], None] | None = None) -> tuple[object, list[float]]:
    """Adam with a one-cycle schedule, binary cross-entropy; returns the model (eval mode) and per-epoch losses."""
    import torch

    torch.manual_seed(options.seed)
    model = network()
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate, weight_decay=1e-4)
    steps_per_epoch = (len(inputs) + options.batch_size - 1) // options.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, options.learning_rate,
                                                   total_steps=steps_per_epoch * options.epochs)
    loss_fn = torch.nn.BCELoss()
    rng = numpy.random.default_rng(options.seed)
    losses, step, total = [], 0, steps_per_epoch * options.epochs
    model.train()
    for _ in range(options.epochs):
        order, epoch_loss = rng.permutation(len(inputs)), 0.0
        for start in range(0, len(inputs), options.batch_size):
            batch = order[start:start + options.batch_size]
            x = torch.from_numpy(augment(inputs[batch].astype(numpy.float32), rng))
            loss = loss_fn(model(x), torch.from_numpy(targets[batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            epoch_loss += loss.item() * len(batch)
            step += 1
            if progress:
                progress(step, total, loss.item())
        losses.append(epoch_loss / len(inputs))
    model.eval()
    return model, losses


def augment(batch: numpy.ndarray, rng: numpy.random.Generator) -> numpy.ndarray:
    """Left-right mirror and shifts of a few voxels: the labels stay true, the network cannot learn positions."""
    if rng.uniform() < 0.5:
        batch = batch[:, :, :, :, ::-1]
    shifts = (int(rng.integers(-1, 2)), int(rng.integers(-3, 4)), int(rng.integers(-3, 4)))
    return numpy.ascontiguousarray(numpy.roll(batch, shifts, axis=(2, 3, 4)))


def export_onnx(model, path: Path, conventions: Preprocessing, thresholds: dict[str, float],
                trained_labels: tuple[str, ...] = TRAINED_LABELS) -> Path:
    """The network as ONNX (dynamic batch), its conventions and labels in the model's metadata_props."""
    import warnings

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    sample = torch.zeros((1, 1, *conventions.shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (sample,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=17,
                          dynamo=False)
    write_metadata(path, conventions, thresholds, trained_labels)
    return path


def write_metadata(path: Path, conventions: Preprocessing, thresholds: dict[str, float],
                   trained_labels: tuple[str, ...]) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in {"tango2.ct_findings": json.dumps({
            "labels": list(LABEL_NAMES), "trained_labels": list(trained_labels), "thresholds": thresholds,
            "preprocessing": asdict(conventions)})}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def choose_thresholds(probabilities: numpy.ndarray, targets: numpy.ndarray,
                      labels: tuple[str, ...] = TRAINED_LABELS, passes: int = 3) -> dict[str, float]:
    """Per-label thresholds chosen on a tuning set to maximise the micro-F1 over `labels` (the builder's gate):
    coordinate ascent from 0.5, each label in turn over 0.05..0.95 with the others held."""
    columns = [LABEL_NAMES.index(name) for name in labels]
    scores, truth = probabilities[:, columns], targets[:, columns] > 0.5
    chosen = numpy.full(len(columns), 0.5)
    grid = numpy.round(numpy.linspace(0.05, 0.95, 19), 2)

    def micro(thresholds: numpy.ndarray) -> float:
        return f1_counts(scores >= thresholds, truth)[0]

    for _ in range(passes):
        for index in range(len(columns)):
            trials = [numpy.where(numpy.arange(len(columns)) == index, value, chosen) for value in grid]
            chosen = max(trials, key=lambda trial: (micro(trial), -abs(trial[index] - 0.5)))
    return {name: float(value) for name, value in zip(labels, chosen)}


def f1_counts(predicted: numpy.ndarray, truth: numpy.ndarray) -> tuple[float, int, int, int]:
    tp = int((predicted & truth).sum())
    fp = int((predicted & ~truth).sum())
    fn = int((~predicted & truth).sum())
    return (2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0), tp, fp, fn
