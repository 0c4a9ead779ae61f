"""The console node over DDS: what the stack publishes reaches the page's live feed, an operator's swap goes
through the real model manager to the llm_node, a viewer's does not, the emergency stop is published for the
safety supervisor, and a question to a bridge assistant that is not running gets a clear answer."""
import json
import math

import pytest
import requests

pytestmark = pytest.mark.ros
NS = "/t22console"
MODEL = "smollm2-135m-instruct"
PASSWORD = "correct horse battery"


def console_arguments(home, namespace: str, **parameters) -> list[str]:
    args = ["-m", "tango2_ros.nodes.console", "--ros-args", "-r", "__node:=console", "-r", f"__ns:={namespace}",
            "-p", "port:=0", "-p", f"home:={home}", "-p", f"model_manager:={namespace}/models",
            "-p", f"ask_action:={namespace}/sds/ask"]
    for key, value in parameters.items():
        args += ["-p", f"{key}:={value}"]
    return args


def console_url(node, namespace: str) -> str:
    from helpers.diagnostics import DiagnosticsWatcher

    status = DiagnosticsWatcher(node, f"{namespace}/console").wait_for(
        lambda s: any(kv.key == "url" for kv in s.values), 30)
    return next(kv.value for kv in status.values if kv.key == "url").rstrip("/")


def signed_in(url: str, name: str) -> requests.Session:
    session = requests.Session()
    answer = session.post(f"{url}/api/login", json={"user": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    session.headers["X-CSRF-Token"] = answer.json()["csrf"]
    return session


def test_the_console_shows_the_stack_and_acts_on_it_by_role(tmp_path):
    from std_msgs.msg import Bool
    from websockets.sync.client import connect

    from helpers.lifecycle import bring_up
    from helpers.registry import llm_arguments, make_keys, manager_arguments, publish
    from helpers.ros import ros_node, spawn, stop, wait_until
    from tango2_msgs.msg import (ActuatorCommand, GreenhouseState, NavigationDecision, OwnShipState, Target,
                                 TargetArray)
    from tango2_ros.console.accounts import AccountStore
    from tango2_ros.core.runtime.default_models import default_llm_path

    make_keys(tmp_path, "fleet")
    for version in ("1.0.0", "1.1.0"):
        publish(tmp_path, MODEL, version, default_llm_path())
    home = tmp_path / "console"
    accounts = AccountStore(home)
    accounts.add("otto", "operator", PASSWORD)
    accounts.add("val", "viewer", PASSWORD)
    processes = [spawn(llm_arguments(NS, "n_parallel:=1", "n_ctx_per_seq:=512")),
                 spawn(manager_arguments(tmp_path, NS, MODEL, **{"reconcile_period_s": 0.3, "llm.version": "1.0.0"})),
                 spawn(console_arguments(home, NS))]
    try:
        with ros_node("t22_probe") as node:
            for name in ("llm_node", "models", "console"):
                bring_up(node, f"{NS}/{name}")
            url = console_url(node, NS)
            stops: list[bool] = []
            node.create_subscription(Bool, f"{NS}/sdf/emergency_stop", lambda m: stops.append(m.data), 10)
            publishers = {kind: node.create_publisher(kind, f"{NS}/{topic}", 10) for kind, topic in (
                (OwnShipState, "sds/own_ship"), (TargetArray, "sds/targets"), (NavigationDecision, "sds/decision"),
                (GreenhouseState, "sdf/state"), (ActuatorCommand, "sdf/command"))}
            operator, viewer = signed_in(url, "otto"), signed_in(url, "val")
            cookie = f"tango2_session={operator.cookies['tango2_session']}"
            with connect(f"ws://{url.removeprefix('http://')}/api/live",
                         additional_headers={"Cookie": cookie, "Origin": url}) as feed:
                picture = TargetArray(targets=[Target(id="AIS-440123450", north_m=9000.0, east_m=150.0,
                                                      course_deg=180.0, speed_kn=12.0, range_m=9001.0,
                                                      cpa_m=150.0, tcpa_s=1350.0)])
                seen: dict[str, dict] = {}

                def fed() -> bool:
                    publishers[OwnShipState].publish(OwnShipState(course_over_ground_deg=0.0, speed_over_ground_kn=12.0,
                                                                  heading_deg=math.nan, position_valid=True))
                    publishers[TargetArray].publish(picture)
                    publishers[NavigationDecision].publish(NavigationDecision(state="altering", rules=[8, 14],
                                                                              rationale="head-on: alter to starboard"))
                    publishers[GreenhouseState].publish(GreenhouseState(air_temperature_c=21.5, co2_ppm=math.nan,
                                                                        crop="tomato", is_day=True, vent_pct=12.0))
                    publishers[ActuatorCommand].publish(ActuatorCommand(sequence=7, controller="lam", verdict=2,
                                                                        reasons=["vent limited to 40 %"]))
                    try:
                        while True:
                            message = json.loads(feed.recv(timeout=0.5))
                            seen[message["channel"]] = message["data"]
                    except TimeoutError:
                        pass
                    ship, farm = seen.get("ship", {}), seen.get("farm", {})
                    return bool(ship.get("targets") and ship.get("decision") and farm.get("history")
                                and farm.get("proposals"))

                assert wait_until(fed, 30, interval=0.2), seen
            ship, farm = seen["ship"], seen["farm"]
            assert ship["targets"][0]["id"] == "AIS-440123450" and ship["own_ship"]["heading_deg"] is None
            assert ship["decision"]["rules"] == [8, 14] and ship["decision"]["state"] == "altering"
            assert farm["history"][-1]["temperature"] == 21.5 and farm["history"][-1]["co2"] is None  # NaN: a gap
            assert farm["bands"]["temperature"] == [19.0, 27.0] and farm["state"]["actuators"]["vent"] == 12.0
            assert farm["proposals"][-1]["reasons"] == ["vent limited to 40 %"]

            assert wait_until(lambda: operator.get(f"{url}/api/models").json()["slots"], 60)
            [slot] = operator.get(f"{url}/api/models").json()["slots"]
            assert (slot["slot"], slot["model"], slot["versions"]) == ("llm", MODEL, ["1.0.0", "1.1.0"])
            assert wait_until(lambda: operator.get(f"{url}/api/models").json()["slots"][0]["active_version"]
                              == "1.0.0", 60)
            refused = viewer.post(f"{url}/api/models/swap", json={"slot": "llm", "version": "1.1.0"})
            assert refused.status_code == 403
            swapped = operator.post(f"{url}/api/models/swap", json={"slot": "llm", "version": "1.1.0"}, timeout=120)
            assert swapped.status_code == 200 and swapped.json()["active_version"] == "1.1.0", swapped.text
            unknown = operator.post(f"{url}/api/models/swap", json={"slot": "llm", "version": "7.0.0"}, timeout=120)
            assert unknown.status_code == 409 and "7.0.0" in unknown.json()["message"]
            assert wait_until(lambda: operator.get(f"{url}/api/models").json()["slots"][0]["active_version"]
                              == "1.1.0", 30)

            assert viewer.post(f"{url}/api/farm/estop", json={"engaged": True}).status_code == 200
            assert viewer.post(f"{url}/api/farm/estop", json={"engaged": False}).status_code == 403
            assert operator.post(f"{url}/api/farm/estop", json={"engaged": False}).status_code == 200
            assert wait_until(lambda: stops == [True, False], 10), stops

            asked = operator.post(f"{url}/api/ship/ask", json={"question": "Which vessels must we give way to?"})
            assert asked.status_code == 503 and "bridge assistant" in asked.json()["detail"]
            audit = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
            assert {(e["user"], e["action"], e["outcome"]) for e in audit} >= {
                ("val", "swap", "refused"), ("otto", "swap", "done"), ("otto", "swap", "failed"),
                ("val", "estop", "done"), ("val", "estop-release", "refused"), ("otto", "estop-release", "done")}
    finally:
        outputs = "".join(stop(process) for process in processes)
    assert "Traceback" not in outputs, outputs[max(0, outputs.find("Traceback") - 2000):][:6000]
