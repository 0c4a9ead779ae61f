"""console: the operator console in a browser, served from this machine (tango2_ros.console).

Feeds the page from the stack's topics (the ship's picture, decision and description; the greenhouse's climate,
proposals and verdicts; new chest-CT drafts; the model manager's slot events) and carries out what an account's
role allows: swaps and rollbacks through the model manager's services, the greenhouse's emergency stop on
`sdf/emergency_stop`, questions to the bridge assistant (`sds/ask`), and the radiologist's sign-off in the PACS
(`pacs_dicomweb`). Accounts, the audit log and the corrections log live in `home` ($TANGO2_CONSOLE_HOME).
"""
from __future__ import annotations

from pathlib import Path

from tango2_ros.console.accounts import AccountStore, SessionStore, console_home
from tango2_ros.console.audit import AuditLog
from tango2_ros.console.live import LiveState
from tango2_ros.console.server import ConsoleServer
from tango2_ros.nodes.base import OK, WARN, Tango2Node, run_node
from tango2_ros.ros.console_stack import StackBackend, StackFeed


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
        self._server: ConsoleServer | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def configure(self) -> None:
        home = Path(self.param("home")) if self.param("home") else console_home()
        manager = self.param("model_manager").rstrip("/")
        feed = StackFeed(self, self.live, manager)
        backend = StackBackend(self, feed, manager, self.param("ask_action"), self.param("timeout_s"))
        self._server = ConsoleServer(self.live, backend, AccountStore(home), AuditLog(home / "audit.jsonl"),
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



def main(args: list[str] | None = None) -> int:
    return run_node(ConsoleNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
