"""COLREG rules 8 and 13-19 as deterministic code: classify each encounter, then decide own ship's action.

Classification (at one instant, from own ship's and the target's positions, courses and speeds):
- no risk (CPA at or beyond the safety distance, or TCPA in the past or beyond the horizon) -> `safe`;
- own ship abaft the target's beam (in its stern sector 112.5-247.5 deg) -> `overtaking` (13, give way);
- target in own ship's stern sector -> `overtaken` (13 and 17, stand on); with a risk, either one is closing;
- target within `head_on_bearing_deg` of the bow on a course within `head_on_course_deg` of reciprocal ->
  `head-on` (14, both give way; 14(c): in doubt it is head-on, hence the generous default tolerances);
- otherwise target to starboard -> `crossing-give-way` (15, 16), to port -> `crossing-stand-on` (15, 17).
Rule 18: a power-driven own ship gives way to a vessel not under command, restricted in her ability to
manoeuvre, constrained by her draught, fishing or sailing, except when that vessel overtakes (13 prevails).
Rule 19: in restricted visibility there is no give-way or stand-on (role `none`), but every risk needs action,
never a turn to port for a vessel forward of the beam, never a turn towards one abeam or abaft the beam.

Decision (`Navigator`, called at 1 Hz or more): as give-way vessel, one early, substantial, readily apparent
action (rule 8: a starboard course change of at least `min_course_change_deg`, else also a speed reduction to
half) chosen so that every target clears by the safety distance; as stand-on vessel, keep course and speed
until TCPA falls below `stand_on_act_tcpa_min` (17(a)(ii)) or the distance below `stand_on_must_act_nm` (17(b)),
then act the same way (never to port for a vessel on own port side). When every risk has passed and the route
is clear, return towards the goal. Every decision carries the rules and a rationale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from tango2_ros.core.settings import setting
from tango2_ros.sds.geometry import Kinematics, bearing, cpa, distance, relative_bearing, signed

CATEGORIES = ("power-driven", "sailing", "fishing", "restricted-maneuverability", "not-under-command",
              "constrained-by-draught")
RULE_18_PRIVILEGED = ("sailing", "fishing", "restricted-maneuverability", "not-under-command", "constrained-by-draught")
STERN_SECTOR = (112.5, 247.5)


@dataclass(frozen=True)
class ColregParameters:
    safety_distance_nm: float = setting(1.0, "Every target must pass at least this far.", 0.05, 20.0)
    horizon_min: float = setting(40.0, "Risks further ahead than this are not acted on yet.", 1.0, 240.0)
    head_on_bearing_deg: float = 15.0
    head_on_course_deg: float = 15.0
    restricted_visibility_nm: float = setting(2.0, "Rule 19 threshold.", 0.0, 100.0)
    stand_on_act_tcpa_min: float = setting(10.0, "Rule 17(a)(ii): a stand-on vessel may act below this TCPA "
                                           "(the give-way vessel is evidently not acting).", 0.5, 60.0)
    stand_on_must_act_nm: float = setting(1.5, "Rule 17(b): a stand-on vessel acts below this range (collision "
                                          "can no longer be avoided by the give-way vessel alone).", 0.1, 20.0)
    swap_hold_range_nm: float = setting(3.0, "No model is swapped while a vessel we must give way to (with a risk) is "
                                        "this close; 0 = only manoeuvres hold swaps.", 0.0, 50.0)
    min_course_change_deg: float = 30.0  # readily apparent (rule 8)
    max_course_change_deg: float = 90.0
    course_step_deg: float = 5.0


MANOEUVRING = ("altering", "avoiding", "returning", "resuming")


def swap_hold(decision: Decision, hold_range_nm: float) -> str:
    """Why no model should change now ('' = it may): own ship is manoeuvring, or a vessel we must give way to is
    within `hold_range_nm` (the model manager defers swaps meanwhile: tango2_ros.core.deployment)."""
    if decision.state in MANOEUVRING:
        return f"own ship is {decision.state}" + (f" for {', '.join(decision.target_ids)}" if decision.target_ids else "")
    near = [a.target_id for a in decision.assessments
            if a.must_act and a.role == "give-way" and a.distance_nm <= hold_range_nm]
    return f"giving way to {', '.join(near)} within {hold_range_nm:g} NM" if near else ""


def unfit_inputs(position_usable: bool, position_age_s: float, picture_known: bool, picture_lag_s: float,
                 picture_silent_s: float, stale_after_s: float) -> str:
    """Why no manoeuvre may be computed from these inputs, '' when they are fit: never act on old data.
    The target picture is stale only when it is both older than the position and not heard from lately."""
    if not position_usable:
        return "own-ship position lost or invalid: holding the last course, not acting on it"
    if position_age_s > stale_after_s:
        return f"own-ship position is {position_age_s:.1f} s old"
    if not picture_known:
        return "no target picture yet (the tracker publishes one, empty when the sea is)"
    if picture_lag_s > stale_after_s and picture_silent_s > stale_after_s:
        return "target picture is stale"
    return ""


@dataclass(frozen=True)
class Target:
    id: str
    kinematics: Kinematics
    category: str = "power-driven"


@dataclass(frozen=True)
class Assessment:
    target_id: str
    encounter: str
    role: str
    rules: tuple[int, ...]
    risk: bool
    cpa_nm: float
    tcpa_min: float
    distance_nm: float
    relative_bearing_deg: float

    @property
    def must_act(self) -> bool:
        return self.risk and self.role in ("give-way", "none")


def _in_stern_sector(relative: float) -> bool:
    return STERN_SECTOR[0] <= relative <= STERN_SECTOR[1]


def geometry_of(own: Kinematics, target: Kinematics, params: ColregParameters) -> str:
    """The encounter type from geometry alone (what it would be if there were a risk)."""
    seen_from_target = relative_bearing(target, own)
    seen_from_own = relative_bearing(own, target)
    if _in_stern_sector(seen_from_target):  # with a risk of collision this means closing from astern
        return "overtaking"
    if _in_stern_sector(seen_from_own):
        return "overtaken"
    reciprocal = abs(signed(target.course_deg - own.course_deg - 180.0))
    if abs(signed(seen_from_own)) <= params.head_on_bearing_deg and reciprocal <= params.head_on_course_deg:
        return "head-on"
    return "crossing-give-way" if seen_from_own < 180.0 else "crossing-stand-on"


def assess(own: Kinematics, target: Target, params: ColregParameters, visibility_nm: float = 10.0,
           own_category: str = "power-driven") -> Assessment:
    cpa_nm, tcpa = cpa(own, target.kinematics)
    risk = cpa_nm < params.safety_distance_nm and 0.0 <= tcpa <= params.horizon_min
    range_nm = distance(own, target.kinematics)
    if range_nm < params.safety_distance_nm and tcpa >= 0.0:
        risk = True  # already inside the safety distance and not yet opening
    relative = relative_bearing(own, target.kinematics)
    encounter = geometry_of(own, target.kinematics, params) if risk else "safe"
    role, rules = _role_and_rules(encounter, target.category, own_category, visibility_nm, params)
    return Assessment(target.id, encounter, role, rules, risk, cpa_nm, tcpa, range_nm, relative)


def _role_and_rules(encounter: str, category: str, own_category: str, visibility_nm: float,
                    params: ColregParameters) -> tuple[str, tuple[int, ...]]:
    if encounter == "safe":
        return "none", ()
    if visibility_nm < params.restricted_visibility_nm:
        return "none", (19,)
    if encounter == "overtaking":
        return "give-way", (13,)
    if encounter == "overtaken":
        return "stand-on", (13, 17)
    if own_category == "power-driven" and category in RULE_18_PRIVILEGED:
        return "give-way", (18,)
    if encounter == "head-on":
        return "give-way", (14,)
    if encounter == "crossing-give-way":
        return "give-way", (15, 16)
    return "stand-on", (15, 17)


@dataclass(frozen=True)
class Decision:
    state: str  # route | stand-on | altering (a new manoeuvre starts) | avoiding | returning | resuming | degraded
    course_deg: float
    speed_kn: float
    course_change_deg: float  # relative to the route course, positive to starboard
    speed_change_kn: float
    target_ids: tuple[str, ...]
    rules: tuple[int, ...]
    rationale: str
    assessments: tuple[Assessment, ...] = ()


@dataclass
class Navigator:
    """Own ship's decision-maker; keeps the chosen manoeuvre until every risk it answers has passed."""

    params: ColregParameters = field(default_factory=ColregParameters)
    cruise_speed_kn: float = 12.0
    maneuver: tuple[float, float] | None = None  # (course, speed) held while avoiding
    maneuver_targets: tuple[str, ...] = ()
    maneuver_rules: tuple[int, ...] = ()

    def decide(self, own: Kinematics, goal: tuple[float, float], targets: list[Target],
               visibility_nm: float = 10.0) -> Decision:
        route_course = bearing(own, Kinematics(goal[0], goal[1], 0.0, 0.0))
        on_route = own.with_course(route_course, self.cruise_speed_kn)
        assessments = tuple(assess(on_route, t, self.params, visibility_nm) for t in targets)
        acting = [a for a in assessments if a.must_act]
        standing = [a for a in assessments if a.risk and a.role == "stand-on"]
        must_now = [a for a in standing if a.tcpa_min <= self.params.stand_on_act_tcpa_min
                    or a.distance_nm <= self.params.stand_on_must_act_nm]

        if self.maneuver is not None:
            held = own.with_course(*self.maneuver)
            if (abs(signed(own.course_deg - self.maneuver[0])) > self.params.course_step_deg
                    or abs(own.speed_kn - self.maneuver[1]) > 0.5):
                return self._hold(route_course, assessments,
                                  "turning or slowing down: the manoeuvre takes effect before it is judged")
            if self._clears(held, targets) or not (acting or must_now):
                if self._route_clear(on_route, targets):
                    return self._resume(route_course, assessments)
                if self._answered_targets_passed(own, targets) and self._step_back(own, route_course, targets):
                    return self._hold(route_course, assessments, "the targets answered have passed: coming back "
                                      "towards the route as far as every target still clears", state="returning")
                return self._hold(route_course, assessments, "holding the manoeuvre until the targets have passed")
        if acting or must_now:
            return self._new_maneuver(own, route_course, targets, assessments, acting, must_now, visibility_nm)
        if standing:
            ids = tuple(a.target_id for a in standing)
            rules = tuple(sorted({r for a in standing for r in a.rules}))
            return Decision("stand-on", route_course, self.cruise_speed_kn, 0.0, 0.0, ids, rules,
                            f"stand-on for {', '.join(ids)}: keep course and speed (rule 17(a)(i))", assessments)
        return Decision("route", route_course, self.cruise_speed_kn, 0.0, 0.0, (), (), "no risk of collision: on route",
                        assessments)

    # -- manoeuvres ---------------------------------------------------------------------------------------------
    def _clears(self, own: Kinematics, targets: list[Target]) -> bool:
        """Every target passes at the safety distance or more (or has passed already)."""
        for target in targets:
            cpa_nm, tcpa = cpa(own, target.kinematics)
            if tcpa > 0 and cpa_nm < self.params.safety_distance_nm:
                return False
            if tcpa <= 0 and distance(own, target.kinematics) < self.params.safety_distance_nm * 0.5:
                return False
        return True

    def _route_clear(self, on_route: Kinematics, targets: list[Target]) -> bool:
        return all(not (0 < (t := cpa(on_route, x.kinematics))[1] and t[0] < self.params.safety_distance_nm)
                   for x in targets)

    def _worst_cpa(self, own: Kinematics, targets: list[Target]) -> float:
        values = [c for c, t in (cpa(own, x.kinematics) for x in targets) if t > 0]
        return min(values, default=float("inf"))

    def _new_maneuver(self, own: Kinematics, route_course: float, targets: list[Target], assessments,
                      acting, must_now, visibility_nm: float) -> Decision:
        answering = acting + must_now
        forbid_starboard = visibility_nm < self.params.restricted_visibility_nm and any(
            90.0 <= a.relative_bearing_deg <= 180.0 for a in answering)  # 19(d)(ii): not towards a vessel abeam/abaft
        # An alteration is judged from the heading the ship has (also mid-manoeuvre or while coming back to the
        # route): each action must itself be readily apparent and to starboard.
        base = own.course_deg
        turns = []
        change = self.params.min_course_change_deg
        while change <= self.params.max_course_change_deg and not forbid_starboard:
            turns.append((base + change, self.cruise_speed_kn))
            change += self.params.course_step_deg
        slower = [(base + c, self.cruise_speed_kn / 2) for c in (0.0, *(o[0] - base for o in turns))]
        # Give way by turning to starboard (passing astern of a crossing ship); when every ship to answer is on the
        # port side (a stand-on vessel that must act), slowing down lets it pass ahead instead of running beside it.
        all_port = all(a.relative_bearing_deg > 180.0 for a in answering)
        options = slower + turns if all_port else turns + slower
        choice = next((o for o in options if self._clears(own.with_course(*o), targets)), None)
        if choice is None:  # nothing clears everything: the option that keeps the nearest pass widest
            choice = max(options, key=lambda o: self._worst_cpa(own.with_course(*o), targets))
        if self.maneuver is not None and abs(signed(choice[0] - self.maneuver[0])) < 1.0 \
                and abs(choice[1] - self.maneuver[1]) < 0.1:
            return self._hold(route_course, assessments, "the manoeuvre in hand is still the best available")
        if abs(signed(choice[0] - own.course_deg)) < 1.0 and abs(choice[1] - own.speed_kn) < 1.0:
            # the best is to go on as the ship goes now (say, still slow after an earlier action, or just starting
            # to speed up again): no new alteration; a change under 1 kn is no manoeuvre another ship could see
            self.maneuver = (choice[0] % 360.0, choice[1])
            self.maneuver_targets = tuple(a.target_id for a in answering)
            return self._hold(route_course, assessments, "keeping the present course and speed clears the targets best")
        self.maneuver = (choice[0] % 360.0, choice[1])
        self.maneuver_targets = tuple(a.target_id for a in answering)
        self.maneuver_rules = tuple(sorted({8, *(r for a in answering for r in a.rules)}))
        change_deg, speed_change = signed(choice[0] - route_course), choice[1] - self.cruise_speed_kn
        why = ", ".join(f"{a.target_id} {a.encounter} ({a.role}, CPA {a.cpa_nm:.2f} NM in {a.tcpa_min:.1f} min)"
                        for a in answering)
        what = (f"alter course {change_deg:+.0f} deg to starboard" if change_deg else "keep course") + (
            f" and reduce speed to {choice[1]:.1f} kn" if speed_change else "")
        basis = "17(a)(ii)/17(b), " if must_now and not acting else ""
        return Decision("altering", self.maneuver[0], self.maneuver[1], change_deg, speed_change, self.maneuver_targets,
                        self.maneuver_rules, f"{what}: {why}; {basis}early, substantial and readily apparent (rule 8)",
                        assessments)

    def _answered_targets_passed(self, own: Kinematics, targets: list[Target]) -> bool:
        held = own.with_course(*self.maneuver)
        return all(cpa(held, t.kinematics)[1] <= 0.0 for t in targets if t.id in self.maneuver_targets)

    def _step_back(self, own: Kinematics, route_course: float, targets: list[Target]) -> bool:
        """Come back towards the route as far as every target still clears (a ship running parallel to us would
        otherwise keep us away from the route for as long as it stays there); True if the course changed."""
        course, speed = self.maneuver
        offset = signed(course - route_course)
        step = self.params.course_step_deg
        changed = False
        for back in range(1, int(abs(offset) / step) + 1):
            candidate = course - math.copysign(back * step, offset)
            if not self._clears(own.with_course(candidate, speed), targets):
                break
            self.maneuver, changed = (candidate % 360.0, speed), True
        return changed

    def _hold(self, route_course: float, assessments, why: str, state: str = "avoiding") -> Decision:
        course, speed = self.maneuver
        return Decision(state, course, speed, signed(course - route_course), speed - self.cruise_speed_kn,
                        self.maneuver_targets, self.maneuver_rules, why, assessments)

    def _resume(self, route_course: float, assessments) -> Decision:
        self.maneuver, self.maneuver_targets, self.maneuver_rules = None, (), ()
        return Decision("resuming", route_course, self.cruise_speed_kn, 0.0, 0.0, (), (8,),
                        "risk has passed and the route is clear: return to the route (rule 8(d) satisfied)", assessments)
