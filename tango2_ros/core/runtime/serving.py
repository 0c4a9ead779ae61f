"""What every node that serves a model shares (the LLM, the detector, the findings model, a VLM): the runtime slot,
the load protocol (load beside the serving model, warm up, health-check, switch between requests, keep the old
one on any failure) and the per-deployment counters the model manager judges a new version by.

ROS-free; `tango2_ros.nodes.serving` puts it behind a node's `~/load_model` service and /diagnostics.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from tango2_ros.core.runtime.base import ModelLoadError, ModelRuntime, RuntimeSlot

OK, WARN, ERROR = "ok", "warn", "error"
HOLD_KEY = "swap_hold"  # a node's /diagnostics value: why no model may change now (absent or '' = no objection)


@dataclass(frozen=True)
class ModelSpec:
    """Which model to serve: a verified file (and adapter), with the name and version results report; `base`: the
    model it runs on (a VLM bundle's language model)."""

    path: str
    name: str = ""
    version: str = ""
    adapter: str = ""
    base: str = ""


@dataclass(frozen=True)
class LoadOutcome:
    success: bool
    message: str
    previous: str = ""
    active: str = ""
    load_s: float = 0.0
    warmup_s: float = 0.0
    health_s: float = 0.0


@dataclass(frozen=True)
class ServingStatus:
    level: str  # OK | WARN | ERROR
    message: str
    values: dict


# opens a model; `beside` is True while another model is serving (load it gently: it shares the cores)
Opener = Callable[[ModelSpec, bool], ModelRuntime]


class ServedModel:
    def __init__(self, open_model: Opener, *, default_budget_s: Callable[[], float],
                 on_status: Callable[[ServingStatus], None]) -> None:
        self.slot = RuntimeSlot()
        self.open_model, self.default_budget_s, self.on_status = open_model, default_budget_s, on_status
        self._swap_lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self._per_model: dict[str, dict[str, float]] = {}  # model label -> requests, errors, seconds answering
        self._last: tuple[ModelSpec, LoadOutcome] | None = None

    @property
    def label(self) -> str:
        active = self.slot.active
        return active.identity.label if active else ""

    @property
    def loading(self) -> bool:
        return self._swap_lock.locked()

    def load(self, spec: ModelSpec, budget_s: float = 0.0, release_first: bool = False) -> LoadOutcome:
        """Load, warm up and health-check `spec`, then serve from it; on failure the old model keeps serving.

        With `release_first` the current model is unloaded first (for when both do not fit in memory). A request
        for what was loaded last gets that load's outcome again (the manager resends when an answer is lost)."""
        if self._last is not None and self._last[0] == spec and self.label == self._last[1].active:
            return self._last[1]
        if not self._swap_lock.acquire(blocking=False):
            return LoadOutcome(False, "busy: a model load is already in progress", self.label, self.label)
        previous = self.label
        sharing = None  # the serving model while it leaves the new one cores: given back if the swap fails
        try:
            self.on_status(ServingStatus(WARN, f"loading {spec.path}", {}))
            if release_first and self.slot.active is not None:
                self.slot.replace(None)
            sharing = self.slot.active
            beside = sharing is not None
            started = time.monotonic()
            if sharing is not None:
                sharing.share_cores(True)  # until it has drained once the new one serves, or the new one fails
            runtime = self.open_model(spec, beside)
            loaded = time.monotonic()
            runtime.warm_up()
            warmed = time.monotonic()
            health = runtime.health_check(budget_s or self.default_budget_s())
            # A slow but correct first model is better than none (the machine may just be busy); a swap must pass
            # the budget, since the model serving now is known to work.
            if not health.ok and not (health.too_slow_only and not beside):
                runtime.close()
                raise ModelLoadError(f"{spec.path} failed its health check: {health.detail}")
            if sharing is not None:  # last, so the warm-up and the health check do not evict what it primes
                runtime.prime_from(sharing)
            label = runtime.identity.label
            with self._counter_lock:  # a deployment is judged by its own requests only
                self._per_model[label] = _new_counts()
            self.slot.replace(runtime)
            sharing = None
            outcome = LoadOutcome(True, f"serving {label}", previous, label, loaded - started, warmed - loaded,
                                  health.latency_s)
            self._last = (spec, outcome)
            self.on_status(ServingStatus(
                OK if health.ok else WARN, f"serving {label}" + ("" if health.ok else f" (health check: {health.detail})"),
                {"model": label, "model_path": spec.path, "model_size_mb": f"{runtime.identity.size_bytes / 2**20:.1f}",
                 "load_s": f"{outcome.load_s:.2f}", "previous_model": previous, "last_load_error": ""}))
            return outcome
        except (ModelLoadError, FileNotFoundError, ValueError, OSError) as exc:
            kept = self.label
            self.on_status(ServingStatus(WARN, f"kept {kept}: {exc}", {"last_load_error": str(exc)}) if kept else
                           ServingStatus(ERROR, f"no model loaded: {exc}", {"last_load_error": str(exc)}))
            return LoadOutcome(False, str(exc), previous, kept)  # `active` says what serves on
        finally:
            if sharing is not None:
                sharing.share_cores(False)
            self._swap_lock.release()

    def count(self, model: str, error: bool, seconds: float = 0.0) -> dict[str, int | str]:
        """Count one request answered by `model` in `seconds`; returns the counters of the model serving now, for
        /diagnostics (`model_requests`, `model_errors`, which the model manager's rollback rule reads, and
        `model_seconds`, the time spent answering, from which a fleet agent reports the mean latency)."""
        with self._counter_lock:
            if model:
                counts = self._per_model.setdefault(model, _new_counts())
                counts["requests"] += 1
                counts["errors"] += int(error)
                counts["seconds"] += max(0.0, seconds)
            current = self._per_model.get(self.label, _new_counts())
            return {"model": self.label, "model_requests": int(current["requests"]),
                    "model_errors": int(current["errors"]), "model_seconds": f"{current['seconds']:.3f}"}

    def close(self, timeout_s: float = 60.0) -> None:
        """Stop serving and free the models now; a load under way ends first (up to `timeout_s`), so none starts
        serving after this."""
        locked = self._swap_lock.acquire(timeout=timeout_s)
        try:
            self.slot.close()
        finally:
            if locked:
                self._swap_lock.release()


def _new_counts() -> dict[str, float]:
    return {"requests": 0, "errors": 0, "seconds": 0.0}
