"""SDF without ROS: the safety supervisor's rules (each interlock, limits, hostile proposals, a fuzz that no output
ever breaks an interlock), the LAM's answer parsing, the GreenLight plant stepped in closed loop (against
GreenLight's own solver), and whole simulated days with the baseline, random and LAM controllers."""
import datetime
import json
import math
import random

import pytest

from tango2_ros.errors import UserError
from tango2_ros.sdf.actuators import (ACTUATORS, CO2_DOSING, HEATING, IRRIGATION, LIGHTS, THERMAL_SCREEN, VENT,
                                      all_off)
from tango2_ros.sdf import supervisor as supervisor_module
from tango2_ros.sdf.controllers import BaselineController, Observation, RandomController
from tango2_ros.sdf.crops import PRESETS
from tango2_ros.sdf.lam import LamError, parse_answer
from tango2_ros.sdf.supervisor import (CLAMPED, CO2_AT_NIGHT, CO2_WITH_VENTS, LAMPS_IN_SUN, REJECTED, VENTS_WHEN_COLD,
                                       Conditions, Interlock, SafetySupervisor, broken_interlocks)
from tango2_ros.sdf.watchdog import Watchdog

TOMATO = PRESETS["tomato"]
WARM_DAY = Conditions(air_temperature_c=24.0, is_day=True, global_radiation_w_m2=200.0)
COLD_NIGHT = Conditions(air_temperature_c=15.0, is_day=False, global_radiation_w_m2=0.0)


def command(**values):
    return {**all_off(), **values}


@pytest.mark.parametrize("proposal, conditions, words", [
    ({CO2_DOSING: 50.0}, COLD_NIGHT, "CO2 dosing at night"),
    ({CO2_DOSING: 50.0, VENT: 60.0}, WARM_DAY, "CO2 dosing with vents open"),
    ({VENT: 30.0}, COLD_NIGHT, "vents open below the heating set-point"),
    ({HEATING: 50.0, VENT: 40.0}, WARM_DAY, "heating and cooling"),
    ({LIGHTS: 100.0}, Conditions(22.0, True, 600.0), "lamps on in sunlight"),
])
def test_each_interlock_is_enforced_with_its_reason(proposal, conditions, words):
    supervisor = SafetySupervisor(TOMATO)
    supervisor.current = command(vent=proposal.get(VENT, 0.0))  # no rate limit in the way
    verdict = supervisor.review(proposal, conditions, now_s=0.0)
    assert verdict.verdict == CLAMPED and any(words in r for r in verdict.reasons), verdict.reasons
    assert broken_interlocks(verdict.command, conditions, TOMATO) == []
    assert broken_interlocks(command(**proposal), conditions, TOMATO)  # the proposal itself broke it


@pytest.mark.parametrize("code, proposal, conditions, yields", [
    (CO2_AT_NIGHT, {CO2_DOSING: 50.0}, COLD_NIGHT, CO2_DOSING),
    (CO2_WITH_VENTS, {CO2_DOSING: 50.0, VENT: 60.0}, WARM_DAY, CO2_DOSING),
    (VENTS_WHEN_COLD, {VENT: 30.0}, COLD_NIGHT, VENT),
    (LAMPS_IN_SUN, {LIGHTS: 100.0}, Conditions(22.0, True, 600.0), LIGHTS),
])
def test_the_output_that_yields_follows_the_interlocks_code_not_its_wording(code, proposal, conditions, yields,
                                                                             monkeypatch):
    assert [b.code for b in broken_interlocks(command(**proposal), conditions, TOMATO)] == [code]
    original = supervisor_module.broken_interlocks
    monkeypatch.setattr(supervisor_module, "broken_interlocks", lambda *a: [
        Interlock(b.code, "reworded") for b in original(*a)])
    supervisor = SafetySupervisor(TOMATO)
    supervisor.current = command(vent=proposal.get(VENT, 0.0))
    verdict = supervisor.review(proposal, conditions, now_s=0.0)
    assert verdict.command[yields] == 0.0 and "interlock: reworded" in verdict.reasons
    changed = [name for name in proposal if verdict.command[name] != proposal[name]]
    assert changed == [yields]


@pytest.mark.parametrize("proposal, read, true", [
    # the gateway's reading rounds 17.4996 C up to the threshold (night set-point 18.5 C minus 1 C) ...
    ({VENT: 30.0}, Conditions(17.5, False, 0.0), Conditions(17.4996, False, 0.0)),
    # ... and 400.0004 W/m2 down to it
    ({LIGHTS: 100.0}, Conditions(22.0, True, 400.0), Conditions(22.0, True, 400.0004)),
])
def test_a_reading_rounded_onto_a_threshold_still_keeps_the_true_state_inside_the_interlocks(proposal, read, true):
    assert TOMATO.heating_setpoint(False) - 1.0 == 17.5
    assert broken_interlocks(command(**proposal), read, TOMATO) == []  # nominally allowed as read ...
    verdict = SafetySupervisor(TOMATO).review(proposal, read, now_s=0.0)
    assert broken_interlocks(verdict.command, true, TOMATO) == []  # ... but the supervisor keeps its margin


def test_the_watchdogs_baseline_has_followed_every_state_when_it_takes_over():
    """Irrigation hysteresis: on below 65 % slab water, off above 85 %. The baseline saw the slab dry out while the
    model was in charge; at 75 % it must keep irrigating when it takes over (a fresh baseline would not)."""
    def seen(water):
        return Observation(hour=12.0, air_temperature_c=20.0, relative_humidity_pct=70.0, co2_ppm=600.0,
                           outside_temperature_c=10.0, global_radiation_w_m2=100.0, substrate_water_pct=water,
                           is_day=True)

    watchdog = Watchdog(TOMATO, SafetySupervisor(TOMATO))
    for water in (70.0, 60.0, 75.0):
        watchdog.observe(seen(water))
    proposal, verdict = watchdog.take_over(WARM_DAY, 0.0)
    assert proposal[IRRIGATION] == 100.0 and verdict.command[IRRIGATION] == 100.0
    assert BaselineController(TOMATO).propose(seen(75.0))[IRRIGATION] == 0.0


def test_heating_and_cooling_yields_to_what_the_temperature_asks():
    cold = SafetySupervisor(TOMATO).review({HEATING: 80.0, VENT: 40.0}, Conditions(19.0, True, 100.0), 0.0)
    warm = SafetySupervisor(TOMATO).review({HEATING: 80.0, VENT: 40.0}, Conditions(25.0, True, 100.0), 0.0)
    assert (cold.command[HEATING], cold.command[VENT]) == (80.0, 10.0)  # heat, keep a humidity gap
    assert (warm.command[HEATING], warm.command[VENT]) == (0.0, 40.0)  # ventilate, do not heat


@pytest.mark.parametrize("proposal, words", [
    ({"self_destruct": 100.0}, "unknown actuator"), ({VENT: math.nan}, "not a finite number"),
    ({HEATING: math.inf}, "not a finite number"), ({VENT: "open"}, "not a finite number"),
    ({LIGHTS: True}, "not a finite number"),
])
def test_hostile_proposals_are_rejected_and_the_present_command_stays(proposal, words):
    supervisor = SafetySupervisor(TOMATO)
    supervisor.current = command(heating=40.0)
    verdict = supervisor.review(proposal, WARM_DAY, 0.0)
    assert verdict.verdict == REJECTED and words in verdict.reasons[0]
    assert verdict.command == command(heating=40.0)  # warm day: heating 40 % with vents shut is allowed
    assert broken_interlocks(verdict.command, WARM_DAY, TOMATO) == []


def test_limits_rates_and_switching_durations():
    supervisor = SafetySupervisor(TOMATO)
    first = supervisor.review({VENT: 250.0, THERMAL_SCREEN: -5.0, IRRIGATION: 70.0}, WARM_DAY, 0.0)
    assert first.command[VENT] == 100.0 and first.command[THERMAL_SCREEN] == 0.0 and first.command[IRRIGATION] == 100.0
    assert first.verdict == CLAMPED and first.clamps == 3
    closing = supervisor.review({VENT: 0.0}, WARM_DAY, 60.0)  # 10 %/min: one minute later 90 %
    assert closing.command[VENT] == pytest.approx(90.0) and "rate limit" in closing.reasons[0]
    assert supervisor.review({}, WARM_DAY, 1000.0).command[IRRIGATION] == 0.0  # 15 min maximum on
    assert supervisor.review({IRRIGATION: 100.0}, WARM_DAY, 1300.0).command[IRRIGATION] == 0.0  # 10 min off first
    assert supervisor.review({IRRIGATION: 100.0}, WARM_DAY, 1700.0).command[IRRIGATION] == 100.0
    lamps = SafetySupervisor(TOMATO)
    lamps.review({LIGHTS: 100.0}, COLD_NIGHT, 0.0)
    held = lamps.review({LIGHTS: 0.0}, COLD_NIGHT, 600.0)  # HPS lamps: 30 minutes on at least
    assert held.command[LIGHTS] == 100.0 and "minimum" in held.reasons[0]


def test_emergency_stop_and_blind_sensors():
    supervisor = SafetySupervisor(TOMATO)
    supervisor.review({HEATING: 80.0, THERMAL_SCREEN: 100.0}, COLD_NIGHT, 0.0)
    blind = supervisor.review({HEATING: 100.0, VENT: 100.0, LIGHTS: 100.0}, None, 300.0)
    assert blind.verdict == REJECTED and "safe state" in blind.reasons[0]
    assert blind.command == command(heating=30.0, thermal_screen=100.0)
    supervisor.emergency_stop = True
    stopped = supervisor.review({HEATING: 100.0}, COLD_NIGHT, 600.0)
    assert stopped.command == all_off() and "emergency stop" in stopped.reasons[0]


def test_fuzz_no_command_ever_breaks_an_interlock():
    rng = random.Random(7)
    hostile = RandomController(seed=3)
    for crop in PRESETS.values():
        supervisor = SafetySupervisor(crop)
        for step in range(3000):
            conditions = Conditions(rng.uniform(-5.0, 45.0), rng.random() < 0.5, rng.choice((0.0, 300.0, 900.0)))
            proposal = hostile.propose(None) if rng.random() < 0.8 else None
            verdict = supervisor.review(proposal, conditions, step * rng.choice((0.0, 60.0, 300.0)))
            assert broken_interlocks(verdict.command, conditions, crop) == [], (proposal, conditions, verdict)
            assert set(verdict.command) == set(ACTUATORS)
            assert all(0.0 <= v <= 100.0 for v in verdict.command.values())


@pytest.mark.parametrize("text, words", [
    ("not json", "not JSON"), ('{"rationale": "x"}', "no list of tool calls"), ('{"calls": []}', "no list"),
    ('{"calls": [{"tool": "open_airlock", "value": 5}]}', "unknown tool"),
    ('{"calls": [{"tool": "set_vents", "value": 140}]}', "outside 0-100"),
    ('{"calls": [{"tool": "set_vents", "value": "wide"}]}', "not a number"),
    ('{"calls": ["set_vents"]}', "not an object"),
])
def test_lam_answers_that_cannot_be_used_are_refused_with_the_reason(text, words):
    with pytest.raises(LamError, match=words):
        parse_answer(text)


def test_lam_answer_becomes_a_proposal():
    proposal, rationale = parse_answer(json.dumps({"calls": [{"tool": "set_vents", "value": 20},
                                                             {"tool": "set_lamps", "value": 70}], "rationale": " warm "}))
    assert proposal == {VENT: 20.0, LIGHTS: 100.0} and rationale == "warm"


def test_the_actuator_tools_in_the_apis_function_form_give_the_same_checked_proposal():
    from tango2_ros.core.openai_api import parse_chat_request
    from tango2_ros.sdf.lam import TOOLS, function_tools, proposal_of_calls

    tools = function_tools()
    request = parse_chat_request(json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                             "tools": tools, "tool_choice": "required"}).encode())
    assert [t.name for t in request.tools] == list(TOOLS)  # valid tool definitions for the OpenAI-style API
    assert proposal_of_calls([("set_vents", {"value": 20}), ("set_lamps", {"value": 70})]) == {VENT: 20.0, LIGHTS: 100.0}
    for calls, words in (([("set_vents", {"value": 101})], "outside 0-100"), ([("open_airlock", {})], "unknown tool"),
                         ([("set_vents", None)], "not a number"), ([("set_vents", {"value": True})], "not a number")):
        with pytest.raises(LamError, match=words):
            proposal_of_calls(calls)


# -- the plant ------------------------------------------------------------------------------------------------
def test_the_weather_period_and_control_period_are_checked():
    from tango2_ros.sdf.greenhouse import Greenhouse

    with pytest.raises(UserError, match="Bleiswijk weather covers 2009-10-20"):
        Greenhouse(TOMATO, datetime.date(2012, 1, 1), days=1)
    with pytest.raises(UserError, match="control period"):
        Greenhouse(TOMATO, None, days=1, period_s=5.0)


# -- continual learning ---------------------------------------------------------------------------------------


def test_the_publication_gate_wants_better_temperature_and_no_regression_below_the_baseline():
    from tango2_ros.sdf.learning import beats

    def run(temp, rh, co2=100.0, fallback_s=0.0, violations=0, steered=None):
        steered = steered or {"temperature": temp, "humidity": rh, "co2": co2}
        return {"temp_in_band_pct": temp, "rh_in_band_pct": rh, "co2_in_band_pct": co2, "fallback_s": fallback_s,
                "interlock_violations": violations, "steered_in_band_pct": steered}

    cold_current, baseline = run(1.0, 100.0), run(99.0, 96.9)
    assert beats(run(95.0, 96.0), cold_current, baseline) == (True, [])  # as good as the baseline
    assert not beats(run(95.0, 96.0), cold_current)[0]  # without the reference, humidity 100 -> 96 regresses
    for candidate, words in ((run(1.0, 100.0), "is not above"), (run(95.0, 90.0), "humidity in band fell to 90.0"),
                             (run(95.0, 96.0, co2=50.0), "co2 in band"), (run(95.0, 96.0, fallback_s=900), "fallback"),
                             (run(95.0, 96.0, violations=1), "interlock")):
        better, reasons = beats(candidate, cold_current, baseline)
        assert not better and any(words in reason for reason in reasons), reasons
    # a current model mostly under the watchdog: the baseline's CO2 in band is not its own and blocks nothing
    silent_current = run(47.0, 46.0, co2=84.0, fallback_s=50400, steered={"temperature": 10, "humidity": 20, "co2": 20})
    assert beats(run(100.0, 100.0, co2=66.7), silent_current, baseline) == (True, [])
    assert not beats(run(100.0, 100.0, co2=15.0), silent_current, baseline)[0]
