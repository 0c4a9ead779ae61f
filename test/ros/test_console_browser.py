"""The operator console in a real browser (Debian's Chromium, driven by Playwright over the DevTools protocol).

An operator watches the ship picture change while `tango2 sds demo` runs the sds profile (the console is one of
its nodes), sees the model slots and stops the greenhouse; a viewer finds the swap refused; a radiologist reading
Korean opens an AI draft from a real Orthanc, edits and signs it, and the verified SR is in the PACS. A screenshot
of each page is kept in build/test-artifacts/console (the README's pictures are these).
"""
import math
import time

import pytest

from helpers.ros import REPO

pytestmark = pytest.mark.ros
PASSWORD = "correct horse battery"
CHROMIUM = "/usr/bin/chromium"
# Chromium as root, headless, and quiet on a machine without internet (its background connections are refused).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
ARTIFACTS = REPO / "build" / "test-artifacts" / "console"


def _wait_for_page(url: str, process, timeout: float) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.output()[-3000:]
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"no console at {url} within {timeout} s:\n{process.output()[-3000:]}")


def _sign_in(browser, url: str, name: str):
    page = browser.new_page(viewport={"width": 1280, "height": 960})
    page.goto(url)
    page.fill("#login-user", name)
    page.fill("#login-password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#who:not(:empty)", timeout=15000)
    return page


def _farm_feed(node):
    """The greenhouse as its bridge and supervisor publish it (this stack runs no farm): a few hours of climate
    and a reviewed proposal."""
    from tango2_msgs.msg import ActuatorCommand, ActuatorSetpoint, GreenhouseState
    from tango2_ros.ros.conversions.stamps import seconds_to_stamp

    states = node.create_publisher(GreenhouseState, "/tango2/sdf/state", 10)
    commands = node.create_publisher(ActuatorCommand, "/tango2/sdf/command", 10)

    def publish(hours: int = 36) -> None:
        for i in range(hours):
            time.sleep(0.02)  # a bridge publishes at its own pace; a burst would overrun the subscriber's queue
            state = GreenhouseState(air_temperature_c=21.0 + 3.0 * math.sin(i / 4.0),
                                    relative_humidity_pct=75.0 + 8.0 * math.cos(i / 5.0), co2_ppm=800.0 + 20.0 * i,
                                    crop="tomato", is_day=True, vent_pct=15.0, heating_pct=30.0, lights_on=False)
            state.header.stamp = seconds_to_stamp(1.7e9 + 3600.0 * i)
            states.publish(state)
        commands.publish(ActuatorCommand(
            sequence=12, controller="lam", model="lam-tomato@1.1.0", verdict=ActuatorCommand.VERDICT_CLAMPED,
            reasons=["vent 80 % limited to 40 % (wind 14 m/s)"], rationale="too warm: open the vents",
            setpoints=[ActuatorSetpoint(name="vent", value=80.0, approved_value=40.0, unit="%")]))

    return publish


def test_operator_viewer_and_radiologist_in_a_browser(tmp_path, series):
    from playwright.sync_api import sync_playwright
    from std_msgs.msg import Bool

    from helpers.ros import ros_node, spawn, stop, wait_until
    from helpers.sdm import draft_in_pacs
    from tango2_ros.console.accounts import AccountStore
    from tango2_ros.core.net import free_port
    from tango2_ros.sdm.pacs import OrthancServer
    from tango2_ros.sdm.signoff import SIGNED_SERIES_DESCRIPTION, SignOff, SignOffSettings

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "console"
    accounts = AccountStore(home)
    accounts.add("otto", "operator", PASSWORD, display_name="Otto Berg")
    accounts.add("val", "viewer", PASSWORD)
    accounts.add("minji", "radiologist", PASSWORD, language="ko", display_name="Dr. Kim Minji")
    env = {"TANGO2_CONSOLE_HOME": str(home)}
    orthanc = OrthancServer(tmp_path / "orthanc").start()
    fhir = tmp_path / "fhir"
    study_uid = draft_in_pacs(orthanc.dicomweb, series, fhir)
    ship_port, reading_port = free_port(), free_port()
    demo = spawn(["-m", "tango2_ros.cli", "sds", "demo", "--seconds", "900", "--console-port", str(ship_port)], env=env)
    reading = spawn(["-m", "tango2_ros.cli", "console", "--name", "reading_console", "--port", str(reading_port),
                     "--pacs-dicomweb", orthanc.dicomweb, "--pacs-rest", orthanc.url, "--fhir-dir", str(fhir),
                     "--duration", "600"], env=env)
    ship_url, reading_url = f"http://127.0.0.1:{ship_port}/", f"http://127.0.0.1:{reading_port}/"
    try:
        _wait_for_page(ship_url, demo, 240)
        _wait_for_page(reading_url, reading, 120)
        with ros_node("t22_browser") as node, sync_playwright() as playwright:
            stops: list[bool] = []
            node.create_subscription(Bool, "/tango2/sdf/emergency_stop", lambda m: stops.append(m.data), 10)
            publish_farm = _farm_feed(node)
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

            # the operator watches the encounter: targets in the table, and the chart redrawn as they move
            operator = _sign_in(browser, ship_url, "otto")
            operator.wait_for_selector("#targets tbody tr", timeout=180000)
            first = operator.evaluate("document.getElementById('chart').toDataURL()")
            assert wait_until(lambda: operator.evaluate("document.getElementById('chart').toDataURL()") != first, 30)
            assert operator.inner_text("#decision-state")
            assert "AIS-440123450" in operator.inner_text("#targets")
            operator.wait_for_selector("#description:not(:empty)", timeout=180000)  # the bridge assistant's words
            operator.fill("#ask-question", "Which vessels must we give way to?")
            operator.click("#ask-form button")
            assert wait_until(lambda: "AIS-" in operator.inner_text("#ask-answer"), 180), operator.inner_text("#ask-answer")
            operator.screenshot(path=str(ARTIFACTS / "ship.png"))

            operator.click("nav button[data-tab=models]")
            operator.wait_for_selector("#models tr[data-slot=llm]", timeout=60000)
            assert "sds-bridge" in operator.inner_text("#models")
            assert operator.is_enabled("#models tr[data-slot=llm] button.swap")
            operator.screenshot(path=str(ARTIFACTS / "models.png"))

            operator.click("nav button[data-tab=farm]")
            assert wait_until(lambda: (publish_farm(), operator.locator("#proposals tbody tr").count() > 0)[1], 30)
            operator.click("#estop")
            operator.wait_for_selector("#estop-banner:not([hidden])", timeout=10000)
            assert wait_until(lambda: stops == [True], 10), stops
            assert "vent 80 % limited to 40 %" in operator.inner_text("#proposals")
            operator.screenshot(path=str(ARTIFACTS / "farm.png"))
            operator.click("#estop-release")
            assert wait_until(lambda: stops == [True, False], 10), stops
            operator.close()

            # a viewer sees the models but may not swap: the button is off, and the server refuses a request
            viewer = _sign_in(browser, ship_url, "val")
            viewer.click("nav button[data-tab=models]")
            viewer.wait_for_selector("#models tr[data-slot=llm]", timeout=60000)
            assert not viewer.is_enabled("#models tr[data-slot=llm] button.swap")
            assert viewer.locator("nav button[data-tab=medicine]").is_hidden()  # no patient data
            status = viewer.evaluate("""async () => (await fetch('/api/models/swap', {method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': state.who.csrf},
                body: JSON.stringify({slot: 'llm', version: '1.0.0-lora'})})).status""")
            assert status == 403
            viewer.close()

            # the radiologist (Korean) opens the draft from the PACS, edits and signs it
            radiologist = _sign_in(browser, reading_url, "minji")
            assert radiologist.inner_text("nav button[data-tab=medicine]") == "의료"
            radiologist.click("nav button[data-tab=medicine]")
            radiologist.click("#worklist button", timeout=30000)
            assert wait_until(lambda: radiologist.evaluate(  # (evaluated over the DevTools protocol: the page's
                # content policy forbids the eval that Playwright's wait_for_function needs)
                "[...document.querySelectorAll('#slices img')].filter(i => i.naturalWidth > 0).length") == 3, 30)
            assert "nodule" in radiologist.input_value("#findings-text").lower()
            radiologist.screenshot(path=str(ARTIFACTS / "medicine.png"))
            radiologist.fill("#impression", "Solitary 9 mm right upper lobe nodule; follow-up CT in 6 to 12 months.")
            radiologist.click("#sign")
            radiologist.wait_for_selector("#sign-message.ok", timeout=30000)
            radiologist.close()
            browser.close()

        desk = SignOff(SignOffSettings(orthanc.dicomweb))
        assert desk.worklist() == []  # the draft was replaced
        [signed] = [s for s in desk.client.search("series", Modality="SR", includefield="0008103E")
                    if s["0008103E"]["Value"][0] == SIGNED_SERIES_DESCRIPTION]
        sr_uid = desk.client.search(f"studies/{study_uid}/series/{signed['0020000E']['Value'][0]}/instances")[0]
        report = desk.draft(study_uid, sr_uid["00080018"]["Value"][0])
        assert (report.CompletionFlag, report.VerificationFlag) == ("COMPLETE", "VERIFIED")
        assert str(report.VerifyingObserverSequence[0].VerifyingObserverName) == "Dr. Kim Minji"
        assert desk.study(study_uid, report.SOPInstanceUID)["impression"].startswith("Solitary 9 mm")
        assert (home / "report-corrections.jsonl").exists()
    finally:
        outputs = stop(reading) + stop(demo)
        orthanc.stop()
    assert "Traceback" not in outputs, outputs[max(0, outputs.find("Traceback") - 2000):][:6000]
