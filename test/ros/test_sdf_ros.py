"""SDF through real parts: mosquitto, the farm's nodes over DDS, a pymodbus server as the greenhouse controller.

One set of nodes (bridge, a LAM controller whose LLM does not exist, supervisor, Modbus bridge) is driven through
bad and hostile situations: the watchdog's fallback, out-of-range and malformed readings, sensor silence, the
emergency stop, Modbus timeouts and a broker restart. Then whole simulated runs through `tango2 sdf simulate`.
"""
import json
import math
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.time import Time
from std_msgs.msg import Bool

from helpers.diagnostics import DiagnosticsWatcher
from helpers.lifecycle import bring_up
from helpers.ros import ros_node, spawn, stop, wait_until
from tango2_msgs.msg import ActuatorCommand, GreenhouseState
from tango2_ros.ros.conversions.stamps import stamp_to_seconds
from tango2_ros.sdf.actuators import ACTUATORS, all_off
from tango2_ros.core.mqtt import MqttBroker
from tango2_ros.sdf.field import PlantModbusServer
from tango2_ros.sdf.greenhouse import Climate
from tango2_ros.sdf.learning import observation_of, read_logs
from tango2_ros.sdf.payloads import sensor_payload

pytestmark = pytest.mark.ros
NS, PREFIX = "/t6farm", "tango2/greenhouse/t6"
TANGO2 = [sys.executable, "-m", "tango2_ros.cli", "sdf", "simulate"]
T0 = 1_257_120_000  # 2009-11-02 00:00, a night


def climate(**changes) -> Climate:
    values = dict(air_temperature_c=18.0, relative_humidity_pct=80.0, co2_ppm=600.0, par_umol_m2_s=0.0,
                  outside_temperature_c=8.0, outside_relative_humidity_pct=90.0, wind_speed_m_s=3.0,
                  global_radiation_w_m2=0.0, ec_ds_m=2.0, ph=5.5, substrate_water_pct=75.0, is_day=False)
    values.update(changes)
    return Climate(**values)


class Farm:
    def __init__(self, node, broker, plant):
        self.node, self.broker, self.plant = node, broker, plant
        self.commands: list[ActuatorCommand] = []
        self.states: list[GreenhouseState] = []
        node.create_subscription(ActuatorCommand, f"{NS}/sdf/command", self.commands.append, 50)
        node.create_subscription(GreenhouseState, f"{NS}/sdf/state", self.states.append, 50)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.estop = node.create_publisher(Bool, f"{NS}/sdf/emergency_stop", latched)
        self.sensors = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t6-sensors", clean_session=False)
        self.sensors.connect("127.0.0.1", broker.port)
        self.sensors.loop_start()

    def send(self, stamp: int, payload: bytes | None = None, **changes) -> None:
        self.sensors.publish(f"{PREFIX}/state", payload if payload is not None else
                             sensor_payload(climate(**changes), all_off(), stamp), qos=1)

    def command_for(self, stamp: int, timeout: float = 10.0) -> ActuatorCommand:
        def find():
            return next((c for c in self.commands if abs(stamp_to_seconds(c.header.stamp) - stamp) < 1e-6), None)
        assert wait_until(lambda: find() is not None, timeout), [
            (stamp_to_seconds(c.header.stamp), c.controller, list(c.reasons)) for c in self.commands[-3:]]
        return find()


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    broker = MqttBroker().start()
    decisions = tmp_path_factory.mktemp("decisions")
    written: list[tuple[dict, int]] = []
    plant = PlantModbusServer(lambda command, stamp: written.append((command, stamp))).start()
    plant.written = written
    common = ["--ros-args", "-r", f"__ns:={NS}", "-p", "diagnostics_period_s:=0.2"]
    processes = [
        spawn(["-m", "tango2_ros.nodes.greenhouse_bridge", *common, "-p", f"mqtt_port:={broker.port}",
               "-p", f"topic_prefix:={PREFIX}", "-p", "client_id:=t6-bridge"]),
        spawn(["-m", "tango2_ros.nodes.farm_controller", *common, "-p", "controller:=lam",
               "-p", "llm_action:=/nowhere/generate"]),
        spawn(["-m", "tango2_ros.nodes.safety_supervisor", *common, "-p", "controller:=lam",
               "-p", "proposal_timeout_s:=0.5", "-p", "stale_after_s:=3.0", "-p", f"decision_log_dir:={decisions}"]),
        spawn(["-m", "tango2_ros.nodes.modbus_bridge", *common, "-p", f"port:={plant.port}", "-p", "timeout_s:=0.3",
               "-p", "alarm_after_failures:=2"]),
    ]
    try:
        with ros_node("t6_probe") as node:
            bridge = DiagnosticsWatcher(node, f"{NS}/greenhouse_bridge")
            for name in ("greenhouse_bridge", "farm_controller", "safety_supervisor", "modbus_bridge"):
                bring_up(node, f"{NS}/{name}")
            bridge.wait_for(lambda s: s.message.startswith("connected to"), 15)  # subscribed to the sensors
            harness = Farm(node, broker, plant)
            harness.decisions = decisions
            assert wait_until(lambda: node.count_subscribers(f"{NS}/sdf/state") >= 3, 10)
            yield harness
            harness.sensors.loop_stop()
    finally:
        for process in processes:
            stop(process)
        plant.stop()
        broker.stop()


def test_a_silent_model_hands_the_period_to_the_baseline_and_the_command_reaches_the_registers(farm):
    stamp = T0 + 300
    farm.send(stamp)
    command = farm.command_for(stamp)
    assert command.controller == "baseline" and "watchdog" in command.rationale
    assert command.verdict in (command.VERDICT_ACCEPTED, command.VERDICT_CLAMPED)
    assert wait_until(lambda: any(s == stamp for _, s in farm.plant.written), 5)
    registers = next(c for c, s in farm.plant.written if s == stamp)
    assert registers == pytest.approx({s.name: s.approved_value for s in command.setpoints}, abs=0.01)
    assert registers["heating"] > 0  # 18 C at night is below the 18.5 C set-point


def test_the_supervisor_writes_the_decision_log_the_learning_path_reads_once_the_outcome_is_known(farm):
    first, second = T0 + 420, T0 + 480  # the module's stamps only grow: the Modbus side refuses older commands
    farm.send(first, air_temperature_c=16.0)
    decided = farm.command_for(first)
    farm.send(second, air_temperature_c=16.5)
    farm.command_for(second)

    def logged() -> dict | None:
        records = read_logs(sorted(farm.decisions.glob("*.jsonl")), "tomato")
        return next((r for r in records if r["t_s"] == first), None)

    assert wait_until(lambda: logged() is not None, 5)
    record = logged()
    assert record["time"] == "2009-11-02T00:07:00" and record["controller"] == "baseline"
    assert record["verdict"] == {decided.VERDICT_ACCEPTED: "accepted", decided.VERDICT_CLAMPED: "clamped"}[
        decided.verdict] and "watchdog" in record["rationale"]
    assert record["command"] == pytest.approx({s.name: s.approved_value for s in decided.setpoints}, abs=0.01)
    assert (record["state"]["air_temperature_c"], record["outcome"]["air_temperature_c"]) == (16.0, 16.5)
    assert record["in_band"]["temperature"] is False and record["in_band"]["co2"] is None  # under 17 C, dark
    assert observation_of(record).air_temperature_c == 16.0


@pytest.mark.parametrize("reading, value", [("air_temperature_c", 999.0), ("air_temperature_c", math.nan),
                                            ("air_temperature_c", None)])
def test_out_of_range_or_missing_temperature_puts_the_greenhouse_in_its_safe_state(farm, reading, value):
    stamp = T0 + 600 + len(farm.commands)
    data = json.loads(sensor_payload(climate(), all_off(), stamp))
    if value is None:
        del data[reading]
    else:
        data[reading] = value
    farm.send(stamp, json.dumps(data).encode())  # NaN goes out as the (non-standard) JSON token NaN
    command = farm.command_for(stamp)
    assert "safe state" in " ".join(command.reasons) and command.verdict == command.VERDICT_REJECTED
    approved = {s.name: s.approved_value for s in command.setpoints}
    assert approved["vent"] == 0 and approved["co2_dosing"] == 0 and approved["lights"] == 0
    state = next(s for s in farm.states if abs(stamp_to_seconds(s.header.stamp) - stamp) < 1e-6)
    assert reading in state.invalid_readings and math.isnan(state.air_temperature_c)


def test_malformed_payloads_are_counted_and_the_bridge_goes_on(farm):
    watcher = DiagnosticsWatcher(farm.node, f"{NS}/greenhouse_bridge")
    for garbage in (b"\x00\xffbinary", b"[1, 2, 3]", b"{\"air_temperature_c\": "):
        farm.send(0, garbage)
    watcher.wait_for(lambda s: int(watcher.values(s).get("rejected", 0)) >= 3, 10)
    stamp = T0 + 900
    farm.send(stamp)
    assert farm.command_for(stamp).controller == "baseline"


def test_sensor_silence_gives_the_safe_state_with_the_reason(farm):
    before = len(farm.commands)
    assert wait_until(lambda: any("no greenhouse state" in " ".join(c.reasons) for c in farm.commands[before:]), 10)
    command = next(c for c in farm.commands[before:] if "no greenhouse state" in " ".join(c.reasons))
    assert {s.name: s.approved_value for s in command.setpoints}["vent"] == 0


def test_emergency_stop_turns_everything_off_until_released(farm):
    assert wait_until(lambda: farm.estop.get_subscription_count() >= 1, 10)
    supervisor = DiagnosticsWatcher(farm.node, f"{NS}/safety_supervisor")
    farm.estop.publish(Bool(data=True))
    supervisor.wait_for(lambda s: s.message.startswith("EMERGENCY STOP"), 10)  # heard before the next state
    stamp = T0 + 1200
    farm.send(stamp, air_temperature_c=12.0)  # cold: the baseline would heat
    command = farm.command_for(stamp)
    assert all(s.approved_value == 0 for s in command.setpoints) and "emergency stop" in command.reasons[0]
    farm.estop.publish(Bool(data=False))
    time.sleep(0.5)  # a release changes nothing the supervisor reports until the next state: give it time to arrive
    stamp += 300
    farm.send(stamp, air_temperature_c=12.0)
    assert {s.name: s.approved_value for s in farm.command_for(stamp).setpoints}["heating"] > 0


def test_modbus_timeouts_are_retried_alarmed_and_nothing_is_lost_doubled_or_reordered(farm):
    watcher = DiagnosticsWatcher(farm.node, f"{NS}/modbus_bridge")
    slow = {"left": 3}

    def fault():  # the controller answers too late three times (the first write still lands, late)
        if slow["left"] > 0:
            slow["left"] -= 1
            return 0.6
        return 0.0

    farm.plant.fault = fault
    first, second = T0 + 1800, T0 + 2100
    farm.send(first)
    time.sleep(0.4)
    farm.send(second, air_temperature_c=25.0)
    watcher.wait_for(lambda s: s.level == s.ERROR and "ALARM" in s.message, 15)
    assert wait_until(lambda: any(s == second for _, s in farm.plant.written), 15)
    watcher.wait_for(lambda s: s.level == s.OK and int(watcher.values(s).get("written", 0)) > 0
                     and s.message == "writing commands", 15)
    farm.plant.fault = None
    stamps = [s for _, s in farm.plant.written]
    assert stamps == sorted(stamps) and len(stamps) == len(set(stamps))  # in order, each once
    final = next(c for c, s in farm.plant.written if s == second)
    expected = {s.name: s.approved_value for s in farm.command_for(second).setpoints}
    assert final == pytest.approx(expected, abs=0.01)


def test_a_broker_restart_loses_no_reading(farm):
    farm.broker.stop()
    stamp = T0 + 2400
    farm.send(stamp)  # queued by the sensor side's client (QoS 1) while the broker is down
    time.sleep(1.0)
    farm.broker.start()
    assert farm.command_for(stamp, timeout=30).controller == "baseline"


def test_a_proposal_that_arrives_before_its_state_is_reviewed_not_dropped(farm):
    """The state reaches the supervisor from the bridge, the proposal made from it from the controller: the
    proposal can come first (seen as a 10 s watchdog fallback in simulated runs before)."""
    from tango2_ros.ros.conversions.farm import proposal_message

    stamp = T0 + 2700
    proposals = farm.node.create_publisher(ActuatorCommand, f"{NS}/sdf/proposal", 10)
    assert wait_until(lambda: farm.node.count_subscribers(f"{NS}/sdf/proposal") >= 1, 10)
    setpoints = {name: 0.0 for name in ACTUATORS} | {"heating": 40.0}
    proposals.publish(proposal_message(setpoints, "lam", "test-model", "a proposal ahead of its state",
                                       Time(seconds=stamp).to_msg(), 1))
    time.sleep(0.2)
    farm.send(stamp)
    command = farm.command_for(stamp, timeout=10)
    assert command.controller == "lam" and command.model == "test-model", list(command.reasons)
    assert next(s.approved_value for s in command.setpoints if s.name == "heating") == pytest.approx(40.0)


# -- whole runs ----------------------------------------------------------------------------------------------
def _simulate(*arguments, timeout=600):
    done = subprocess.run([*TANGO2, "--json", *arguments], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-3000:]  # the report says which interlock
    return json.loads(done.stdout)


def test_the_adversarial_controller_through_every_node_breaks_no_interlock_at_the_actuators():
    report = _simulate("--controller", "random", "--days", "0.25", "--start", "2009-12-01")
    assert report["through"].startswith("MQTT")
    # every state got a proposal, except perhaps the first few: DDS discovery between the controller and the
    # supervisor can still be under way (seen: 3 periods on a loaded machine); the watchdog's baseline takes them
    assert report["proposals"] + report["fallback_s"] / 300 == 72 and report["fallback_s"] <= 3 * 300
    assert report["interlock_violations"] == 0 and report["supervisor_rejections"] > 0


def test_the_baseline_through_every_node_matches_the_same_code_in_process():
    arguments = ("--controller", "baseline", "--days", "0.25", "--start", "2009-11-10")
    through_ros, in_process = _simulate(*arguments), _simulate(*arguments, "--in-process")
    assert through_ros["fallback_s"] == 0 and through_ros["proposals"] + through_ros["supervisor_rejections"] >= 71
    for key in ("temp_in_band_pct", "rh_in_band_pct", "heating_mj_m2", "water_l_m2"):
        # the same decisions, up to MQTT's 3 decimals and Modbus's hundredths of a percent
        assert through_ros[key] == pytest.approx(in_process[key], rel=0.02, abs=0.5), key


def test_the_lam_through_the_llm_node_proposes_beside_a_candidate_in_shadow_that_is_never_applied(tmp_path):
    """`sdf simulate --shadow` through every node: the serving LAM (by default the crop's latest learned release,
    which set-up imports from models/releases) proposes or the watchdog takes over; the candidate (here the same
    release) runs in an llm_node of its own, is asked after the serving model, and its proposals are judged by the
    supervisor; what the actuators got are the serving model's commands. (Agreement is not asserted: a first
    period that the watchdog's baseline decided while DDS discovery was under way is compared with the baseline's
    command.)"""
    log = tmp_path / "decisions.jsonl"
    report = _simulate("--controller", "lam", "--days", str(4 * 300 / 86400), "--shadow", "lam-tomato@latest",
                       "--shadow-decisions", "2", "--log", str(log))
    assert report["model"] == "lam-tomato@latest" and report["interlock_violations"] == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 4 and all(r["verdict"] in ("accepted", "clamped", "rejected", "fallback") for r in records)
    assert any(r["model"].startswith("lam-tomato@") for r in records if r["verdict"] != "fallback") or \
        all(r["verdict"] == "fallback" for r in records)
    assert set(records[0]["command"]) == set(ACTUATORS)
    shadow = report["shadow"]  # one command per state above: the serving one's
    assert shadow["model"].startswith("lam-tomato@") and shadow["asked"] >= 1, shadow  # the release latest names
    assert shadow["decisions"] >= 1 and shadow["latency_s_p50"] > 0, shadow  # the simulation waits for its answer
    if shadow["would_violate"]:
        assert not shadow["promoted"] and "would have broken a rule" in shadow["retired"], shadow


def test_the_next_state_cancels_the_candidates_question_so_it_never_competes_with_the_serving_model():
    """The farm controller asks the shadow only after the serving answer; a state that arrives while the shadow
    still answers the previous one cancels that question (counted as unanswered), and the shadow is asked the new
    state's question after the serving model has answered it."""
    from tango2_ros.ros.conversions.stamps import seconds_to_stamp

    ns = "/t19preempt"
    llm = ["--ros-args", "-r", f"__ns:={ns}", "-p", "n_parallel:=1", "-p", "n_ctx_per_seq:=1024"]
    processes = [
        spawn(["-m", "tango2_ros.nodes.llm_node", *llm]),
        spawn(["-m", "tango2_ros.nodes.llm_node", *llm, "-r", "__node:=llm_shadow", "-r",
               "llm/generate:=llm_shadow/generate", "-p", "nice:=10", "-p", "n_threads:=1"]),
        spawn(["-m", "tango2_ros.nodes.farm_controller", "--ros-args", "-r", f"__ns:={ns}", "-p", "controller:=lam",
               "-p", f"llm_action:={ns}/llm/generate", "-p", f"shadow_llm_action:={ns}/llm_shadow/generate"])]
    try:
        with ros_node("t19_preempt_probe") as node:
            for name in ("llm_node", "llm_shadow", "farm_controller"):
                bring_up(node, f"{ns}/{name}")
            proposals: list[ActuatorCommand] = []
            shadows: list[ActuatorCommand] = []
            node.create_subscription(ActuatorCommand, f"{ns}/sdf/proposal", proposals.append, 10)
            node.create_subscription(ActuatorCommand, f"{ns}/sdf/shadow_proposal", shadows.append, 10)
            states = node.create_publisher(GreenhouseState, f"{ns}/sdf/state", 10)
            assert wait_until(lambda: node.count_subscribers(f"{ns}/sdf/state") >= 1, 10)

            def send(stamp: int) -> None:
                state = GreenhouseState(air_temperature_c=24.0, relative_humidity_pct=85.0, co2_ppm=700.0,
                                        crop="tomato", is_day=True, global_radiation_w_m2=300.0)
                state.header.stamp = seconds_to_stamp(stamp)
                states.publish(state)

            def stamped(messages, stamp):
                return next((m for m in messages if stamp_to_seconds(m.header.stamp) == stamp), None)

            send(T0)
            assert wait_until(lambda: stamped(proposals, T0) is not None, 120)
            send(T0 + 300)  # at once: the candidate has just started on the first state's question
            assert wait_until(lambda: stamped(shadows, T0) is not None, 30)
            first = stamped(shadows, T0)
            assert not first.setpoints and any("preempted" in r for r in first.reasons), list(first.reasons)
            assert wait_until(lambda: stamped(shadows, T0 + 300) is not None, 180)
            assert stamped(proposals, T0 + 300) is not None  # the serving model answered the second state
    finally:
        outputs = "".join(stop(process) for process in processes)
    assert "Traceback" not in outputs, outputs[-4000:]


def test_a_release_published_during_the_run_is_swapped_into_the_farm_by_the_model_manager(tmp_path, monkeypatch):
    """What the sdf profile does when `tango2 sdf learn` publishes: the model manager follows lam-tomato@latest,
    deploys the new release into the llm_node while the farm runs, and the next proposals come from it."""
    import datetime

    from helpers.registry import make_keys, publish
    from tango2_ros.sim.farm_rig import FarmRig
    from tango2_ros.core.runtime.default_models import default_llm_path
    from tango2_ros.sdf.crops import PRESETS
    from tango2_ros.sdf.greenhouse import Greenhouse
    from tango2_ros.sdf.simulation import run

    monkeypatch.setenv("TANGO2_MODELS_DIR", str(tmp_path))
    make_keys(tmp_path, "fleet")
    publish(tmp_path, "lam-tomato", "1.0.0", default_llm_path())
    greenhouse = Greenhouse(PRESETS["tomato"], datetime.date(2009, 11, 10), days=40 * 300 / 86400, period_s=300,
                            spin_up_h=0)
    rig = FarmRig("lam", "tomato", greenhouse, "lam-tomato@latest")
    models: list[str] = []

    def decide(t_s, climate, seen):
        if len(models) == 5:  # a candidate passed the learning cycle's gate
            publish(tmp_path, "lam-tomato", "1.1.0", default_llm_path())
        step = rig.loop(t_s, climate, seen)
        models.append(step.model if step.verdict != "fallback" else "fallback")
        if models[-3:] == ["lam-tomato@1.1.0"] * 3:  # seen enough of the new release: this period is the last
            greenhouse.end_s = greenhouse.t_s + greenhouse.period_s
        return step

    try:
        report = run(greenhouse, decide, "lam")
    finally:
        rig.shutdown()
    assert report["interlock_violations"] == 0
    # the first periods may go to the watchdog while DDS discovery is under way
    assert "lam-tomato@1.0.0" in models[:5] and set(models[:5]) <= {"lam-tomato@1.0.0", "fallback"}, models
    swapped = models.index("lam-tomato@1.1.0")  # within the manager's 2 s poll and a load
    assert "lam-tomato@1.0.0" not in models[swapped:], models


def test_the_profiles_broker_node_runs_mosquitto_and_restarts_it_when_it_dies(tmp_path):
    from helpers.servers import free_port
    from tango2_ros.core.net import wait_for_port

    port, folder = free_port(), tmp_path / "mosquitto"
    broker = spawn(["-m", "tango2_ros.nodes.mqtt_broker", "--ros-args", "-r", "__ns:=/t6broker", "-p", f"port:={port}",
                    "-p", f"persistence_dir:={folder}", "-p", "diagnostics_period_s:=0.2"])
    try:
        with ros_node("t6_broker_probe") as node:
            watcher = DiagnosticsWatcher(node, "/t6broker/mqtt_broker")
            bring_up(node, "/t6broker/mqtt_broker")
            assert wait_for_port(port, 5)
            subprocess.run(["pkill", "-f", f"{folder}/mosquitto.conf"], check=True)  # the broker dies
            watcher.wait_for(lambda s: int(watcher.values(s).get("restarts", 0)) >= 1 and s.level == s.OK, 15)
            assert wait_for_port(port, 5)
    finally:
        stop(broker)
