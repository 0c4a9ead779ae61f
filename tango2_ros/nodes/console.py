"""console: the operator console in a browser, served from this machine (tango2_ros.console).

Feeds the page from the stack's topics (the ship's picture, decision and description; the greenhouse's climate,
proposals and verdicts; new chest-CT drafts; the model manager's slot events) and carries out what an account's
role allows: swaps and rollbacks through the model manager's services, the greenhouse's emergency stop on
`sdf/emergency_stop`, questions to the bridge assistant (`sds/ask`), and the radiologist's sign-off in the PACS
(`pacs_dicomweb`). Accounts, the audit log and the corrections log live in `home` ($TANGO2_CONSOLE_HOME).
"""
from __future__ import annotations

from pathlib import Path

from rclpy.action import ActionClient
from rclpy.qos import DurabilityPolicy, QoSProfile
from std_msgs.msg import Bool

from tango2_msgs.action import AskBridge
from tango2_msgs.msg import (ActuatorCommand, CTReport, GreenhouseState, ModelStatus, NavigationDecision,
                             OwnShipState, SceneDescription, TargetArray)
from tango2_msgs.srv import ListModels, Rollback, SwapModel
from tango2_ros.console.accounts import AccountStore, SessionStore, console_home
from tango2_ros.console.audit import AuditLog
from tango2_ros.console.live import LiveState
from tango2_ros.console.server import BackendError, ConsoleServer
from tango2_ros.nodes.base import OK, WARN, Tango2Node, run_node
from tango2_ros.ros.actions import goal_result, threaded_wait
from tango2_ros.ros.conversions import console as view
from tango2_ros.sdf.crops import PRESETS

HISTORY_POINTS = 720  # climate points kept for the plots (six hours at one state per 30 s)
PROPOSALS_KEPT, DRAFTS_KEPT = 50, 50
SERVICE_WAIT_S = 3.0


class ConsoleNode(Tango2Node):
    def __init__(self) -> None:
        super().__init__("console")
        self.declare("address", "127.0.0.1", "Address the console serves on (plain HTTP: put a TLS proxy in front "
                     "for other machines).")
        self.declare("port", 8080, "TCP port (0 = any free port, reported on /diagnostics).", min_value=0,
                     max_value=65535)
        self.declare("home", "", "Accounts, audit and corrections log; empty = $TANGO2_CONSOLE_HOME or "
                     "~/.tango2/console.")
        self.declare("session_idle_s", 1800.0, "A session ends after this long without a request.", min_value=10.0,
                     max_value=86400.0)
        self.declare("model_manager", "/tango2/models", "The model manager whose slots the console shows.")
        self.declare("ask_action", "/tango2/sds/ask", "The bridge assistant's AskBridge action.")
        self.declare("timeout_s", 60.0, "Longest a swap, rollback or question may take.", min_value=1.0,
                     max_value=3600.0)
        self.declare("pacs_dicomweb", "", "DICOMweb root of the PACS with the AI drafts; empty = no reading room.")
        self.declare("pacs_rest", "", "Orthanc's REST root: signed drafts are deleted; empty = they stay superseded.")
        self.declare("fhir_dir", "", "Where ct_report writes FHIR DiagnosticReports (made final on signing).")
        self.declare("study_salt", "tango2", "ct_report's salt of the de-identified study key.")
        self.live = LiveState()
        self._slots: dict[str, dict] = {}
        self._descriptions: dict[str, dict] = {}
        self._server: ConsoleServer | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def configure(self) -> None:
        home = Path(self.param("home")) if self.param("home") else console_home()
        manager = self.param("model_manager").rstrip("/")
        group = self.coroutine_group
        self._manager = {kind: self.create_client(kind, f"{manager}/{name}", callback_group=group)
                         for kind, name in ((ListModels, "list"), (SwapModel, "swap"), (Rollback, "rollback"))}
        self._ask = ActionClient(self, AskBridge, self.param("ask_action"), callback_group=group)
        self._estop = self.create_publisher(Bool, "sdf/emergency_stop", 10)
        latched = QoSProfile(depth=50, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        subscriptions = ((OwnShipState, "sds/own_ship", lambda m: self.live.update("ship", own_ship=view.own_ship_view(m))),
                         (TargetArray, "sds/targets", lambda m: self.live.update("ship", targets=view.targets_view(m))),
                         (NavigationDecision, "sds/decision",
                          lambda m: self.live.update("ship", decision=view.decision_view(m))),
                         (SceneDescription, "sds/scene", self._on_scene),
                         (GreenhouseState, "sdf/state", self._on_greenhouse),
                         (ActuatorCommand, "sdf/command",
                          lambda m: self.live.append("farm", "proposals", view.command_view(m), PROPOSALS_KEPT)),
                         (Bool, "sdf/emergency_stop", lambda m: self.live.update("farm", emergency_stop=m.data)),
                         (CTReport, "sdm/report",
                          lambda m: self.live.append("medicine", "drafts", view.report_view(m), DRAFTS_KEPT)))
        for kind, topic, callback in subscriptions:
            self.create_subscription(kind, topic, callback, 10)
        self.create_subscription(ModelStatus, f"{manager}/status", self._on_model_status, latched)
        self._server = ConsoleServer(self.live, self, AccountStore(home), AuditLog(home / "audit.jsonl"),
                                     self.param("address"), self.param("port"), self._reading_room(home),
                                     SessionStore(idle_s=self.param("session_idle_s")))
        accounts = len(self._server.accounts.names())
        self.set_status(WARN if accounts == 0 else OK, "configured, not serving", port=self._server.port,
                        accounts=accounts, home=home)

    def _reading_room(self, home: Path):
        if not self.param("pacs_dicomweb"):
            return None
        from tango2_ros.console.reading_room import PacsReadingRoom
        from tango2_ros.sdm.signoff import SignOff, SignOffSettings

        return PacsReadingRoom(SignOff(SignOffSettings(
            self.param("pacs_dicomweb"), self.param("pacs_rest"), self.param("fhir_dir"), self.param("study_salt"),
            str(home / "report-corrections.jsonl"))))

    def activate(self) -> None:
        self._server.start()
        url = f"http://{self.param('address')}:{self._server.port}/"
        if self._server.accounts.names():
            self.set_status(OK, f"serving {url}", url=url)
        else:
            self.set_status(WARN, f"serving {url}, but no account exists: tango2 console adduser NAME --role ...",
                            url=url)

    def cleanup(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    # -- topics ----------------------------------------------------------------------------------------------
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
        self._slots[message.slot] = view.status_view(message)
        self.live.update("models", slots=dict(self._slots))

    # -- the console's backend (tango2_ros.console.server.ConsoleBackend), called from HTTP threads -----------
    def _call(self, kind, request):
        client = self._manager[kind]
        if not client.wait_for_service(timeout_sec=SERVICE_WAIT_S):
            raise BackendError(f"the model manager ({client.srv_name}) is not available")
        future = client.call_async(request)
        if not threaded_wait(future, self.param("timeout_s")):
            raise BackendError(f"no answer from {client.srv_name} within {self.param('timeout_s'):.0f} s")
        return future.result()

    def models(self) -> list[dict]:
        listed = self._call(ListModels, ListModels.Request()).models
        slots = []
        for slot, event in sorted(dict(self._slots).items()):  # the executor's threads may add a slot meanwhile
            versions = sorted({m.version for m in listed if m.name == event["model"]})
            slots.append({"slot": slot, "model": event["model"], "active_version": event["version"]
                          if event["state"] == "active" else event["previous_version"], "state": event["state"],
                          "event": event["event"], "reason": event["reason"], "versions": versions})
        return slots

    def swap(self, slot: str, version: str, force: bool) -> dict:
        model = self._slots.get(slot, {}).get("model", "")
        answer = self._call(SwapModel, SwapModel.Request(name=model, version=version, slot=slot, force=force))
        return {"success": answer.success, "message": answer.message, "deferred": answer.deferred,
                "active_version": answer.active_version}

    def rollback(self, slot: str) -> dict:
        answer = self._call(Rollback, Rollback.Request(slot=slot))
        return {"success": answer.success, "message": answer.message, "active_version": answer.active_version}

    def emergency_stop(self, engaged: bool) -> None:
        self._estop.publish(Bool(data=engaged))
        self.live.update("farm", emergency_stop=engaged)

    def ask(self, question: str, language: str) -> dict:
        if not self._ask.wait_for_server(timeout_sec=SERVICE_WAIT_S):
            raise BackendError(f"the bridge assistant ({self.param('ask_action')}) is not available")
        sent = self._ask.send_goal_async(AskBridge.Goal(question=question, language=language))
        if not threaded_wait(sent, SERVICE_WAIT_S) or not sent.result().accepted:
            raise BackendError("the bridge assistant did not take the question")
        response = goal_result(sent.result(), threaded_wait, self.param("timeout_s"))
        if response is None:
            raise BackendError("the bridge assistant did not answer in time")
        result = response.result
        return {"success": result.success, "error": result.error, "answer": result.answer,
                "raw_answer": result.raw_answer, "corrections": list(result.corrections), "model": result.model}


def main(args: list[str] | None = None) -> int:
    return run_node(ConsoleNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
