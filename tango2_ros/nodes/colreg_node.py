"""colreg_node: the deterministic COLREG decision for own ship, from own-ship state and tracked targets.

Subscribes `sds/own_ship` (OwnShipState) and `sds/targets` (TargetArray); publishes `sds/decision`
(NavigationDecision) once per instant of the picture, when the older of the two inputs' stamps passes the last
instant decided on, stamped with it; and at least at `decision_rate_hz` from a watchdog. The navigator keeps state
(a manoeuvre under way), so it is never asked about a mix of two instants (own ship of one second, targets of the
one before), which the arrival order on two topics would otherwise decide. Without a valid, fresh own-ship
position or with stale targets the decision is DEGRADED: it says why, recommends nothing and never acts on old
data. The route goal, cruise speed and visibility are parameters (changing them restarts the decision-making, as
for a new passage). The logic is tango2_ros.sds.colreg; this node only converts between WGS-84 messages and its
local frame (NM around own ship).
"""
from __future__ import annotations

import math
import threading
import time

from visualization_msgs.msg import MarkerArray

from tango2_msgs.msg import NavigationDecision, OwnShipState, TargetArray
from tango2_ros.nodes.base import ERROR, OK, WARN, Tango2Node, run_node
from tango2_ros.ros.conversions.markers import markers
from tango2_ros.ros.conversions.ship import decision_to_ros, degraded_decision_to_ros, target_from_ros
from tango2_ros.ros.conversions.stamps import older_stamp, stamp_to_seconds
from tango2_ros.sds.colreg import ColregParameters, Decision, Navigator, Target, swap_hold, unfit_inputs
from tango2_ros.sds.geometry import Kinematics, to_local

RESETTING = ("goal_lat_deg", "goal_lon_deg", "cruise_speed_kn", "visibility_nm", "safety_distance_nm")


class ColregNode(Tango2Node):
    def __init__(self) -> None:
        super().__init__("colreg_node")
        self.declare("goal_lat_deg", 0.0, "Route goal latitude (WGS-84).", min_value=-90.0, max_value=90.0)
        self.declare("goal_lon_deg", 0.0, "Route goal longitude (WGS-84).", min_value=-180.0, max_value=180.0)
        self.declare("cruise_speed_kn", 12.0, "Speed on the route.", min_value=0.1, max_value=60.0)
        self.declare("visibility_nm", 10.0, "Visibility; below restricted_visibility_nm rule 19 applies.",
                     min_value=0.0, max_value=1000.0)
        self.declare_settings(ColregParameters)
        self.declare("stale_after_s", 3.0, "Own-ship or target data older than this degrade the decision.",
                     min_value=0.1, max_value=600.0)
        self.declare("decision_rate_hz", 1.0, "Minimum rate of decisions (the watchdog).", min_value=0.1,
                     max_value=50.0)
        self.declare("markers_rate_hz", 2.0, "Most frequent rviz markers on sds/markers; 0 = none.", min_value=0.0,
                     max_value=50.0)
        self._lock = threading.Lock()
        self._targets: TargetArray | None = None
        self._own: OwnShipState | None = None
        self._targets_received = self._own_received = self._markers_sent = 0.0
        self._decided_instant: float | None = None  # the picture's instant (s) the navigator last decided on
        self._navigator = self._new_navigator()
        self._publisher = self._markers = None
        self._decisions = 0
        self.add_post_set_parameters_callback(self._on_parameters_set)

    def executor_threads(self) -> int:
        """Callbacks are short and ordered: one thread (rclpy's multi-threaded executor adds latency here)."""
        return 1

    def _new_navigator(self) -> Navigator:
        return Navigator(self.settings(ColregParameters), cruise_speed_kn=self.param("cruise_speed_kn"))

    def _on_parameters_set(self, parameters) -> None:
        """A new goal, speed, visibility or rule threshold starts the decision-making afresh."""
        if any(p.name in RESETTING or p.name in ColregParameters.__dataclass_fields__ for p in parameters):
            with self._lock:  # a new passage: nothing of the old picture carries over
                self._navigator = self._new_navigator()
                self._own, self._targets, self._decided_instant = None, None, None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def configure(self) -> None:
        # lifecycle publishers: nothing is published unless the node is active
        self._publisher = self.create_lifecycle_publisher(NavigationDecision, "sds/decision", 10)
        self._markers = self.create_lifecycle_publisher(MarkerArray, "sds/markers", 10)
        self._markers_sent = 0.0
        self.create_subscription(OwnShipState, "sds/own_ship", self._on_own_ship, 10)
        self.create_subscription(TargetArray, "sds/targets", self._on_targets, 10)
        self._watchdog = self.create_timer(1.0 / self.param("decision_rate_hz"), self._on_watchdog)
        self.set_status(WARN, "waiting for own-ship state")

    # -- inputs ----------------------------------------------------------------------------------------------
    def _on_targets(self, message: TargetArray) -> None:
        with self._lock:
            self._targets, self._targets_received = message, time.monotonic()
        self._decide_on_new_picture()

    def _on_own_ship(self, message: OwnShipState) -> None:
        self._own, self._own_received = message, time.monotonic()
        self._decide_on_new_picture()

    def _decide_on_new_picture(self) -> None:
        """Decide once the picture is of a later instant than the last decision's: both inputs of that instant have
        arrived, in whichever order. The decision carries the older input's stamp (the picture's age), so a
        consumer, or the lock-step simulator, knows which instant it answers. Without a target picture, or with a
        stale one, every own-ship update is answered: with the reason no manoeuvre is computed. Inputs without a
        stamp (zero: a driver that does not stamp) cannot be put in order: every update of either is answered."""
        own, targets = self._own, self._targets
        if own is None:
            return
        instant = own.header.stamp if targets is None else older_stamp(own.header.stamp, targets.header.stamp)
        if targets is not None and time.monotonic() - self._targets_received <= self.param("stale_after_s"):
            seconds = stamp_to_seconds(instant)
            if seconds > 0 and self._decided_instant is not None and seconds <= self._decided_instant:
                return
            self._decided_instant = seconds
        self._publish(self._decide(own), instant)

    def _on_watchdog(self) -> None:
        if time.monotonic() - self._own_received > self.param("stale_after_s"):
            silent = "never received" if not self._own_received else \
                f"silent for {time.monotonic() - self._own_received:.1f} s"
            self._publish(degraded_decision_to_ros(f"own-ship state {silent}: no manoeuvre is computed"), None)

    # -- deciding --------------------------------------------------------------------------------------------
    def _decide(self, own_msg: OwnShipState) -> NavigationDecision:
        with self._lock:
            targets_msg, received, navigator = self._targets, self._targets_received, self._navigator
        usable = own_msg.position_valid and all(math.isfinite(v) for v in (
            own_msg.latitude_deg, own_msg.longitude_deg, own_msg.course_over_ground_deg, own_msg.speed_over_ground_kn))
        lag = 0.0 if targets_msg is None else \
            stamp_to_seconds(own_msg.header.stamp) - stamp_to_seconds(targets_msg.header.stamp)
        problem = unfit_inputs(usable, own_msg.position_age_s, targets_msg is not None, lag,
                               time.monotonic() - received, self.param("stale_after_s"))
        if problem:
            return degraded_decision_to_ros(problem)
        origin = (own_msg.latitude_deg, own_msg.longitude_deg)
        own = Kinematics(0.0, 0.0, own_msg.course_over_ground_deg % 360.0, own_msg.speed_over_ground_kn)
        goal = to_local(self.param("goal_lat_deg"), self.param("goal_lon_deg"), *origin)
        targets = [target_from_ros(t, origin) for t in targets_msg.targets]
        targets = [t for t in targets if t is not None]
        decision = navigator.decide(own, goal, targets, self.param("visibility_nm"))
        self.hold_swaps(swap_hold(decision, self.param("swap_hold_range_nm")))  # no model changes mid-manoeuvre
        self._publish_markers(own, targets, decision, own_msg.header.stamp)
        return decision_to_ros(decision)

    def _publish_markers(self, own: Kinematics, targets: list[Target], decision: Decision, stamp) -> None:
        rate = self.param("markers_rate_hz")
        now = time.monotonic()
        if rate <= 0 or now - self._markers_sent < 1.0 / rate or not self._markers.is_activated:
            return
        self._markers_sent = now
        self._markers.publish(markers(own, targets, decision, stamp))

    def _publish(self, decision: NavigationDecision, stamp) -> None:
        if self._publisher is None or not self._publisher.is_activated:
            return
        decision.header.stamp = stamp if stamp is not None else self.get_clock().now().to_msg()
        decision.header.frame_id = "own_ship"
        self._publisher.publish(decision)
        self._decisions += 1
        if decision.status == NavigationDecision.STATUS_DEGRADED:
            self.set_status(ERROR, decision.status_reason)
        else:
            self.set_status(OK, f"deciding: {decision.state}")
        self.set_values(decisions=self._decisions, state=decision.state, rules=list(decision.rules))


def main(args: list[str] | None = None) -> int:
    return run_node(ColregNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
