"""The console's HTTP server: the page, the JSON API, the live feed over a WebSocket, and who may do what.

ROS-free: what the console shows arrives in a `LiveState`, what it does goes to a `ConsoleBackend` (the console
node's, which calls the model manager, the safety supervisor's topic and the bridge assistant over ROS) and to a
`ReadingRoom` (the PACS, for the radiologist). Every request is checked here in one order: route, session, role,
then for a change of state the request's origin, its CSRF token, its type and size, and its JSON. Refusals of
actions that change state go to the audit log with who asked.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from tango2_ros.console import websocket
from tango2_ros.console.accounts import AccountStore, LoginThrottle, Session, SessionStore, allowed
from tango2_ros.console.audit import AuditLog
from tango2_ros.console.live import CHANNEL_PERMISSION, CHANNELS, LiveState
from tango2_ros.console.texts import TEXTS, text
from tango2_ros.core.net import BackgroundHttpServer

COOKIE = "tango2_session"
MAX_BODY_BYTES = 64 * 1024
STATIC_NAME = re.compile(r"^[a-z0-9_-]+\.(html|js|css|svg)$")
CONTENT_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
                 "css": "text/css; charset=utf-8", "svg": "image/svg+xml", "png": "image/png"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
log = logging.getLogger("tango2.console")


class ConsoleError(Exception):
    """An answer other than success: the HTTP status, the text key (`err_<code>`), and what exactly."""

    def __init__(self, status: int, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.status, self.code, self.detail = status, code, detail


class BackendError(Exception):
    """The ROS side (or the PACS) could not do it: the message says why."""


class ConsoleBackend(Protocol):
    def models(self) -> list[dict]:
        """Each slot: {"slot", "model", "active_version", "state", "event", "versions": [...]}."""

    def swap(self, slot: str, version: str, force: bool) -> dict:
        """{"success", "message", "deferred", "active_version"} from the model manager."""

    def rollback(self, slot: str) -> dict:
        """{"success", "message", "active_version"}."""

    def emergency_stop(self, engaged: bool) -> None:
        """Engage or release the greenhouse's emergency stop."""

    def ask(self, question: str, language: str) -> dict:
        """The bridge assistant's answer: {"answer", "raw_answer", "corrections", "model"}."""


class ReadingRoom(Protocol):
    def worklist(self) -> list[dict]: ...
    def study(self, study_uid: str, sr_uid: str) -> dict: ...
    def slice_png(self, study_uid: str, series_uid: str, instance_uid: str) -> bytes: ...
    def sign(self, study_uid: str, sr_uid: str, findings_text: str, impression: str, signer: str) -> dict: ...


# path -> (method, permission needed; None: no session needed, the handler's name)
ROUTES: dict[str, tuple[str, str | None, str]] = {
    "/api/texts": ("GET", None, "texts"),
    "/api/login": ("POST", None, "login"),
    "/api/logout": ("POST", "view", "logout"),
    "/api/session": ("GET", "view", "session"),
    "/api/live": ("GET", "view", "live"),
    "/api/models": ("GET", "view", "models"),
    "/api/models/swap": ("POST", "swap", "swap"),
    "/api/models/rollback": ("POST", "rollback", "rollback"),
    "/api/farm/estop": ("POST", "estop", "estop"),
    "/api/ship/ask": ("POST", "ask", "ask"),
    "/api/medicine/worklist": ("GET", "patient-data", "worklist"),
    "/api/medicine/study": ("GET", "patient-data", "study"),
    "/api/medicine/slice": ("GET", "patient-data", "slice"),
    "/api/medicine/sign": ("POST", "sign", "sign"),
    "/api/audit": ("GET", "audit", "audit"),
}


class ConsoleServer(BackgroundHttpServer):
    def __init__(self, live: LiveState, backend: ConsoleBackend, accounts: AccountStore, audit: AuditLog,
                 address: str = "127.0.0.1", port: int = 8080, reading_room: ReadingRoom | None = None,
                 sessions: SessionStore | None = None, throttle: LoginThrottle | None = None) -> None:
        self.live, self.backend, self.accounts, self.audit = live, backend, accounts, audit
        self.reading_room = reading_room
        self.sessions = sessions or SessionStore()
        self.throttle = throttle or LoginThrottle()
        self.stopping = threading.Event()  # ends the live feeds, which outlast serve_forever
        super().__init__(_Handler, "console", self, address, port, "console-http")

    def stop(self) -> None:
        self.stopping.set()
        super().stop()


class _Handler(BaseHTTPRequestHandler):
    console: ConsoleServer
    protocol_version = "HTTP/1.1"
    server_version = "tango2-console"
    sys_version = ""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        """Actions are in the audit log; requests are not logged per line."""

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # -- the checks, in order ----------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        self.session: Session | None = self.console.sessions.get(self._cookie())
        self.body_read = False
        url = urlsplit(self.path)
        self.query = {}
        try:
            try:
                self.query = {key: values[-1] for key, values in parse_qs(url.query, max_num_fields=20).items()}
            except ValueError:
                raise ConsoleError(400, "bad_request", "more than 20 query fields") from None
            if method == "GET" and not url.path.startswith("/api/"):
                self._static(url.path)
                return
            if url.path not in ROUTES:
                raise ConsoleError(404, "not_found", url.path)
            route_method, permission, name = ROUTES[url.path]
            if method != route_method:
                raise ConsoleError(405, "method", f"{url.path} takes {route_method}")
            if permission is not None:
                self._authorise(permission, name)
            elif method == "POST":
                self._check_origin()  # a login: no session, so only its origin can be checked
            body = self._json_body() if method == "POST" else {}
            getattr(self, f"_api_{name}")(body)
        except ConsoleError as exc:
            self._discard_body()
            self._error(exc)
        except BackendError as exc:
            self._error(ConsoleError(503, "unavailable", str(exc)))
        except Exception:  # noqa: BLE001 - one bad request must not take the console down
            log.exception("console request %s %s failed", method, url.path)
            self._error(ConsoleError(500, "internal"))

    def _authorise(self, permission: str, action: str) -> None:
        if self.session is None:
            raise ConsoleError(401, "no_session")
        account = self.session.account
        if not allowed(account.role, permission):
            if self.command == "POST":
                self.console.audit.record(account.name, account.role, action, "refused", why="role")
            raise ConsoleError(403, "forbidden", f"{action} needs one of the roles allowed to {permission}")
        if self.command == "POST":
            self._check_origin()
            if self.headers.get("X-CSRF-Token", "") != self.session.csrf:
                self.console.audit.record(account.name, account.role, action, "refused", why="csrf")
                raise ConsoleError(403, "csrf")

    def _check_origin(self) -> None:
        """A browser names the page that sent a request; one from another site is refused (and so is a WebSocket
        opened by another site's page, which no CSRF token protects)."""
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != self.headers.get("Host", ""):
            raise ConsoleError(403, "origin", origin[:100])

    def _json_body(self) -> dict:
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise ConsoleError(415, "json_only")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise ConsoleError(411, "length")
        if int(length) > MAX_BODY_BYTES:
            raise ConsoleError(413, "too_large", f"at most {MAX_BODY_BYTES} bytes")
        self.body_read = True
        try:
            body = json.loads(self.rfile.read(int(length)))
        except (ValueError, UnicodeDecodeError):
            raise ConsoleError(400, "bad_request", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ConsoleError(400, "bad_request", "the body must be a JSON object")
        return body

    # -- public ------------------------------------------------------------------------------------------------
    def _static(self, path: str) -> None:
        name = "index.html" if path == "/" else path.removeprefix("/static/")
        if not STATIC_NAME.match(name):
            raise ConsoleError(404, "not_found", path)
        try:
            data = resources.files("tango2_ros.console").joinpath("static", name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise ConsoleError(404, "not_found", path) from None
        self._send(200, CONTENT_TYPES[name.rsplit(".", 1)[1]], data)

    def _api_texts(self, _body: dict) -> None:
        language = self.query.get("lang", "en")
        self._json(200, TEXTS.get(language, TEXTS["en"]))

    def _api_login(self, body: dict) -> None:
        name, password = body.get("user"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str) or not name or len(name) > 64:
            raise ConsoleError(400, "bad_request", "give \"user\" and \"password\" as strings")
        console = self.console
        if console.throttle.blocked(name):
            console.audit.record(name, "", "login", "refused", why="throttled")
            raise ConsoleError(429, "throttled")
        account = console.accounts.verify(name, password)
        if account is None:
            console.throttle.failed(name)
            console.audit.record(name, "", "login", "refused", why="password")
            raise ConsoleError(401, "wrong_password")
        console.throttle.succeeded(name)
        self.session = console.sessions.open(account)
        console.audit.record(account.name, account.role, "login", "done")
        cookie = f"{COOKIE}={self.session.token}; Path=/; HttpOnly; SameSite=Strict"
        self._json(200, self._who(), {"Set-Cookie": cookie})

    # -- any account -------------------------------------------------------------------------------------------
    def _who(self) -> dict:
        account = self.session.account
        channels = [c for c in CHANNELS if allowed(account.role, CHANNEL_PERMISSION[c])]
        return {"user": account.name, "role": account.role, "language": account.language,
                "display_name": account.signer, "csrf": self.session.csrf, "channels": channels,
                "may": sorted(action for action in ("swap", "rollback", "estop", "estop-release", "sign", "audit")
                              if allowed(account.role, action))}

    def _api_session(self, _body: dict) -> None:
        self._json(200, self._who())

    def _api_logout(self, _body: dict) -> None:
        self.console.sessions.close(self.session.token)
        self.console.audit.record(self.session.account.name, self.session.account.role, "logout", "done")
        self._json(200, {"ok": True}, {"Set-Cookie": f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"})

    def _api_models(self, _body: dict) -> None:
        self._json(200, {"slots": self.console.backend.models()})

    def _api_live(self, _body: dict) -> None:
        """The live feed: every channel the role may see at once, then each channel again when it changes."""
        self._check_origin()
        problem = websocket.handshake_problem(self.headers)
        if problem:
            raise ConsoleError(400, "bad_request", problem)
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", websocket.accept_key(self.headers["Sec-WebSocket-Key"]))
        self.end_headers()
        self.close_connection = True
        socket_ = websocket.WebSocket(self.connection)
        role, token = self.session.account.role, self.session.token
        channels = tuple(c for c in CHANNELS if allowed(role, CHANNEL_PERMISSION[c]))
        seen: dict[str, int] = {}
        try:
            while not socket_.closed and not self.console.stopping.is_set():
                if self.console.sessions.get(token, touch=False) is None:
                    socket_.close(websocket.POLICY_VIOLATION, "session ended")
                    break
                for channel, data in self.console.live.changed_since(seen, channels, 1.0).items():
                    socket_.send_text(json.dumps({"channel": channel, "data": data}, ensure_ascii=False))
                socket_.poll()
        except (OSError, ConnectionError):
            pass
        finally:
            socket_.close(websocket.GOING_AWAY)

    def _api_ask(self, body: dict) -> None:
        question = _text_field(body, "question", 500)
        self._json(200, self.console.backend.ask(question, self.session.account.language))

    # -- operators -----------------------------------------------------------------------------------------------
    def _api_swap(self, body: dict) -> None:
        slot, version = _text_field(body, "slot", 64), _text_field(body, "version", 64)
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise ConsoleError(400, "bad_request", "\"force\" is true or false")
        answer = self.console.backend.swap(slot, version, force)
        self._changed("swap", answer, slot=slot, version=version, force=force)

    def _api_rollback(self, body: dict) -> None:
        slot = _text_field(body, "slot", 64)
        self._changed("rollback", self.console.backend.rollback(slot), slot=slot)

    def _api_estop(self, body: dict) -> None:
        engaged = body.get("engaged")
        if not isinstance(engaged, bool):
            raise ConsoleError(400, "bad_request", "\"engaged\" is true or false")
        account = self.session.account
        if not engaged and not allowed(account.role, "estop-release"):
            self.console.audit.record(account.name, account.role, "estop-release", "refused", why="role")
            raise ConsoleError(403, "forbidden", "releasing the emergency stop needs an operator")
        self.console.backend.emergency_stop(engaged)
        self._changed("estop" if engaged else "estop-release", {"success": True, "engaged": engaged})

    # -- radiologists ------------------------------------------------------------------------------------------
    def _room(self) -> ReadingRoom:
        if self.console.reading_room is None:
            raise ConsoleError(503, "unavailable", "no PACS is configured for this console")
        return self.console.reading_room

    def _api_worklist(self, _body: dict) -> None:
        self._json(200, {"drafts": self._room().worklist()})

    def _api_study(self, _body: dict) -> None:
        study, sr = _uid(self.query, "study"), _uid(self.query, "sr")
        self._json(200, self._room().study(study, sr))

    def _api_slice(self, _body: dict) -> None:
        png = self._room().slice_png(_uid(self.query, "study"), _uid(self.query, "series"),
                                     _uid(self.query, "instance"))
        self._send(200, CONTENT_TYPES["png"], png)

    def _api_sign(self, body: dict) -> None:
        study, sr = _uid(body, "study"), _uid(body, "sr")
        findings, impression = _text_field(body, "findings_text", 8000), _text_field(body, "impression", 4000)
        answer = self._room().sign(study, sr, findings, impression, self.session.account.signer)
        self._changed("sign", {"success": True, **answer}, study_key=answer.get("study_key", ""))

    def _api_audit(self, _body: dict) -> None:
        self._json(200, {"entries": self.console.audit.tail(200)})

    # -- answers -----------------------------------------------------------------------------------------------
    def _changed(self, action: str, answer: dict, **detail) -> None:
        """Audit an action that was carried out (or deferred, or failed on the ROS side) and answer it."""
        account = self.session.account
        outcome = "deferred" if answer.get("deferred") else "done" if answer.get("success") else "failed"
        self.console.audit.record(account.name, account.role, action, outcome, **detail,
                                  message=str(answer.get("message", ""))[:300])
        self._json(200 if answer.get("success") else 409, answer)

    def _cookie(self) -> str | None:
        try:
            morsel = SimpleCookie(self.headers.get("Cookie", "")).get(COOKIE)
        except CookieError:
            return None
        return morsel.value if morsel else None

    def _language(self) -> str:
        return self.session.account.language if self.session else self.query.get("lang", "en")

    def _error(self, error: ConsoleError) -> None:
        self._json(error.status, {"error": error.code, "message": text(self._language(), f"err_{error.code}"),
                                  "detail": error.detail})

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, "application/json", json.dumps(body, ensure_ascii=False).encode(), headers)

    def _send(self, status: int, content_type: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def _discard_body(self) -> None:
        """Read what the refused request sent, so the connection can serve the next one; or close it."""
        if self.body_read or self.command in ("GET", "HEAD"):
            return
        length = self.headers.get("Content-Length", "0")
        if length.isdigit() and int(length) <= MAX_BODY_BYTES:
            self.rfile.read(int(length))
        else:
            self.close_connection = True


def _text_field(body: dict, name: str, max_chars: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ConsoleError(400, "bad_request", f"\"{name}\" is a non-empty string")
    if len(value) > max_chars:
        raise ConsoleError(400, "bad_request", f"\"{name}\" has at most {max_chars} characters")
    return value.strip()


UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _uid(source: dict, name: str) -> str:
    value = source.get(name)
    if not isinstance(value, str) or not UID.match(value) or len(value) > 64:
        raise ConsoleError(400, "bad_request", f"\"{name}\" is a DICOM UID")
    return value
