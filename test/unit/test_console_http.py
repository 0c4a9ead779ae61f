"""The console's HTTP rules on a real server on loopback: accounts, sessions, roles, CSRF, origins, malformed and
oversized requests, the audit log, the live WebSocket feed and what each role sees on it.

The ROS side is not here (these tests run with ROS unimportable): the console's backend is a recorder that
says what it was asked, so each refusal can be shown to stop a request before it reaches the stack. The ROS
adapter and the PACS are tested in test/ros/test_console.py and test/unit/test_signoff.py.
"""
import json
import re
import socket
import threading
import time

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tango2_ros.console.accounts import AccountStore, LoginThrottle, SessionStore
from tango2_ros.console.audit import AuditLog
from tango2_ros.console.live import LiveState
from tango2_ros.console.server import MAX_BODY_BYTES, ConsoleServer
from tango2_ros.console.texts import TEXTS
from tango2_ros.errors import UserError

PASSWORD = "correct horse battery"
TEXT_CALL = r'(?<![A-Za-z_.])t\("([a-z0-9_]+)"\)'  # t("key") in the page's script


class Recorder:
    """The console's backend: records each request and answers as the model manager would."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.fail_next = False

    def models(self):
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("a bug in the backend")
        return [{"slot": "llm", "model": "sds-bridge", "active_version": "1.0.0-lora", "state": "active",
                 "event": "loaded", "reason": "", "versions": ["1.0.0-lora"]}]

    def swap(self, slot, version, force):
        self.calls.append(("swap", slot, version, force))
        return {"success": version != "9.9.9", "message": f"{slot} now serves {version}", "deferred": False,
                "active_version": version}

    def rollback(self, slot):
        self.calls.append(("rollback", slot))
        return {"success": True, "message": "rolled back", "active_version": "1.0.0"}

    def emergency_stop(self, engaged):
        self.calls.append(("estop", engaged))

    def ask(self, question, language):
        self.calls.append(("ask", question, language))
        return {"success": True, "answer": f"answer to {question}", "raw_answer": "", "corrections": [], "model": ""}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def console(tmp_path):
    accounts = AccountStore(tmp_path / "home")
    for name, role in (("val", "viewer"), ("otto", "operator"), ("rita", "radiologist"), ("ada", "admin")):
        accounts.add(name, role, PASSWORD, language="ko" if name == "otto" else "en")
    clock = Clock()
    server = ConsoleServer(LiveState(), Recorder(), accounts, AuditLog(tmp_path / "home" / "audit.jsonl"), port=0,
                           sessions=SessionStore(idle_s=600, clock=clock), throttle=LoginThrottle(clock=clock)).start()
    server.clock = clock
    server.url = f"http://127.0.0.1:{server.port}"
    yield server
    server.stop()


def login(console, name: str) -> requests.Session:
    session = requests.Session()
    answer = session.post(f"{console.url}/api/login", json={"user": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    session.headers["X-CSRF-Token"] = answer.json()["csrf"]
    return session


def audit(console) -> list[tuple[str, str, str]]:
    return [(e["user"], e["action"], e["outcome"]) for e in console.audit.tail()]


def test_login_sets_a_strict_http_only_cookie_and_refuses_wrong_passwords(console):
    answer = requests.post(f"{console.url}/api/login", json={"user": "otto", "password": PASSWORD})
    assert answer.status_code == 200
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and PASSWORD not in cookie
    assert answer.json()["role"] == "operator" and answer.json()["language"] == "ko"
    assert set(answer.json()["may"]) == {"swap", "rollback", "estop", "estop-release"}
    wrong = requests.post(f"{console.url}/api/login", json={"user": "otto", "password": "guess"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "wrong_password" and "Set-Cookie" not in wrong.headers
    assert requests.post(f"{console.url}/api/login", json={"user": "nobody", "password": PASSWORD}).status_code == 401
    cross_site = requests.post(f"{console.url}/api/login", json={"user": "otto", "password": PASSWORD},
                               headers={"Origin": "http://evil.example"})
    assert cross_site.status_code == 403 and "Set-Cookie" not in cross_site.headers
    for malformed in ({"user": "otto"}, {"user": 5, "password": PASSWORD}, {"user": "x" * 100, "password": "p"}):
        assert requests.post(f"{console.url}/api/login", json=malformed).status_code == 400
    assert ("otto", "login", "refused") in audit(console) and ("otto", "login", "done") in audit(console)


def test_guessing_a_password_is_throttled_per_account_for_a_window(console):
    for _ in range(5):
        assert requests.post(f"{console.url}/api/login", json={"user": "ada", "password": "guess"}).status_code == 401
    blocked = requests.post(f"{console.url}/api/login", json={"user": "ada", "password": PASSWORD})
    assert blocked.status_code == 429  # even the right password, until the window has passed
    assert requests.post(f"{console.url}/api/login", json={"user": "otto", "password": PASSWORD}).status_code == 200
    console.clock.now += 301
    assert requests.post(f"{console.url}/api/login", json={"user": "ada", "password": PASSWORD}).status_code == 200


def test_every_role_may_read_the_models_and_no_one_without_a_session(console):
    assert requests.get(f"{console.url}/api/models").status_code == 401
    assert requests.get(f"{console.url}/api/models", cookies={"tango2_session": "made-up"}).status_code == 401
    for name in ("val", "otto", "rita", "ada"):
        answer = login(console, name).get(f"{console.url}/api/models")
        assert answer.status_code == 200 and answer.json()["slots"][0]["slot"] == "llm"


def test_a_swap_needs_an_operator_this_sessions_csrf_token_and_the_consoles_own_origin(console):
    body = {"slot": "llm", "version": "1.1.0"}
    viewer = login(console, "val")
    refused = viewer.post(f"{console.url}/api/models/swap", json=body)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    operator = login(console, "otto")
    no_token = requests.post(f"{console.url}/api/models/swap", json=body, cookies=operator.cookies)
    assert no_token.status_code == 403 and no_token.json()["error"] == "csrf"
    other_token = operator.post(f"{console.url}/api/models/swap", json=body,
                                headers={"X-CSRF-Token": viewer.headers["X-CSRF-Token"]})
    assert other_token.status_code == 403
    cross_site = operator.post(f"{console.url}/api/models/swap", json=body, headers={"Origin": "http://evil.example"})
    assert cross_site.status_code == 403 and cross_site.json()["error"] == "origin"
    assert console.backend.calls == []  # nothing refused reached the stack
    same_site = operator.post(f"{console.url}/api/models/swap", json=body, headers={"Origin": console.url})
    assert same_site.status_code == 200 and same_site.json()["active_version"] == "1.1.0"
    failed = operator.post(f"{console.url}/api/models/swap", json={"slot": "llm", "version": "9.9.9"})
    assert failed.status_code == 409 and not failed.json()["success"]
    assert operator.post(f"{console.url}/api/models/rollback", json={"slot": "llm"}).status_code == 200
    assert console.backend.calls == [("swap", "llm", "1.1.0", False), ("swap", "llm", "9.9.9", False),
                                     ("rollback", "llm")]
    entries = audit(console)
    assert ("val", "swap", "refused") in entries and ("otto", "swap", "done") in entries
    assert ("otto", "swap", "failed") in entries and ("otto", "rollback", "done") in entries
    assert ("otto", "swap", "refused") in entries  # the missing and the wrong CSRF token


def test_malformed_oversized_and_misaddressed_requests_get_clear_errors_in_the_accounts_language(console):
    operator = login(console, "otto")
    url = f"{console.url}/api/models/swap"
    cases = [
        (operator.post(url, data="{not json", headers={"Content-Type": "application/json"}), 400, "bad_request"),
        (operator.post(url, json=["llm", "1.1.0"]), 400, "bad_request"),
        (operator.post(url, json={"slot": "llm"}), 400, "bad_request"),
        (operator.post(url, json={"slot": "llm", "version": "1.1.0", "force": "yes"}), 400, "bad_request"),
        (operator.post(url, json={"slot": "", "version": "1.1.0"}), 400, "bad_request"),
        (operator.post(url, data=json.dumps({"slot": "llm", "version": "1"}), headers={"Content-Type": "text/plain"}),
         415, "json_only"),
        (operator.post(url, json={"slot": "x" * (MAX_BODY_BYTES + 10), "version": "1"}), 413, "too_large"),
        (operator.get(url), 405, "method"),
        (operator.get(f"{console.url}/api/nothing"), 404, "not_found"),
        (operator.delete(f"{console.url}/api/models"), 405, "method"),
        (operator.get(f"{console.url}/static/../accounts.json"), 404, "not_found"),
        (operator.get(f"{console.url}/static/console.py"), 404, "not_found"),
        (operator.get(f"{console.url}/api/models?" + "&".join(f"k{i}=v" for i in range(30))), 400, "bad_request"),
    ]
    for answer, status, code in cases:
        assert (answer.status_code, answer.json()["error"]) == (status, code), answer.text
        assert answer.json()["message"] == TEXTS["ko"][f"err_{code}"]  # otto reads Korean
    with socket.create_connection(("127.0.0.1", console.port)) as raw:  # no Content-Length at all
        raw.sendall(b"POST /api/models/swap HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Cookie: tango2_session=" + operator.cookies["tango2_session"].encode() +
                    b"\r\nX-CSRF-Token: " + operator.headers["X-CSRF-Token"].encode() + b"\r\n\r\n")
        assert raw.recv(200).startswith(b"HTTP/1.1 411")
    assert console.backend.calls == []
    console.backend.fail_next = True  # a bug on the ROS side: an error answer, and the console serves on
    assert operator.get(f"{console.url}/api/models").status_code == 500
    assert operator.get(f"{console.url}/api/models").status_code == 200


def test_the_emergency_stop_is_for_everyone_its_release_for_operators(console):
    viewer, operator = login(console, "val"), login(console, "otto")
    assert viewer.post(f"{console.url}/api/farm/estop", json={"engaged": True}).status_code == 200
    assert viewer.post(f"{console.url}/api/farm/estop", json={"engaged": False}).status_code == 403
    assert operator.post(f"{console.url}/api/farm/estop", json={"engaged": "no"}).status_code == 400
    assert operator.post(f"{console.url}/api/farm/estop", json={"engaged": False}).status_code == 200
    assert console.backend.calls == [("estop", True), ("estop", False)]
    assert ("val", "estop-release", "refused") in audit(console)


def test_patient_data_only_for_radiologists_and_the_audit_log_only_for_admins(console):
    for name in ("val", "otto", "ada"):
        session = login(console, name)
        assert session.get(f"{console.url}/api/medicine/worklist").status_code == 403
        assert session.post(f"{console.url}/api/medicine/sign", json={"study": "1.2", "sr": "1.3"}).status_code == 403
    radiologist = login(console, "rita")
    unavailable = radiologist.get(f"{console.url}/api/medicine/worklist")
    assert unavailable.status_code == 503 and "no PACS" in unavailable.json()["detail"]
    assert radiologist.get(f"{console.url}/api/medicine/study?study=1.2&sr=../x").status_code == 400
    assert radiologist.get(f"{console.url}/api/audit").status_code == 403
    entries = login(console, "ada").get(f"{console.url}/api/audit").json()["entries"]
    assert {"user": "val", "action": "sign", "outcome": "refused"}.items() <= next(
        e for e in entries if e["action"] == "sign").items()


def test_an_open_live_feed_does_not_keep_an_unattended_session_alive(console):
    operator = login(console, "otto")
    with _live(console, operator) as feed:
        _receive(feed, 1)
        for _ in range(2):  # no request for longer than the idle time (600 s), only the feed looking each second
            console.clock.now += 400
            time.sleep(1.5)
        with pytest.raises(Exception):  # noqa: B017 - the server closes the feed: any close is the answer
            for _ in range(20):
                feed.recv(timeout=1)
    assert operator.get(f"{console.url}/api/session").status_code == 401


def test_sessions_end_after_idle_time_and_at_logout(console):
    operator = login(console, "otto")
    console.clock.now += 300
    assert operator.get(f"{console.url}/api/session").status_code == 200  # a request starts the idle time again
    console.clock.now += 601
    assert operator.get(f"{console.url}/api/session").status_code == 401
    operator = login(console, "otto")
    assert operator.post(f"{console.url}/api/logout", json={}).status_code == 200
    assert operator.get(f"{console.url}/api/session").status_code == 401


def test_the_page_and_its_assets_are_local_with_a_strict_content_policy(console):
    page = requests.get(f"{console.url}/")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    for asset in ("/static/console.js", "/static/console.css"):
        answer = requests.get(f"{console.url}{asset}")
        assert answer.status_code == 200 and "http://" not in answer.text and "https://" not in answer.text
    assert "https://" not in page.text and "<script>" not in page.text  # no CDN, no inline script


def test_both_languages_have_every_text_and_the_page_uses_only_known_ones(console):
    assert set(TEXTS["en"]) == set(TEXTS["ko"])
    assert all(TEXTS["ko"][key] for key in TEXTS["ko"])
    page = requests.get(f"{console.url}/").text + requests.get(f"{console.url}/static/console.js").text
    used = set(re.findall(r'data-tp?="([a-z0-9_]+)"', page)) | set(re.findall(TEXT_CALL, page))
    assert used and used <= set(TEXTS["en"])
    assert requests.get(f"{console.url}/api/texts?lang=ko").json()["sign_in"] == TEXTS["ko"]["sign_in"]


def _live(console, session: requests.Session, origin: str | None = None):
    headers = {"Cookie": f"tango2_session={session.cookies.get('tango2_session', '')}",
               "Origin": origin or console.url}
    return connect(f"ws://127.0.0.1:{console.port}/api/live", additional_headers=headers, open_timeout=5)


def _receive(socket_, seconds: float = 5.0) -> dict[str, dict]:
    got: dict[str, dict] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            message = json.loads(socket_.recv(timeout=max(0.05, deadline - time.monotonic())))
        except TimeoutError:
            break
        got[message["channel"]] = message["data"]
        if len(got) >= 3:
            deadline = min(deadline, time.monotonic() + 0.3)
    return got


def test_the_live_feed_sends_each_role_its_channels_and_every_change(console):
    console.live.update("ship", decision={"state": "route"})
    console.live.append("medicine", "drafts", {"study_key": "abc"}, 50)
    with _live(console, login(console, "val")) as viewer, _live(console, login(console, "rita")) as radiologist:
        assert set(_receive(viewer)) == {"ship", "farm", "models"}  # no patient data for a viewer
        assert _receive(radiologist)["medicine"]["drafts"] == [{"study_key": "abc"}]
        console.live.update("ship", decision={"state": "altering"})
        assert _receive(viewer, 3)["ship"]["decision"]["state"] == "altering"


def test_the_live_feed_refuses_no_session_another_sites_page_and_ends_with_the_session(console):
    with pytest.raises(InvalidStatus) as refused:
        _live(console, requests.Session())
    assert refused.value.response.status_code == 401
    operator = login(console, "otto")
    with pytest.raises(InvalidStatus) as cross_site:
        _live(console, operator, origin="http://evil.example")
    assert cross_site.value.response.status_code == 403
    with _live(console, operator) as feed:
        _receive(feed, 1)
        operator.post(f"{console.url}/api/logout", json={})
        ended = threading.Event()

        def read() -> None:
            try:
                while True:
                    feed.recv(timeout=5)
            except Exception:  # noqa: BLE001 - the close is what is waited for
                ended.set()

        threading.Thread(target=read, daemon=True).start()
        assert ended.wait(5)


def test_accounts_refuse_bad_names_roles_languages_and_short_passwords(tmp_path):
    store = AccountStore(tmp_path)
    for name, role, password, language in (("Bad Name", "viewer", PASSWORD, "en"), ("ok", "captain", PASSWORD, "en"),
                                           ("ok", "viewer", "short", "en"), ("ok", "viewer", PASSWORD, "fr")):
        with pytest.raises(UserError):
            store.add(name, role, password, language)
    store.add("ok", "viewer", PASSWORD)
    with pytest.raises(UserError, match="exists"):
        store.add("ok", "admin", PASSWORD)
    assert PASSWORD not in store.path.read_text() and oct(store.path.stat().st_mode)[-3:] == "600"
    assert store.verify("ok", PASSWORD).role == "viewer" and store.verify("ok", PASSWORD + "x") is None
    store.path.write_text("{broken")
    with pytest.raises(UserError, match="cannot read"):
        store.verify("ok", PASSWORD)
