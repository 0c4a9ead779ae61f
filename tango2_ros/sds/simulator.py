"""Closed-loop encounter simulation: own ship follows the decisions it is given, targets keep course and speed
(or the manoeuvres their scenario lists). The decision source is a function, so the same loop runs with the
Navigator in process or with the colreg node over ROS.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from tango2_ros.sds.colreg import ColregParameters, Decision, Target, assess
from tango2_ros.sds.geometry import Kinematics, distance, signed
from tango2_ros.sds.scenario import Scenario, ShipSpec

SIM_EPOCH_S = 1_000_000_000  # simulated instants are stamped from here (a recognisable, non-zero time)
COLLISION_NM = 0.05  # about 90 m: hulls touch
GOAL_REACHED_NM = 0.2


@dataclass(frozen=True)
class Dynamics:
    max_turn_rate_deg_s: float = 1.0
    max_acceleration_kn_s: float = 0.1


@dataclass
class Track:
    times_s: list[float] = field(default_factory=list)
    positions: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class SimulationResult:
    scenario: str
    collision: bool
    min_distance_nm: float
    targets: list[dict]
    maneuvers: list[dict]
    path_extra_distance_pct: float
    reached_goal: bool
    duration_s: float
    own_track: Track
    target_tracks: dict[str, Track]
    decisions: int

    def as_dict(self) -> dict:
        return {"scenario": self.scenario, "collision": self.collision, "min_distance_nm": round(self.min_distance_nm, 3),
                "targets": self.targets, "maneuvers": self.maneuvers,
                "path_extra_distance_pct": round(self.path_extra_distance_pct, 2), "reached_goal": self.reached_goal,
                "duration_s": self.duration_s, "decisions": self.decisions}


def target_at(spec: ShipSpec, t_s: float) -> Kinematics:
    """A target's state at time t: straight legs between its scheduled manoeuvres."""
    state, last_t = spec.start, 0.0
    for maneuver in sorted(spec.maneuvers, key=lambda m: m.t_s):
        if maneuver.t_s > t_s:
            break
        state = state.moved((maneuver.t_s - last_t) / 60.0).with_course(maneuver.course_deg, maneuver.speed_kn)
        last_t = maneuver.t_s
    return state.moved((t_s - last_t) / 60.0)


def initial_assessment(scenario: Scenario, params: ColregParameters) -> list[dict]:
    own = scenario.own.start
    rows = []
    for spec in scenario.targets:
        a = assess(own, Target(spec.id, spec.start, spec.category), params, scenario.visibility_nm)
        rows.append({"id": spec.id, "category": spec.category, "encounter": a.encounter, "role": a.role,
                     "rules": list(a.rules), "risk": a.risk, "cpa_nm": round(a.cpa_nm, 3), "tcpa_min": round(a.tcpa_min, 2),
                     "distance_nm": round(a.distance_nm, 3), "relative_bearing_deg": round(a.relative_bearing_deg, 1)})
    return rows


Decide = Callable[[float, Kinematics, list[Target]], Decision | None]


def simulate(scenario: Scenario, decide: Decide, params: ColregParameters, *, step_s: float = 1.0,
             decision_period_s: float = 1.0, dynamics: Dynamics = Dynamics()) -> SimulationResult:
    """Run until own ship reaches its goal or the scenario's duration ends."""
    own = scenario.own.start
    commanded = (own.course_deg, own.speed_kn)
    start_to_goal = math.hypot(scenario.goal[0] - own.north_nm, scenario.goal[1] - own.east_nm)
    own_track, target_tracks = Track(), {s.id: Track() for s in scenario.targets}
    min_distances = {s.id: float("inf") for s in scenario.targets}
    maneuvers: list[dict] = []
    path, t, decisions, next_decision = 0.0, 0.0, 0, 0.0
    reached = False
    while t <= scenario.duration_s:
        targets = [Target(s.id, target_at(s, t), s.category) for s in scenario.targets]
        for target in targets:
            min_distances[target.id] = min(min_distances[target.id], distance(own, target.kinematics))
            target_tracks[target.id].times_s.append(t)
            target_tracks[target.id].positions.append((target.kinematics.north_nm, target.kinematics.east_nm))
        own_track.times_s.append(t)
        own_track.positions.append((own.north_nm, own.east_nm))
        if math.hypot(scenario.goal[0] - own.north_nm, scenario.goal[1] - own.east_nm) < GOAL_REACHED_NM:
            reached = True
            break
        if t >= next_decision:
            next_decision += decision_period_s
            decision = decide(t, own, targets)
            if decision is not None:
                decisions += 1
                if decision.state == "altering":
                    # an alteration, as the bridge sees it: from the present heading and speed
                    maneuvers.append({"t_s": t, "course_change_deg": round(signed(decision.course_deg - own.course_deg), 1),
                                      "speed_change_kn": round(decision.speed_kn - own.speed_kn, 2),
                                      "target_ids": list(decision.target_ids), "rules": list(decision.rules),
                                      "rationale": decision.rationale})
                commanded = (decision.course_deg, decision.speed_kn)
        own = _steer(own, commanded, step_s, dynamics)
        path += own.speed_kn / 3600.0 * step_s
        t += step_s
    remaining = math.hypot(scenario.goal[0] - own.north_nm, scenario.goal[1] - own.east_nm)
    direct = start_to_goal - (GOAL_REACHED_NM if reached else 0.0)
    extra = ((path + (0.0 if reached else remaining)) / direct - 1.0) * 100.0 if direct > 0 else 0.0
    rows = initial_assessment(scenario, params)
    for row in rows:
        row["min_distance_nm"] = round(min_distances[row["id"]], 3)
    overall = min(min_distances.values(), default=float("inf"))
    return SimulationResult(scenario.name, overall < COLLISION_NM, overall, rows, maneuvers, extra, reached, t,
                            own_track, target_tracks, decisions)


def _steer(own: Kinematics, commanded: tuple[float, float], step_s: float, dynamics: Dynamics) -> Kinematics:
    """Turn and change speed towards the command within the ship's limits, then move one step."""
    turn = signed(commanded[0] - own.course_deg)
    limit = dynamics.max_turn_rate_deg_s * step_s
    course = own.course_deg + max(-limit, min(limit, turn))
    speed_step = dynamics.max_acceleration_kn_s * step_s
    speed = own.speed_kn + max(-speed_step, min(speed_step, commanded[1] - own.speed_kn))
    return own.with_course(course, speed).moved(step_s / 60.0)
