"""The small interface every model runtime implements, and the slot that swaps runtimes between requests.

A node serves from a `RuntimeSlot`. A new model is loaded, warmed up and health-checked next to the old one
(in the caller's thread, typically a background thread), then `RuntimeSlot.replace` switches atomically:
requests that hold a lease on the old runtime finish on it, and it is closed when the last lease ends.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names the file and the cause."""


class NoModelError(RuntimeError):
    """The slot has no model to serve with."""


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str
    path: str
    format: str
    size_bytes: int

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def of_file(cls, path: str | Path, fmt: str, name: str = "", version: str = "") -> "ModelIdentity":
        """Identify a model file: name defaults to the file stem, version to a prefix of its sha256."""
        file = Path(path)
        return cls(
            name=name or file.stem,
            version=version or f"sha256-{file_sha256(file)[:12]}",
            path=str(file),
            format=fmt,
            size_bytes=file.stat().st_size,
        )


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    latency_s: float
    detail: str
    too_slow_only: bool = False  # the answer was right but late: a load problem rather than a broken model


def golden_check(golden: Callable[[], str], budget_s: float, what: str = "golden request") -> HealthReport:
    """Time `golden()` (it returns "" or what was wrong with the answer) against the budget; an exception fails."""
    started = time.monotonic()
    try:
        problem = golden()
    except Exception as exc:  # noqa: BLE001 - any failure of the golden request fails the check
        return HealthReport(False, time.monotonic() - started, f"{what} failed: {exc}")
    latency = time.monotonic() - started
    if problem:
        return HealthReport(False, latency, f"{what} {problem}")
    if latency > budget_s:
        return HealthReport(False, latency, f"{what} took {latency:.3f} s, budget {budget_s:.3f} s", too_slow_only=True)
    return HealthReport(True, latency, "ok")


class ModelRuntime(ABC):
    """A loaded model. Implementations load in __init__ and raise ModelLoadError with a clear cause."""

    identity: ModelIdentity

    @abstractmethod
    def warm_up(self) -> None:
        """Run one small inference so the first real request does not pay for lazy initialisation."""

    @abstractmethod
    def health_check(self, budget_s: float) -> HealthReport:
        """A golden request that must succeed within budget_s."""

    @abstractmethod
    def close(self) -> None:
        """Free the model; called once no request uses it."""

    def take_over(self) -> None:  # noqa: B027 - an optional hook, most runtimes need nothing here
        """Called once it serves alone: the model it replaced has answered its last request and is closed (say, to
        use every thread the two shared)."""

    def prime_from(self, serving: "ModelRuntime") -> None:  # noqa: B027 - an optional hook
        """Before it replaces `serving`: take on what makes that one fast now (say, the prompts it keeps cached),
        so the requests right after the switch do not pay for it."""

    def share_cores(self, sharing: bool) -> None:  # noqa: B027 - an optional hook, most runtimes need nothing here
        """While `sharing`, a new model is loaded, warmed up and checked beside this serving one: leave it cores."""


class RuntimeSlot:
    """Holds the runtime a node serves from; replace() switches between requests without dropping any."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._active: ModelRuntime | None = None
        self._leases: dict[int, int] = {}
        self._draining: dict[int, ModelRuntime] = {}  # replaced runtimes not yet closed
        self._drains: list[threading.Thread] = []

    @property
    def active(self) -> ModelRuntime | None:
        with self._lock:
            return self._active

    @contextmanager
    def lease(self) -> Iterator[ModelRuntime]:
        """The active runtime, kept alive until the with-block ends even if it is replaced meanwhile."""
        with self._lock:
            runtime = self._active
            if runtime is None:
                raise NoModelError("no model is loaded")
            self._leases[id(runtime)] = self._leases.get(id(runtime), 0) + 1
        try:
            yield runtime
        finally:
            with self._lock:
                if id(runtime) in self._leases:  # not when close() has ended every lease
                    self._leases[id(runtime)] -= 1
                self._lock.notify_all()

    def replace(self, runtime: ModelRuntime | None, *, drain_timeout_s: float = 600.0) -> ModelRuntime | None:
        """Serve from `runtime` from now on; the previous one is closed in the background once drained, and then
        `runtime.take_over()` is called (at once when there was none)."""
        with self._lock:
            previous, self._active = self._active, runtime
            if previous is not None and previous is not runtime:
                self._draining[id(previous)] = previous
                drain = threading.Thread(target=self._close_when_drained, args=(previous, runtime, drain_timeout_s),
                                         name="runtime-drain", daemon=True)
                self._drains = [thread for thread in self._drains if thread.is_alive()] + [drain]
                drain.start()
        if runtime is not None and (previous is None or previous is runtime):
            runtime.take_over()
        return previous

    def close(self, join_timeout_s: float = 30.0) -> None:
        """Serve nothing and close every runtime now, in the calling thread, leases or not: a node that stops has
        cancelled its requests, and its executor no longer resumes the ones that hold a lease. Nothing may be left
        for a background thread to free while the interpreter exits: a thread that calls back into Python from
        llama.cpp's destructors then aborts the whole process ("terminate called without an active exception")."""
        with self._lock:
            closing = [runtime for runtime in (self._active,) if runtime is not None] + list(self._draining.values())
            self._active = None
            self._draining.clear()
            self._leases.clear()
            drains = list(self._drains)
            self._lock.notify_all()
        for runtime in closing:
            runtime.close()
        for drain in drains:  # one may be closing its runtime right now
            drain.join(join_timeout_s)

    def _close_when_drained(self, runtime: ModelRuntime, successor: ModelRuntime | None, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._leases.get(id(runtime), 0) > 0 and id(runtime) in self._draining \
                    and time.monotonic() < deadline:
                self._lock.wait(timeout=max(0.0, deadline - time.monotonic()))
            self._leases.pop(id(runtime), None)
            if self._draining.pop(id(runtime), None) is None:
                return  # the slot was closed meanwhile: close() closed it, and the successor too
        runtime.close()
        if successor is not None:
            successor.take_over()


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def resident_memory_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process (Linux), 0 where /proc cannot be read."""
    return _proc_kib(f"/proc/{pid}/status", "VmRSS:") * 1024


def available_memory_bytes() -> int:
    """MemAvailable (Linux), or the physical memory size where /proc cannot be read."""
    kib = _proc_kib("/proc/meminfo", "MemAvailable:")
    return kib * 1024 if kib else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _proc_kib(path: str, key: str) -> int:
    """A 'Key:  N kB' value from a /proc file, 0 when absent."""
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
