"""The supervisor's watchdog: when the proposing controller is silent, late or invalid, the baseline controller
decides the period. Used alike by the safety_supervisor node and the in-process decider.

The baseline sees every state (`observe`), not only the periods it takes over, so its own state (the irrigation
hysteresis) is current when it has to step in.
"""
from __future__ import annotations

from tango2_ros.sdf.controllers import BaselineController, Observation
from tango2_ros.sdf.crops import CropPreset
from tango2_ros.sdf.supervisor import Conditions, SafetySupervisor, Verdict


class Watchdog:
    def __init__(self, preset: CropPreset, supervisor: SafetySupervisor,
                 baseline: BaselineController | None = None) -> None:
        self.supervisor = supervisor
        self.baseline = baseline or BaselineController(preset)
        self.standby: dict | None = None  # what the baseline would command now

    def observe(self, seen: Observation | None) -> None:
        """Every state: the baseline's proposal for it, ready in case the controller fails this period."""
        self.standby = self.baseline.propose(seen) if seen is not None else None

    def take_over(self, conditions: Conditions | None, now_s: float) -> tuple[dict | None, Verdict]:
        """The period the controller could not decide: the baseline's proposal, reviewed like any other (the
        supervisor's reasons, an emergency stop first, are the verdict's; the caller says why it took over)."""
        return self.standby, self.supervisor.review(self.standby, conditions, now_s)
