"""Scenario files (YAML) and the built-in scenarios: the 22 Imazu cases and textbook encounters.

    name: my-case
    visibility_nm: 10            # below the restricted-visibility threshold, rule 19 applies
    safety_distance_nm: 1.0
    duration_s: 3600
    origin: {lat: 35.0, lon: 129.0}   # optional: needed when ships are given in lat/lon
    own_ship: {north_nm: -6.0, east_nm: 0.0, course_deg: 0, speed_kn: 12, goal: {north_nm: 6.0, east_nm: 0.0}}
    targets:
      - {id: TS1, north_nm: 6.0, east_nm: 0.0, course_deg: 180, speed_kn: 12, category: power-driven, ais: true}

Any ship (and the goal) may give `lat`/`lon` instead of `north_nm`/`east_nm`; the origin then defaults to own
ship's position. A target may list `maneuvers: [{t_s: 600, course_deg: 90, speed_kn: 8}]`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from tango2_ros.errors import UserError
from tango2_ros.sds.colreg import CATEGORIES
from tango2_ros.sds.geometry import Kinematics, to_local

SHIP_KEYS = {"id", "north_nm", "east_nm", "lat", "lon", "course_deg", "speed_kn", "category", "ais", "goal", "maneuvers"}
TOP_KEYS = {"name", "description", "visibility_nm", "safety_distance_nm", "duration_s", "origin", "own_ship", "targets"}


@dataclass(frozen=True)
class TargetManeuver:
    t_s: float
    course_deg: float
    speed_kn: float


@dataclass(frozen=True)
class ShipSpec:
    id: str
    start: Kinematics
    category: str = "power-driven"
    ais: bool = True
    maneuvers: tuple[TargetManeuver, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    own: ShipSpec
    goal: tuple[float, float]
    targets: tuple[ShipSpec, ...]
    visibility_nm: float = 10.0
    safety_distance_nm: float = 1.0
    duration_s: float = 3600.0
    origin: tuple[float, float] = (0.0, 0.0)  # lat, lon of north/east (0, 0)
    description: str = ""
    extra: dict = field(default_factory=dict)
    goal_given: bool = True  # False: the file had no goal, own ship holds its present course


def parse_scenario(data, source: str = "scenario") -> Scenario:
    def fail(message: str) -> UserError:
        return UserError(f"{source}: {message}")

    if not isinstance(data, dict):
        raise fail("a scenario is a mapping (name, own_ship, targets, ...)")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}")
    if "own_ship" not in data:
        raise fail("'own_ship' is required")
    own_data = data["own_ship"]
    if not isinstance(own_data, dict):
        raise fail("'own_ship' must be a mapping")
    origin_data = data.get("origin")
    if origin_data is None and "lat" in own_data:
        origin_data = {"lat": own_data["lat"], "lon": own_data["lon"]}
    origin = (_number(origin_data, "lat", fail, "origin", -90, 90), _number(origin_data, "lon", fail, "origin", -180, 180)) \
        if origin_data is not None else (0.0, 0.0)
    has_origin = origin_data is not None
    own = _ship(own_data, "own_ship", origin, has_origin, fail)
    goal_data = own_data.get("goal")
    duration_s = _number(data, "duration_s", fail, "", 1.0, 86400.0, 3600.0)
    if goal_data is None:
        goal = _ahead(own.start, duration_s)
    elif isinstance(goal_data, dict):
        goal = _position(goal_data, "own_ship.goal", origin, has_origin, fail)
    else:
        raise fail("own_ship.goal must be a mapping (north_nm/east_nm or lat/lon)")
    targets_data = data.get("targets", [])
    if not isinstance(targets_data, list):
        raise fail("'targets' must be a list")
    targets = tuple(_ship(t, f"targets[{i}]", origin, has_origin, fail) for i, t in enumerate(targets_data))
    ids = [t.id for t in targets]
    if len(set(ids)) != len(ids):
        raise fail("target ids must be unique")
    return Scenario(
        name=str(data.get("name", source)), own=own, goal=goal, targets=targets,
        visibility_nm=_number(data, "visibility_nm", fail, "", 0.0, 1000.0, 10.0),
        safety_distance_nm=_number(data, "safety_distance_nm", fail, "", 0.01, 20.0, 1.0),
        duration_s=duration_s, origin=origin, description=str(data.get("description", "")),
        goal_given=goal_data is not None,
    )


def _ahead(start: Kinematics, duration_s: float) -> tuple[float, float]:
    """Without a goal own ship holds its present course: a goal twice as far ahead as it runs in the scenario."""
    run_nm = max(1.0, 2.0 * start.speed_kn * duration_s / 3600.0)
    course = math.radians(start.course_deg)
    return start.north_nm + run_nm * math.cos(course), start.east_nm + run_nm * math.sin(course)


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name (imazu-01 .. imazu-22, textbook names) or a YAML file."""
    if name_or_path in BUILTIN:
        return BUILTIN[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise UserError(f"scenario {name_or_path!r} is neither a file nor built in (built in: imazu-01..imazu-22, "
                        f"{', '.join(n for n in BUILTIN if not n.startswith('imazu'))})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: malformed YAML: {exc}") from exc
    return parse_scenario(data, str(path))


def _number(data, key, fail, where, low, high, default=None) -> float:
    value = data.get(key, default) if isinstance(data, dict) else None
    name = f"{where}.{key}" if where else key
    if value is None:
        raise fail(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise fail(f"{name} must be a number in [{low:g}, {high:g}], not {value!r}")
    return float(value)


def _position(data: dict, where: str, origin, has_origin: bool, fail) -> tuple[float, float]:
    if "lat" in data or "lon" in data:
        if not has_origin:
            raise fail(f"{where}: lat/lon needs an origin (or own ship given in lat/lon)")
        return to_local(_number(data, "lat", fail, where, -90, 90), _number(data, "lon", fail, where, -180, 180), *origin)
    return _number(data, "north_nm", fail, where, -1000, 1000), _number(data, "east_nm", fail, where, -1000, 1000)


def _ship(data, where: str, origin, has_origin: bool, fail) -> ShipSpec:
    if not isinstance(data, dict):
        raise fail(f"{where} must be a mapping")
    unknown = sorted(set(data) - SHIP_KEYS)
    if unknown:
        raise fail(f"{where}: unknown key(s) {', '.join(unknown)}")
    north, east = _position(data, where, origin, has_origin, fail)
    category = str(data.get("category", "power-driven"))
    if category not in CATEGORIES:
        raise fail(f"{where}.category {category!r} is not one of {', '.join(CATEGORIES)}")
    maneuvers = tuple(
        TargetManeuver(_number(m, "t_s", fail, f"{where}.maneuvers", 0, 86400), _number(m, "course_deg", fail,
                       f"{where}.maneuvers", 0, 360), _number(m, "speed_kn", fail, f"{where}.maneuvers", 0, 60))
        for m in data.get("maneuvers", []))
    return ShipSpec(
        id=str(data.get("id", "own" if where == "own_ship" else where)),
        start=Kinematics(north, east, _number(data, "course_deg", fail, where, 0, 360) % 360.0,
                         _number(data, "speed_kn", fail, where, 0, 60)),
        category=category, ais=bool(data.get("ais", True)), maneuvers=maneuvers,
    )


# -- built-in scenarios -----------------------------------------------------------------------------------------
# Imazu (1987), geometry as tabulated by Sawada, Sato & Majima (2021): own ship from (-6, 0) on 000 at 12 kn to
# (6, 0); every target reaches the origin at TCPA 30 min. (north, east, course, slow) with slow = 8.4 kn.
_IMAZU = {
    1: [(6, 0, 180, False)], 2: [(0, 6, 270, False)], 3: [(-4.2, 0, 0, True)], 4: [(-4.243, -4.243, 45, False)],
    5: [(6, 0, 180, False), (0, 6, 270, False)], 6: [(-5.909, 1.042, 350, False), (-4.243, 4.243, 315, False)],
    7: [(-4.2, 0, 0, True), (-4.243, 4.243, 315, False)], 8: [(6, 0, 180, False), (0, 6, 270, False)],
    9: [(-5.196, 3, 330, False), (0, 6, 270, False)], 10: [(0, 6, 270, False), (-5.796, -1.553, 15, False)],
    11: [(0, -6, 90, False), (-5.196, 3, 330, False)], 12: [(-4.243, 4.243, 315, False), (-5.909, 1.042, 350, False)],
    13: [(6, 0, 180, False), (-5.909, -1.042, 10, False), (-4.243, -4.243, 45, False)],
    14: [(-5.909, 1.042, 350, False), (-4.243, 4.243, 315, False), (0, 6, 270, False)],
    15: [(-4.2, 0, 0, True), (-4.243, 4.243, 315, False), (0, 6, 270, False)],
    16: [(-2.970, -2.970, 45, True), (0, -6, 90, False), (0, 6, 270, False)],
    17: [(-4.2, 0, 0, True), (-5.909, -1.042, 10, False), (-4.243, 4.243, 315, False)],
    18: [(4.243, 4.243, 225, False), (-5.796, 1.553, 345, False), (-5.196, 3, 330, False)],
    19: [(-5.796, -1.553, 15, False), (-5.796, 1.553, 345, False), (4.243, 4.243, 225, False)],
    20: [(-4.2, 0, 0, True), (-5.796, 1.553, 345, False), (0, 6, 270, False)],
    21: [(-5.796, 1.553, 345, False), (-5.796, -1.553, 15, False), (0, 6, 270, False)],
    22: [(-4.2, 0, 0, True), (-4.243, 4.243, 315, False), (0, 6, 270, False)],
}
_OWN = ShipSpec("own", Kinematics(-6.0, 0.0, 0.0, 12.0))


def _imazu(case: int) -> Scenario:
    targets = tuple(ShipSpec(f"TS{i + 1}", Kinematics(n, e, c, 8.4 if slow else 12.0))
                    for i, (n, e, c, slow) in enumerate(_IMAZU[case]))
    return Scenario(f"imazu-{case:02d}", _OWN, (6.0, 0.0), targets, duration_s=5400.0,
                    description=f"Imazu case {case}: {len(targets)} target(s) on collision courses, TCPA 30 min")


def _textbook() -> dict[str, Scenario]:
    head_on = (ShipSpec("TS1", Kinematics(6, 0, 180, 12)),)
    return {name: replace(scenario, duration_s=5400.0) for name, scenario in {
        "restricted-visibility-head-on": Scenario(
            "restricted-visibility-head-on", _OWN, (6.0, 0.0), head_on, visibility_nm=0.5,
            description="Fog (0.5 NM): a radar target ahead on a reciprocal course; rule 19"),
        "rule18-fishing-crossing-port": Scenario(
            "rule18-fishing-crossing-port", _OWN, (6.0, 0.0), (ShipSpec("F1", Kinematics(0, -6, 90, 12), "fishing"),),
            description="A fishing vessel crossing from port: rule 18 makes own ship give way"),
        "rule18-sailing-head-on": Scenario(
            "rule18-sailing-head-on", _OWN, (6.0, 0.0), (ShipSpec("S1", Kinematics(4, 0, 180, 6), "sailing"),),
            description="A sailing vessel ahead: own ship keeps out of the way (rule 18)"),
        "overtaken-by-fast-ship": Scenario(
            "overtaken-by-fast-ship", _OWN, (6.0, 0.0), (ShipSpec("TS1", Kinematics(-9, -0.3, 0, 20)),),
            description="A faster ship comes up from astern; own ship stands on (rule 13/17)"),
        "safe-parallel": Scenario(
            "safe-parallel", _OWN, (6.0, 0.0), (ShipSpec("TS1", Kinematics(0, 4, 180, 12)),),
            description="A ship passing 4 NM to starboard on a reciprocal course: no risk"),
    }.items()}


BUILTIN: dict[str, Scenario] = {**{f"imazu-{c:02d}": _imazu(c) for c in _IMAZU}, **_textbook()}
