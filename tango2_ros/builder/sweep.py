"""Evaluation sweeps: many independent held-out runs (days of the greenhouse for a farm's action model), one after
the other on this machine (the default), or as Ray tasks on a cluster when one is given, each run on a worker of
its own. Ray is the engine for what outgrows one machine: nothing here schedules, retries or moves data itself.

`cluster`: "" = this machine, no Ray; "local:N" = a Ray cluster of N workers started on this machine (what the
tests use); "auto" = the Ray cluster this machine belongs to (`ray start` was run); "ray://HOST:PORT" = a remote
cluster through Ray Client. Every worker needs this package and the model registry (`TANGO2_MODEL_STORE`, or an
http(s) or OCI store) the runs name.
"""
from __future__ import annotations

import datetime
import os
import socket
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from tango2_ros.errors import UserError


@dataclass(frozen=True)
class FarmDay:
    """One held-out run of the greenhouse: the baseline controller (`model` '') or an action model from the
    registry (NAME@VERSION|TAG) on llama.cpp with `threads`, from `day` for `hours`."""

    day: datetime.date
    model: str = ""
    hours: float = 24.0
    crop: str = "tomato"
    period_s: float = 900.0
    threads: int = 2
    spin_up_h: float = 24.0


def evaluate_farm_day(run: FarmDay) -> dict:
    """The run's report (tango2_ros.sdf.simulation.run), and where it ran."""
    from tango2_ros.cli.model_files import model_files
    from tango2_ros.sdf.crops import PRESETS
    from tango2_ros.sdf.learning import CycleOptions, evaluate_in_simulator

    model = adapter = None
    if run.model:
        model, adapter, _, _ = model_files(run.model)
    options = CycleOptions(name="", version="", current=run.model, held_out_start=run.day,
                           held_out_days=run.hours / 24.0, period_s=run.period_s, spin_up_h=run.spin_up_h)
    with tempfile.TemporaryDirectory(prefix="tango2-sweep-") as scratch:
        report = evaluate_in_simulator(model, PRESETS[run.crop], options, Path(scratch) / "decisions.jsonl",
                                       adapter=adapter, threads=run.threads)
    return {**report, "run": {**asdict(run), "day": run.day.isoformat()},
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


def run_sweep(runs: Sequence, evaluate: Callable[[object], dict], cluster: str = "") -> list[dict]:
    """`evaluate(run)` for every run, in the runs' order; on Ray when `cluster` names one."""
    if not cluster:
        return [evaluate(run) for run in runs]
    ray = connect(cluster)
    try:
        remote = ray.remote(num_cpus=1)(evaluate)
        return ray.get([remote.remote(run) for run in runs])
    finally:
        ray.shutdown()


def connect(cluster: str):
    """Ray, initialised on `cluster` (the module's docstring says which); UserError for one it cannot use."""
    try:
        import ray
    except ImportError as exc:
        raise UserError("Ray is not installed: pip install -r requirements/builder.txt") from exc
    if cluster.startswith("local:"):
        workers = cluster.removeprefix("local:")
        if not workers.isdigit() or not 1 <= int(workers) <= (os.cpu_count() or 1) * 4:
            raise UserError(f"--cluster {cluster!r}: local:N with N from 1 to {(os.cpu_count() or 1) * 4}")
        ray.init(num_cpus=int(workers), include_dashboard=False, log_to_driver=False)
    elif cluster == "auto" or cluster.startswith("ray://"):
        try:
            ray.init(address=cluster, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"cannot join the Ray cluster {cluster!r}: {exc}") from exc
    else:
        raise UserError(f"--cluster {cluster!r}: use local:N, auto or ray://HOST:PORT")
    return ray
