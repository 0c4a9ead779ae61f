"""The farm's live decision log: what the safety supervisor decided each period, in the simulator's schema
(tango2_ros.sdf.simulation), so that `tango2 sdf learn` learns from a working greenhouse's days as from simulated
ones, and the fleet_agent can send the files to the fleet (its `decision_logs`).

A record is completed when the next state arrives (its `outcome` and `in_band` are that state) and appended to
`<folder>/<YYYY-MM-DD>.jsonl` (the decision's local date): append-only files, a new one per day, which is what the
fleet's shipper expects. A decision without a next state (the node stops) is not written.
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path

from tango2_ros.sdf.controllers import Observation
from tango2_ros.sdf.crops import CropPreset
from tango2_ros.sdf.simulation import band_flags, finite_proposal, state_record


class DecisionLog:
    def __init__(self, folder: Path, preset: CropPreset) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.preset = folder, preset
        self._pending: tuple[datetime.datetime, dict] | None = None
        self.written = 0

    def decided(self, t_s: float, moment: datetime.datetime, seen: Observation, actuators_before: dict[str, float],
                forecast: list[tuple[float, float]], *, controller: str, model: str, proposal: dict | None,
                rationale: str, verdict: str, reasons: list[str], command: dict[str, float]) -> None:
        """One period's decision (at `t_s`, the state's stamp; local time `moment`); a decision still waiting for
        its outcome is dropped."""
        self._pending = (moment, {
            "t_s": t_s, "time": moment.replace(tzinfo=None).isoformat(timespec="seconds"),
            "crop": self.preset.name, "controller": controller, "model": model,
            "state": state_record(seen, seen.hour),
            "actuators": {k: round(v, 2) for k, v in actuators_before.items()},
            "forecast": [[round(t, 1), round(sun)] for t, sun in forecast],
            "proposal": finite_proposal(proposal), "rationale": rationale, "verdict": verdict,
            "reasons": list(reasons), "command": {k: round(v, 2) for k, v in command.items()}})

    def observed(self, seen: Observation) -> None:
        """The state after the pending decision: its outcome; the record is written."""
        if self._pending is None:
            return
        moment, record = self._pending
        self._pending = None
        record["outcome"] = state_record(seen, seen.hour)
        record["in_band"] = band_flags(self.preset, seen, lit=seen.is_day or seen.lights_on)
        with (self.folder / f"{moment:%Y-%m-%d}.jsonl").open("a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        self.written += 1
