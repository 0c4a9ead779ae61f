"""Plane geometry of ship encounters in a local frame: positions in nautical miles north/east of an origin,
courses true (degrees clockwise from north), speeds in knots, times in minutes.

Over the few miles of an encounter an equirectangular projection around the origin is exact enough (errors of
metres), so lat/lon input and north/east input give the same picture.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

NM_PER_DEG_LAT = 60.0
NM_M = 1852.0  # metres in a nautical mile


@dataclass(frozen=True)
class Kinematics:
    north_nm: float
    east_nm: float
    course_deg: float
    speed_kn: float

    def __post_init__(self) -> None:
        # always floats: an int reaching a ROS float64 field serialises as garbage (5e-324 for 1), silently
        for name in ("north_nm", "east_nm", "course_deg", "speed_kn"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def velocity(self) -> tuple[float, float]:
        """(north, east) in NM per minute."""
        rad = math.radians(self.course_deg)
        per_min = self.speed_kn / 60.0
        return per_min * math.cos(rad), per_min * math.sin(rad)

    def moved(self, minutes: float) -> "Kinematics":
        vn, ve = self.velocity
        return Kinematics(self.north_nm + vn * minutes, self.east_nm + ve * minutes, self.course_deg, self.speed_kn)

    def with_course(self, course_deg: float, speed_kn: float | None = None) -> "Kinematics":
        return Kinematics(self.north_nm, self.east_nm, course_deg % 360.0,
                          self.speed_kn if speed_kn is None else speed_kn)


def normalize(angle_deg: float) -> float:
    """Into [0, 360)."""
    return angle_deg % 360.0


def signed(angle_deg: float) -> float:
    """Into (-180, 180]: positive to starboard (clockwise)."""
    value = (angle_deg + 180.0) % 360.0 - 180.0
    return 180.0 if value == -180.0 else value


def bearing(from_: Kinematics, to: Kinematics) -> float:
    """True bearing from one ship to the other."""
    return normalize(math.degrees(math.atan2(to.east_nm - from_.east_nm, to.north_nm - from_.north_nm)))


def distance(a: Kinematics, b: Kinematics) -> float:
    return math.hypot(a.north_nm - b.north_nm, a.east_nm - b.east_nm)


def relative_bearing(observer: Kinematics, other: Kinematics) -> float:
    """Where the other ship is seen from the observer's bow, [0, 360) clockwise."""
    return normalize(bearing(observer, other) - observer.course_deg)


def cpa(own: Kinematics, target: Kinematics) -> tuple[float, float]:
    """Closest point of approach: (distance in NM, time in minutes; negative when it is in the past)."""
    rn, re = target.north_nm - own.north_nm, target.east_nm - own.east_nm
    (on, oe), (tn, te) = own.velocity, target.velocity
    vn, ve = tn - on, te - oe
    speed2 = vn * vn + ve * ve
    if speed2 < 1e-12:  # no relative motion: the distance stays as it is
        return math.hypot(rn, re), 0.0
    t = -(rn * vn + re * ve) / speed2
    return math.hypot(rn + vn * t, re + ve * t), t


def to_local(lat: float, lon: float, origin_lat: float, origin_lon: float) -> tuple[float, float]:
    """WGS-84 degrees to NM north/east of the origin (equirectangular at the origin's latitude)."""
    north = (lat - origin_lat) * NM_PER_DEG_LAT
    east = signed(lon - origin_lon) * NM_PER_DEG_LAT * math.cos(math.radians(origin_lat))
    return north, east


def to_geographic(north_nm: float, east_nm: float, origin_lat: float, origin_lon: float) -> tuple[float, float]:
    lat = origin_lat + north_nm / NM_PER_DEG_LAT
    lon = origin_lon + east_nm / (NM_PER_DEG_LAT * math.cos(math.radians(origin_lat)))
    return lat, lon


@dataclass(frozen=True)
class Relative:
    """Where another vessel is seen from own ship: offsets and range in metres, true bearing, and the closest point
    of approach (NaN when either motion is unknown)."""

    north_m: float
    east_m: float
    bearing_deg: float
    range_m: float
    cpa_m: float
    tcpa_s: float


def relative(own: Kinematics, other: Kinematics, motions_known: bool = True) -> Relative:
    """`other` relative to `own`, both in the same local frame."""
    if motions_known:
        closest, minutes = cpa(own, other)
        cpa_m, tcpa_s = closest * NM_M, minutes * 60.0
    else:
        cpa_m = tcpa_s = math.nan
    return Relative((other.north_nm - own.north_nm) * NM_M, (other.east_nm - own.east_nm) * NM_M,
                    bearing(own, other), distance(own, other) * NM_M, cpa_m, tcpa_s)
