"""Swap windows through real nodes of the sds profile: the colreg node holds model swaps while own ship manoeuvres,
the model manager defers an operator's swap of the bridge assistant's model until the manoeuvre is over, and an
operator can force one. Own ship and the target picture are published as the bridge and the tracker publish them."""
import pytest

pytestmark = pytest.mark.ros
NS = "/t19window"
MODEL = "smollm2-135m-instruct"


class Bridge:
    """The probe's view: own-ship and target publishers, the decisions, the colreg node's holds, the manager's
    events and its swap service."""

    def __init__(self, node) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile

        from helpers.diagnostics import DiagnosticsWatcher
        from tango2_msgs.msg import ModelStatus, NavigationDecision, OwnShipState, TargetArray
        from tango2_msgs.srv import SwapModel

        self.events: list = []
        node.create_subscription(ModelStatus, f"{NS}/models/status", self.events.append,
                                 QoSProfile(depth=50, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.decisions: list = []
        node.create_subscription(NavigationDecision, f"{NS}/sds/decision", self.decisions.append, 50)
        self.colreg = DiagnosticsWatcher(node, f"{NS}/colreg_node")
        self.manager = DiagnosticsWatcher(node, f"{NS}/models")
        self._own = node.create_publisher(OwnShipState, f"{NS}/sds/own_ship", 10)
        self._targets = node.create_publisher(TargetArray, f"{NS}/sds/targets", 10)
        self._swap = node.create_client(SwapModel, f"{NS}/models/swap")
        assert self._swap.wait_for_service(timeout_sec=30)

    def sense(self, course_deg: float, head_on_nm: float | None) -> None:
        """Own ship at the origin on `course_deg`; a vessel meeting us head-on `head_on_nm` ahead (None: clear)."""
        from tango2_msgs.msg import OwnShipState, Target, TargetArray
        from tango2_ros.sds.geometry import to_geographic

        picture = TargetArray()
        if head_on_nm is not None:
            lat, lon = to_geographic(head_on_nm, 0.1, 0.0, 0.0)
            picture.targets.append(Target(id="AIS-440123450", sources=Target.SOURCE_AIS, latitude_deg=lat,
                                          longitude_deg=lon, course_deg=180.0, speed_kn=12.0,
                                          category=Target.CATEGORY_POWER_DRIVEN))
        self._targets.publish(picture)
        self._own.publish(OwnShipState(latitude_deg=0.0, longitude_deg=0.0, course_over_ground_deg=course_deg,
                                       speed_over_ground_kn=12.0, position_valid=True))

    def steer_until(self, course_deg: float, head_on_nm: float | None, states: tuple[str, ...]):
        """Sense until the colreg node decides one of `states`: that decision (None after 20 s)."""
        from helpers.ros import wait_until

        since = len(self.decisions)

        def decided():
            self.sense(course_deg, head_on_nm)
            return next((d for d in self.decisions[since:] if d.state in states), None)

        return decided() if wait_until(lambda: decided() is not None, 20) else None

    def says_hold(self, predicate, since: int) -> bool:
        """The colreg node's swap hold, in a status it sent after the first `since` ones."""
        from helpers.ros import wait_until

        return wait_until(lambda: any(predicate(self.colreg.values(s).get("swap_hold", ""))
                                      for s in self.colreg.statuses[since:]), 10)

    def manager_heeds_hold(self, since: int) -> bool:
        """The manager's /diagnostics name the colreg node's hold (the probe and the manager each hear /diagnostics
        in their own time: a swap asked for before the manager heard of the hold would rightly go through)."""
        from helpers.ros import wait_until

        return wait_until(lambda: any("colreg_node: own ship is" in self.manager.values(s).get("swap_holds", "")
                                      for s in self.manager.statuses[since:]), 10)

    def saw(self, event: str, version: str, timeout: float) -> bool:
        from helpers.ros import wait_until

        return wait_until(lambda: any(e.event == event and e.model.version == version for e in self.events), timeout)

    def swap(self, version: str, force: bool = False):
        from helpers.ros import result_of
        from tango2_msgs.srv import SwapModel

        return result_of(self._swap.call_async(SwapModel.Request(name=MODEL, version=version, force=force)), 120)


def test_a_swap_requested_mid_manoeuvre_happens_only_after_it(tmp_path):
    from helpers.lifecycle import bring_up
    from helpers.registry import llm_arguments, make_keys, manager_arguments, publish
    from helpers.ros import ros_node, spawn, stop, wait_until
    from tango2_ros.core.runtime.default_models import default_llm_path
    from tango2_ros.sds.geometry import to_geographic

    make_keys(tmp_path, "fleet")
    for version in ("1.0.0", "1.1.0"):
        publish(tmp_path, MODEL, version, default_llm_path())
    goal = to_geographic(12.0, 0.0, 0.0, 0.0)
    processes = [
        spawn(["-m", "tango2_ros.nodes.colreg_node", "--ros-args", "-r", "__node:=colreg_node", "-r", f"__ns:={NS}",
               "-p", f"goal_lat_deg:={goal[0]}", "-p", f"goal_lon_deg:={goal[1]}", "-p", "diagnostics_period_s:=0.2"]),
        spawn(llm_arguments(NS, "n_parallel:=1", "n_ctx_per_seq:=512")),
        spawn(manager_arguments(tmp_path, NS, MODEL, **{"reconcile_period_s": 0.3, "llm.version": "1.0.0",
                                                       "llm.health_budget_s": 30.0, "llm.max_deferral_s": 120.0,
                                                       "diagnostics_period_s": 0.2})),
    ]
    try:
        with ros_node("t19_bridge") as node:
            for name in ("colreg_node", "llm_node", "models"):
                bring_up(node, f"{NS}/{name}")
            bridge = Bridge(node)
            assert bridge.saw("loaded", "1.0.0", 90)
            altered = bridge.steer_until(0.0, 6.0, ("altering",))
            assert altered is not None
            assert bridge.says_hold(lambda hold: hold.startswith("own ship is"), 0)
            assert bridge.manager_heeds_hold(0)
            asked = bridge.swap("1.1.0")
            assert not asked.success and asked.deferred and asked.active_version == "1.0.0", asked.message
            assert "own ship is" in asked.message and "colreg_node" in asked.message
            assert bridge.saw("deferred", "1.1.0", 10)
            for _ in range(10):  # the manoeuvre goes on for a few seconds: the swap waits
                bridge.sense(altered.target_course_deg, 5.5)
                wait_until(lambda: False, 0.3)
            assert not any(e.event == "swapped" for e in bridge.events)

            # the vessel has passed: own ship resumes its route, the hold ends and the deferred swap is done
            held = len(bridge.colreg.statuses)
            assert bridge.steer_until(altered.target_course_deg, None, ("resuming", "route"))
            assert bridge.steer_until(0.0, None, ("route",))
            assert bridge.says_hold(lambda hold: hold == "", held)
            assert bridge.saw("swapped", "1.1.0", 90)

            # an operator's override: a swap back while own ship manoeuvres again
            clear = len(bridge.colreg.statuses)
            assert bridge.steer_until(0.0, 6.0, ("altering", "avoiding"))
            assert bridge.says_hold(lambda hold: hold.startswith("own ship is"), clear)
            assert bridge.manager_heeds_hold(len(bridge.manager.statuses))
            forced = bridge.swap("1.0.0", force=True)
            assert forced.success and not forced.deferred and forced.active_version == "1.0.0", forced.message
    finally:
        outputs = "".join(stop(process) for process in processes)
    assert "Traceback" not in outputs, outputs[max(0, outputs.find("Traceback") - 2000):][:6000]
