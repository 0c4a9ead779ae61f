"""The one thread that drafts reports, study after study, whoever sent them: the DICOM receiver (nobody waits)
and action goals (the caller waits for the report, or for the reason there is none). The last few received
studies are kept by their de-identified key, so a goal can ask for one of them. ROS-free; ct_report adapts it.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable

from tango2_ros.errors import UserError
from tango2_ros.sdm.pipeline import StudyReport
from tango2_ros.sdm.volume import CtVolume, StudyLimits, datasets_to_volume

Feedback = Callable[[str, float], None]  # stage, progress 0..1


class StudyWorker:
    def __init__(self, process: Callable[[object, Feedback], StudyReport],
                 on_failure: Callable[[str, bool], None], keep: int = 8,
                 on_busy: Callable[[str], None] = lambda reason: None) -> None:
        """`process(source, feedback)` drafts one study; `on_failure(message, unexpected)` hears every failure;
        `on_busy(reason)` hears when studies are being reported ('' once none is: a swap window, see
        tango2_ros.core.deployment)."""
        self.process, self.on_failure, self.keep, self.on_busy = process, on_failure, keep, on_busy
        self._jobs: queue.Queue = queue.Queue()
        self._received: dict[str, CtVolume] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="study-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=timeout_s)
            self._thread = None

    def submit(self, volume: CtVolume) -> None:
        """A received study: drafted when its turn comes, nobody waits."""
        self._jobs.put((volume, None))

    def submit_series(self, datasets: list, limits: StudyLimits, sender: str) -> None:
        """A series from the DICOM receiver (its thread): assembled and queued, or refused through `on_failure`
        (a hostile series must never reach the network library's thread as an error)."""
        try:
            volume = datasets_to_volume(datasets, limits, source=f"series from {sender}")
        except UserError as exc:
            self.on_failure(f"received study refused: {exc}", False)
        except Exception as exc:  # noqa: BLE001
            self.on_failure(f"received study refused: unreadable ({exc.__class__.__name__})", False)
        else:
            self.submit(volume)

    def report(self, path: str = "", study_key: str = "", feedback: Feedback = lambda stage, progress: None) -> StudyReport:
        """Draft the study at `path`, or the received one with `study_key`, and wait; UserError says why not."""
        source = path
        if study_key:
            source = self._received.get(study_key)
            if source is None:
                raise UserError(f"no received study with key {study_key}")
        outcome: dict = {}
        finished = threading.Event()
        self._jobs.put((source, (outcome, finished, feedback)))
        finished.wait()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["report"]

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            source, waiter = job
            outcome, finished, feedback = waiter if waiter else ({}, None, lambda stage, progress: None)
            self.on_busy(f"a study is being reported, {self._jobs.qsize()} more waiting")
            try:
                report = outcome["report"] = self.process(source, feedback)
                self._remember(report)
            except UserError as exc:
                outcome["error"] = exc
                self.on_failure(f"study refused: {exc}", False)
            except Exception as exc:  # noqa: BLE001 - one study's failure must not stop the worker
                outcome["error"] = UserError(f"study failed: {exc.__class__.__name__}: {exc}")
                self.on_failure(f"study failed: {exc.__class__.__name__}", True)
            finally:
                if self._jobs.empty():
                    self.on_busy("")
                if finished is not None:
                    finished.set()

    def _remember(self, report: StudyReport) -> None:
        if report.volume is None:
            return
        self._received[report.study_key] = report.volume
        while len(self._received) > self.keep:
            self._received.pop(next(iter(self._received)))
