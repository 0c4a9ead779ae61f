"""The builder's road for the chest-CT findings network (base `new:ct-findings-3d`): phantom sets -> training
-> per-label thresholds on the tuning set -> ONNX f32 -> int8 (static, calibrated on the tuning set) ->
evaluation (micro-F1 over the labels the phantoms insert) in a separate process.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy

MODEL_FILE = "ct-findings.onnx"
SETS_FILE = "phantom-sets.npz"


def train_candidates(recipe, work_dir: Path, say: Callable[[str], None],
                     progress: Callable[[int, int, float], None] | None = None):
    """Train, export and quantise; returns (exported f32 model, {quantisation: model}, losses, seconds, eval set)."""
    import torch

    from tango2_ros.sdm.training import TrainingOptions, choose_thresholds, export_onnx, phantom_set, train
    from tango2_ros.sdm.volume import Preprocessing

    phantoms, conventions = recipe.extra["phantoms"], Preprocessing()
    seed = phantoms["seed"]
    started = time.monotonic()
    train_x, train_y = phantom_set(seed, phantoms["train"])
    tune_x, tune_y = phantom_set(seed + 1_000_000, phantoms["tune"])
    eval_x, eval_y = phantom_set(seed + 2_000_000, phantoms["eval"])
    say(f"      {phantoms['train']} training, {phantoms['tune']} tuning and {phantoms['eval']} evaluation phantoms "
        f"in {time.monotonic() - started:.0f} s")
    eval_file = work_dir / SETS_FILE
    numpy.savez_compressed(eval_file, inputs=eval_x, targets=eval_y)
    options = TrainingOptions(**{"seed": seed, **recipe.extra["training"]})
    started = time.monotonic()
    model, losses = train(train_x, train_y, options, progress)
    seconds = time.monotonic() - started
    with torch.no_grad():
        tuned = numpy.concatenate([model(torch.from_numpy(tune_x[i:i + 16].astype(numpy.float32))).numpy()
                                   for i in range(0, len(tune_x), 16)])
    thresholds = choose_thresholds(tuned, tune_y)
    exported = export_onnx(model, work_dir / "f32" / MODEL_FILE, conventions, thresholds)
    models = {}
    for level in recipe.quantizations:
        models[level] = exported if level == "f32" else quantize_static_int8(exported, work_dir / level / MODEL_FILE,
                                                                             tune_x)
    return exported, models, losses, seconds, eval_file


def quantize_static_int8(source: Path, target: Path, calibration: numpy.ndarray) -> Path:
    """QDQ int8 weights and activations, activation ranges calibrated on real (phantom) inputs; metadata kept."""
    import logging

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from tango2_ros.sdm.training import INPUT_NAME

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration[:64])

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {INPUT_NAME: item[None].astype(numpy.float32)}

    logging.getLogger().setLevel(logging.ERROR)
    target.parent.mkdir(parents=True, exist_ok=True)
    quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    metadata = {p.key: p.value for p in onnx.load(str(source)).metadata_props}
    proto = onnx.load(str(target))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(target))
    return target


def run_findings(model: Path, sets_file: Path, threads: int):
    """micro-F1 over the trained labels at the model's own thresholds; speed in studies per second."""
    from tango2_ros.builder.evaluation import Evaluation, peak_resident_mb
    from tango2_ros.sdm.findings import FindingsModel
    from tango2_ros.sdm.labels import LABEL_NAMES
    from tango2_ros.sdm.training import f1_counts

    findings_model = FindingsModel(model, threads=threads)
    sets = numpy.load(sets_file)
    inputs, targets = sets["inputs"], sets["targets"] > 0.5
    findings_model.predict(inputs[0, 0].astype(numpy.float32))  # warm-up
    predicted = numpy.zeros_like(targets)
    started = time.monotonic()
    for index, volume in enumerate(inputs):
        predicted[index] = [f.present for f in findings_model.predict(volume[0].astype(numpy.float32))]
    seconds = time.monotonic() - started
    columns = [LABEL_NAMES.index(name) for name in sorted(findings_model.trained, key=LABEL_NAMES.index)]
    f1, *_ = f1_counts(predicted[:, columns], targets[:, columns])
    outputs = [",".join(LABEL_NAMES[c] for c in numpy.nonzero(row)[0]) for row in predicted]
    return Evaluation(f1, len(inputs) / seconds, seconds / len(inputs), peak_resident_mb(), outputs)
