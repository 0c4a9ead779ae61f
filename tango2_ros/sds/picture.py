"""The bridge's picture from its sensors, ROS-free: own ship (position, motion, heading, rate of turn, depth, wind)
and the raw targets (radar TTM and AIS as received, with their rule-18 category), each expired after its timeout.
The nmea_bridge node feeds it the decoder's events and publishes what it holds; fusing targets is the tracker's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from tango2_ros.sds.geometry import NM_M, to_geographic
from tango2_ros.sds.nmea import AisReport, Depth, Fix, Heading, Motion, RadarTarget, RateOfTurn, Wind

# AIS navigational status and ship type -> COLREG rule-18 category
AIS_STATUS_CATEGORY = {2: "not-under-command", 3: "restricted-maneuverability", 4: "constrained-by-draught",
                       7: "fishing", 8: "sailing"}
AIS_TYPE_CATEGORY = {30: "fishing", 36: "sailing"}
UNKNOWN = "unknown"  # radar-only, or AIS without static data: the COLREG logic judges it as power-driven


@dataclass
class RawTarget:
    id: str
    source: str  # "ais" | "radar"
    latitude_deg: float
    longitude_deg: float
    course_deg: float
    speed_kn: float
    position_sigma_m: float
    quality: float
    category: str = UNKNOWN
    mmsi: int = 0
    name: str = ""
    updated: float = 0.0  # monotonic seconds


@dataclass
class OwnShip:
    latitude_deg: float = math.nan
    longitude_deg: float = math.nan
    course_deg: float = math.nan
    speed_kn: float = math.nan
    heading_deg: float = math.nan
    rate_of_turn_deg_min: float = math.nan
    depth_m: float = math.nan
    wind_speed_kn: float = math.nan
    wind_from_deg: float = math.nan
    position_valid: bool = False
    heading_valid: bool = False
    position_age_s: float = math.inf
    utc_s: float = math.nan  # the last fix's UTC time
    sources: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Timeouts:
    position_stale_s: float = 3.0
    ais_s: float = 60.0
    radar_s: float = 10.0


class BridgePicture:
    def __init__(self, timeouts: Timeouts = Timeouts()) -> None:
        self.timeouts = timeouts
        self.fix: Fix | None = None
        self.fix_time = 0.0
        self.motion: tuple[float, float, str] | None = None  # course, speed, source
        self.heading: tuple[float, float] | None = None  # heading, time
        self.turn: tuple[float, float] | None = None  # rate of turn, time
        self.depth: tuple[float, float, str] | None = None  # metres, time, source
        self.wind: tuple[Wind, float] | None = None
        self.targets: dict[str, RawTarget] = {}
        self.static: dict[int, AisReport] = {}  # AIS type 5/24 names and ship types by MMSI
        self.ais_status: dict[int, int] = {}  # last navigational status by MMSI (types 1-3)

    def apply(self, event, now: float) -> str:
        """One decoder event; returns "" or why it could not be used."""
        if isinstance(event, Fix):
            if math.isfinite(event.latitude_deg) and math.isfinite(event.longitude_deg):
                self.fix, self.fix_time = event, now
            if math.isfinite(event.course_deg) or math.isfinite(event.speed_kn):
                self.motion = (event.course_deg, event.speed_kn, event.source)
        elif isinstance(event, Motion):
            self.motion = (event.course_deg, event.speed_kn, event.source)
        elif isinstance(event, Heading):
            self.heading = (event.heading_deg, now)
        elif isinstance(event, RateOfTurn):
            self.turn = (event.deg_per_min, now)
        elif isinstance(event, Depth):
            self.depth = (event.depth_m, now, event.source)
        elif isinstance(event, Wind):
            self.wind = (event, now)
        elif isinstance(event, RadarTarget):
            return self._radar(event, now)
        elif isinstance(event, AisReport):
            return self._ais(event, now)
        return ""

    # -- targets ---------------------------------------------------------------------------------------------
    def _radar(self, event: RadarTarget, now: float) -> str:
        track_id = f"RADAR-{event.number:02d}"
        if event.status == "L":  # the radar lost it
            self.targets.pop(track_id, None)
            return ""
        heading = self._fresh(self.heading, now)
        if self.fix is None or ((event.bearing_relative or event.course_relative) and not math.isfinite(heading)):
            return f"{track_id}: needs own position and, for relative bearings, heading"
        true_bearing = (event.bearing_deg + (heading if event.bearing_relative else 0.0)) % 360.0
        course = (event.course_deg + (heading if event.course_relative else 0.0)) % 360.0
        north = event.range_nm * math.cos(math.radians(true_bearing))
        east = event.range_nm * math.sin(math.radians(true_bearing))
        lat, lon = to_geographic(north, east, self.fix.latitude_deg, self.fix.longitude_deg)
        self.targets[track_id] = RawTarget(track_id, "radar", lat, lon, course, event.speed_kn,
                                           50.0 + 0.01 * event.range_nm * NM_M, 0.7, name=event.name, updated=now)
        return ""

    def _ais(self, event: AisReport, now: float) -> str:
        key = f"AIS-{event.mmsi}"
        if event.message_type in (5, 24):  # static data: name and ship type for later position reports
            self.static[event.mmsi] = event
            if key in self.targets:
                self.targets[key].name, self.targets[key].category = event.name, self._category(event.mmsi)
            return ""
        if not (math.isfinite(event.latitude_deg) and math.isfinite(event.longitude_deg)):
            return f"AIS {event.mmsi}: position not available"
        if event.message_type in (1, 2, 3):
            self.ais_status[event.mmsi] = event.navigation_status
        static = self.static.get(event.mmsi)
        self.targets[key] = RawTarget(key, "ais", event.latitude_deg, event.longitude_deg, event.course_deg,
                                      event.speed_kn, 10.0, 1.0, self._category(event.mmsi), event.mmsi,
                                      static.name if static else "", now)
        return ""

    def _category(self, mmsi: int) -> str:
        """Rule 18: from the navigational status (not under command, fishing, ...), else the ship type."""
        if self.ais_status.get(mmsi) in AIS_STATUS_CATEGORY:
            return AIS_STATUS_CATEGORY[self.ais_status[mmsi]]
        static = self.static.get(mmsi)
        if static is not None:
            return AIS_TYPE_CATEGORY.get(static.ship_type, "power-driven")
        return UNKNOWN

    def current_targets(self, now: float) -> list[RawTarget]:
        """The targets still heard, after dropping those past their source's timeout."""
        for key in [k for k, t in self.targets.items()
                    if now - t.updated > (self.timeouts.radar_s if t.source == "radar" else self.timeouts.ais_s)]:
            del self.targets[key]
        return list(self.targets.values())

    # -- own ship --------------------------------------------------------------------------------------------
    def own_ship(self, now: float) -> OwnShip:
        own = OwnShip()
        if self.fix is not None:
            own.latitude_deg, own.longitude_deg = self.fix.latitude_deg, self.fix.longitude_deg
            own.position_age_s = now - self.fix_time
            own.position_valid = self.fix.valid and own.position_age_s <= self.timeouts.position_stale_s
            own.utc_s = self.fix.utc_s
            own.sources.append(self.fix.source)
        if self.motion is not None:
            own.course_deg, own.speed_kn = self.motion[0], self.motion[1]
            own.sources.append(self.motion[2])
        own.heading_deg = self._fresh(self.heading, now)
        own.heading_valid = math.isfinite(own.heading_deg)
        if own.heading_valid:
            own.sources.append("HDT")
        own.rate_of_turn_deg_min = self._fresh(self.turn, now)
        if self.depth is not None and now - self.depth[1] <= self.timeouts.position_stale_s:
            own.depth_m = self.depth[0]
            own.sources.append(self.depth[2])
        if self.wind is not None and now - self.wind[1] <= self.timeouts.position_stale_s:
            own.wind_speed_kn, own.wind_from_deg = true_wind(self.wind[0], own)
            own.sources.append("MWV")
        own.sources = list(dict.fromkeys(own.sources))
        return own

    def _fresh(self, reading: tuple | None, now: float) -> float:
        if reading is None or now - reading[1] > self.timeouts.position_stale_s:
            return math.nan
        return reading[0]


def true_wind(wind: Wind, own: OwnShip) -> tuple[float, float]:
    """(speed kn, direction from, true) of an MWV reading; a relative one needs heading and motion, else NaN."""
    if not wind.relative:
        return wind.speed_kn, wind.angle_deg % 360.0
    if not all(math.isfinite(v) for v in (own.heading_deg, own.course_deg, own.speed_kn)):
        return math.nan, math.nan
    # apparent wind (from heading + angle) minus own motion, as velocity vectors pointing where the air goes
    apparent_from = math.radians(own.heading_deg + wind.angle_deg)
    air_n, air_e = -wind.speed_kn * math.cos(apparent_from), -wind.speed_kn * math.sin(apparent_from)
    ship = math.radians(own.course_deg)
    true_n, true_e = air_n + own.speed_kn * math.cos(ship), air_e + own.speed_kn * math.sin(ship)
    speed = math.hypot(true_n, true_e)
    return speed, (math.degrees(math.atan2(-true_e, -true_n)) % 360.0) if speed > 1e-9 else 0.0
