"""The operator console's ROS side: what the stack publishes, kept in the console's `LiveState`, and what an
account may do, carried out through the stack's services, topics and actions (tango2_ros.console.server's
ConsoleBackend). The console node wires these to its parameters; the HTTP rules stay ROS-free."""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.action import ActionClient
from rclpy.qos import DurabilityPolicy, QoSProfile
from std_msgs.msg import Bool

from tango2_msgs.action import AskBridge
from tango2_msgs.msg import (ActuatorCommand, CTReport, GreenhouseState, ModelStatus, NavigationDecision,
                             OwnShipState, SceneDescription, TargetArray)
from tango2_msgs.srv import ListModels, Rollback, SwapModel
from tango2_ros.console.live import LiveState
from tango2_ros.console.server import BackendError
from tango2_ros.ros.actions import goal_result, threaded_wait
from tango2_ros.ros.conversions import console as view
from tango2_ros.ros.deployments import reported_shadow_scores, slot_rows
from tango2_ros.sdf.crops import PRESETS

HISTORY_POINTS = 720  # climate points kept for the plots (six hours at one state per 30 s)
PROPOSALS_KEPT, DRAFTS_KEPT = 50, 50
SERVICE_WAIT_S = 3.0


class StackFeed:
    """Subscribes the stack's topics (relative names, in the node's namespace) and the manager's slot events."""

    def __init__(self, node, live: LiveState, manager: str) -> None:
        self.live = live
        self.slots: dict[str, ModelStatus] = {}
        self.shadows: dict[str, dict] = {}
        self._descriptions: dict[str, dict] = {}
        subscriptions = (
            (OwnShipState, "sds/own_ship", lambda m: live.update("ship", own_ship=view.own_ship_view(m))),
            (TargetArray, "sds/targets", lambda m: live.update("ship", targets=view.targets_view(m))),
            (NavigationDecision, "sds/decision", lambda m: live.update("ship", decision=view.decision_view(m))),
            (SceneDescription, "sds/scene", self._on_scene),
            (GreenhouseState, "sdf/state", self._on_greenhouse),
            (ActuatorCommand, "sdf/command",
             lambda m: live.append("farm", "proposals", view.command_view(m), PROPOSALS_KEPT)),
            (Bool, "sdf/emergency_stop", lambda m: live.update("farm", emergency_stop=m.data)),
            (CTReport, "sdm/report", lambda m: live.append("medicine", "drafts", view.report_view(m), DRAFTS_KEPT)))
        for kind, topic, callback in subscriptions:
            node.create_subscription(kind, topic, callback, 10)
        latched = QoSProfile(depth=50, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(ModelStatus, f"{manager}/status", self._on_model_status, latched)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)

    def _on_greenhouse(self, message: GreenhouseState) -> None:
        preset = PRESETS.get(message.crop)
        bands = {} if preset is None else {"temperature": list(preset.temp_band(message.is_day)),
                                           "humidity": list(preset.rh_band_pct), "co2": list(preset.co2_band_ppm)}
        self.live.append("farm", "history", view.climate_point(message), HISTORY_POINTS)
        self.live.update("farm", state=view.greenhouse_view(message), bands=bands)

    def _on_scene(self, message: SceneDescription) -> None:
        """The newest description in each language (a scene_llm per language serves crews that read both)."""
        self._descriptions[message.language or "en"] = view.scene_view(message)
        self.live.update("ship", descriptions=dict(self._descriptions))

    def _on_model_status(self, message: ModelStatus) -> None:
        self.slots[message.slot] = message
        self.live.update("models", events={slot: view.status_view(m) for slot, m in dict(self.slots).items()})

    def _on_diagnostics(self, message: DiagnosticArray) -> None:
        """The scores of candidates in shadow, as their judging nodes report them."""
        for _judge, score in reported_shadow_scores(message):
            if score != self.shadows.get(score["model"]):
                self.shadows[score["model"]] = score
                self.live.update("models", shadows=dict(self.shadows))


class StackBackend:
    """What the console does (tango2_ros.console.server.ConsoleBackend), called from its HTTP threads while the
    node's executor spins: the model manager's services, the emergency stop topic, the bridge assistant's action."""

    def __init__(self, node, feed: StackFeed, manager: str, ask_action: str, timeout_s: float) -> None:
        self.feed, self.ask_action, self.timeout_s = feed, ask_action, timeout_s
        group = node.coroutine_group
        self._manager = {kind: node.create_client(kind, f"{manager}/{name}", callback_group=group)
                         for kind, name in ((ListModels, "list"), (SwapModel, "swap"), (Rollback, "rollback"))}
        self._ask = ActionClient(node, AskBridge, ask_action, callback_group=group)
        self._estop = node.create_publisher(Bool, "sdf/emergency_stop", 10)

    def _call(self, kind, request):
        client = self._manager[kind]
        if not client.wait_for_service(timeout_sec=SERVICE_WAIT_S):
            raise BackendError(f"the model manager ({client.srv_name}) is not available")
        future = client.call_async(request)
        if not threaded_wait(future, self.timeout_s):
            raise BackendError(f"no answer from {client.srv_name} within {self.timeout_s:.0f} s")
        return future.result()

    def models(self) -> list[dict]:
        listed = self._call(ListModels, ListModels.Request()).models
        return slot_rows(dict(self.feed.slots), listed, dict(self.feed.shadows))  # copies: the executor may add meanwhile

    def swap(self, slot: str, version: str, force: bool) -> dict:
        event = self.feed.slots.get(slot)
        model = event.model.name if event is not None else ""
        answer = self._call(SwapModel, SwapModel.Request(name=model, version=version, slot=slot, force=force))
        return {"success": answer.success, "message": answer.message, "deferred": answer.deferred,
                "active_version": answer.active_version}

    def rollback(self, slot: str) -> dict:
        answer = self._call(Rollback, Rollback.Request(slot=slot))
        return {"success": answer.success, "message": answer.message, "active_version": answer.active_version}

    def emergency_stop(self, engaged: bool) -> None:
        self._estop.publish(Bool(data=engaged))
        self.feed.live.update("farm", emergency_stop=engaged)

    def ask(self, question: str, language: str) -> dict:
        if not self._ask.wait_for_server(timeout_sec=SERVICE_WAIT_S):
            raise BackendError(f"the bridge assistant ({self.ask_action}) is not available")
        sent = self._ask.send_goal_async(AskBridge.Goal(question=question, language=language))
        if not threaded_wait(sent, SERVICE_WAIT_S) or not sent.result().accepted:
            raise BackendError("the bridge assistant did not take the question")
        response = goal_result(sent.result(), threaded_wait, self.timeout_s)
        if response is None:
            raise BackendError("the bridge assistant did not answer in time")
        result = response.result
        return {"success": result.success, "error": result.error, "answer": result.answer,
                "raw_answer": result.raw_answer, "corrections": list(result.corrections), "model": result.model}
