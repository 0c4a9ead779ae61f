"""The bridge's sensor intake, ROS-free: NMEA 0183 datagrams in, the picture (tango2_ros.sds.picture) updated.

Every sentence that cannot be used (checksum, truncated, garbage, out of range, or a value the picture refuses)
is counted with its reason and dropped: one odd sentence never stops the listener. Safe to feed from a reader
thread while another thread reads the picture.
"""
from __future__ import annotations

import threading

from tango2_ros.sds.nmea import AisReport, Fix, NmeaDecoder, NmeaError, RadarTarget, split_datagram
from tango2_ros.sds.picture import BridgePicture, OwnShip, RawTarget, Timeouts

COUNTED_EVENTS = ((Fix, "fixes"), (RadarTarget, "radar"), (AisReport, "ais"))


class SensorIntake:
    def __init__(self, timeouts: Timeouts = Timeouts()) -> None:
        self._lock = threading.Lock()
        self._decoder = NmeaDecoder()
        self._picture = BridgePicture(timeouts)
        self.counts = {"datagrams": 0, "sentences": 0, "rejected": 0, "fixes": 0, "ais": 0, "radar": 0}
        self.last_rejected = ""

    def feed(self, data: bytes, now: float) -> int:
        """Decode one datagram into the picture; returns the number of position fixes it carried."""
        self.counts["datagrams"] += 1
        try:
            lines = split_datagram(data)
        except NmeaError as exc:
            self._reject(str(exc))
            return 0
        fixes = 0
        for line in lines:
            self.counts["sentences"] += 1
            try:
                event = self._decoder.feed(line)
                if event is not None:
                    fixes += self._apply(event, now)
            except NmeaError as exc:
                self._reject(f"{line[:20]}...: {exc}")
            except Exception as exc:  # noqa: BLE001 - one odd sentence must never stop the listener
                self._reject(f"{line[:20]}...: unexpected {exc.__class__.__name__}: {exc}")
        return fixes

    def own_ship(self, now: float) -> OwnShip:
        with self._lock:
            return self._picture.own_ship(now)

    def current_targets(self, now: float) -> list[RawTarget]:
        with self._lock:
            return self._picture.current_targets(now)

    def _apply(self, event, now: float) -> int:
        for kind, key in COUNTED_EVENTS:
            self.counts[key] += isinstance(event, kind)
        with self._lock:
            problem = self._picture.apply(event, now)
        if problem:
            self._reject(problem)
        return isinstance(event, Fix)

    def _reject(self, reason: str) -> None:
        self.counts["rejected"] += 1
        self.last_rejected = reason
