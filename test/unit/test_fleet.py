"""The fleet's messages, the canary rollout and the decision logs' way to the fleet, without brokers
(tango2_ros.core.fleet)."""
import dataclasses
import json
import math

import pytest

from tango2_ros.core.fleet.agent import DecisionLogShipper, DesiredFollower, SwapRequest, TelemetryWindow
from tango2_ros.core.fleet.controller import DecisionLogCollector
from tango2_ros.core.fleet.messages import (DecisionBatch, Desired, DeviceState, FleetMessageError, Telemetry,
                                            parse_decisions, parse_desired, parse_state, parse_telemetry, topic)
from tango2_ros.core.fleet.rollout import CanaryPolicy, Phase, Rollout

OLD, NEW = "tiny-llm@1.0.0", "tiny-llm@1.1.0"
DEVICES = ["vessel-a", "vessel-b", "vessel-c"]
POLICY = CanaryPolicy(window_s=10.0, min_requests=4, max_error_pct=10.0, max_checker_pct=20.0,
                      max_latency_ratio=2.0, silent_after_s=5.0, load_timeout_s=30.0)


def _report(device: str, sequence: int, release: str = NEW, requests: int = 4, errors: int = 0, latency: float = 0.5,
            rejections: int = 0) -> Telemetry:
    return Telemetry(device=device, sequence=sequence, release=release, slot="llm", window_s=2.0, requests=requests,
                     errors=errors, latency_s=latency, supervisor_rejections=rejections)


def _rollout(now: float = 0.0, **changes) -> Rollout:
    states = {d: DeviceState(device=d, release=OLD, slot="llm") for d in DEVICES}
    return Rollout(NEW, "llm", DEVICES, states, now, policy=CanaryPolicy(**{**POLICY.__dict__, **changes}))


def _serve(rollout: Rollout, device: str, release: str, now: float, failed: str = "") -> None:
    rollout.observe_state(DeviceState(device=device, release=release, slot="llm", failed=failed), now)


def test_messages_round_trip_and_bad_ones_are_refused_with_the_reason():
    report = _report("vessel-a", 7, latency=math.nan, requests=0)
    parsed = parse_telemetry(topic("vessel-a", "telemetry"), report.encode())
    assert parsed.sequence == 7 and parsed.release == NEW and math.isnan(parsed.latency_s)
    state = DeviceState(device="vessel-b", release="", slot="llm", failed="registry unreachable")
    assert parse_state(topic("vessel-b", "state"), state.encode()) == state
    bad = {
        b"{not json": "not JSON",
        b"[1]": "not a JSON object",
        json.dumps({**json.loads(report.encode()), "device": "vessel-b"}).encode(): "in a message on vessel-a",
        json.dumps({**json.loads(report.encode()), "errors": 5, "requests": 1}).encode(): "errors 5 > requests 1",
        json.dumps({**json.loads(report.encode()), "requests": -1}).encode(): "not a count",
        json.dumps({**json.loads(report.encode()), "requests": True}).encode(): "not a count",
        json.dumps({**json.loads(report.encode()), "release": "../etc"}).encode(): "NAME@VERSION",
        json.dumps({**json.loads(report.encode()), "window_s": 0}).encode(): "window_s",
        b" " * 70000: "more than",
    }
    for payload, reason in bad.items():
        with pytest.raises(FleetMessageError, match=reason):
            parse_telemetry(topic("vessel-a", "telemetry"), payload)
    for name in ("tango2/fleet/vessel-a/state", "tango2/fleet/../telemetry", "other/vessel-a/telemetry"):
        with pytest.raises(FleetMessageError):
            parse_telemetry(name, report.encode())
    with pytest.raises(FleetMessageError, match="device id"):
        topic("Vessel A", "telemetry")
    with pytest.raises(FleetMessageError, match="rollout"):
        parse_desired(b'{"release": "tiny-llm@1.1.0", "slot": "llm"}')


def test_a_healthy_canary_widens_the_rollout_and_it_is_done_when_every_device_serves_the_release():
    rollout = _rollout()
    assert rollout.canary == "vessel-a" and rollout.phase is Phase.CANARY
    assert {d: w.release for d, w in rollout.desired().items()} == {"vessel-a": NEW}  # the others keep what they have
    rollout.observe_telemetry(_report("vessel-a", 1, release=OLD, latency=0.4), 1.0)
    _serve(rollout, "vessel-a", NEW, 2.0)
    for second in range(3, 12, 2):
        rollout.observe_telemetry(_report("vessel-a", second, latency=0.6), float(second))
        assert rollout.step(float(second)) is Phase.CANARY  # its window has not passed
    assert rollout.step(12.0) is Phase.WIDENING
    assert {w.release for w in rollout.desired().values()} == {NEW} and len(rollout.desired()) == 3
    _serve(rollout, "vessel-b", NEW, 13.0)
    assert rollout.step(14.0) is Phase.WIDENING  # vessel-c is offline: its desired release is retained for it
    _serve(rollout, "vessel-c", NEW, 40.0)
    assert rollout.step(40.0) is Phase.DONE
    report = rollout.report()
    assert not report["rolled_back"] and [d["updated_at_s"] for d in report["devices"]] == [2.0, 13.0, 40.0]
    assert report["canary_counts"]["latency_s"] == pytest.approx(0.6)
    assert report["canary_counts"]["latency_s_before"] == pytest.approx(0.4)


@pytest.mark.parametrize("reports, reason", [
    ([_report("vessel-a", 1, errors=2)], "2 of 4 requests failed"),
    ([_report("vessel-a", 1, rejections=3)], "checker refused or corrected 3 of 4"),
    ([_report("vessel-a", 0, release=OLD, latency=0.2), _report("vessel-a", 1, latency=0.9)], "4.5x its 0.200 s"),
])
def test_an_unhealthy_canary_is_rolled_back_and_no_other_device_gets_the_release(reports, reason):
    rollout = _rollout()
    _serve(rollout, "vessel-a", NEW, 1.0)
    for report in reports:
        rollout.observe_telemetry(report, 2.0)
    assert rollout.step(2.0) is Phase.ROLLED_BACK and reason in rollout.reason
    assert {d: w.release for d, w in rollout.desired().items()} == {"vessel-a": OLD}
    assert rollout.step(100.0) is Phase.ROLLED_BACK  # final


def test_a_silent_canary_a_canary_that_cannot_load_and_one_that_never_serves_are_rolled_back():
    silent = _rollout()
    _serve(silent, "vessel-a", NEW, 1.0)
    silent.observe_telemetry(_report("vessel-a", 1, requests=1), 2.0)
    assert silent.step(6.9) is Phase.CANARY and silent.step(7.1) is Phase.ROLLED_BACK
    assert "sent nothing for 5 s" in silent.reason
    failing = _rollout()
    _serve(failing, "vessel-a", OLD, 1.0, failed="signature does not verify")
    assert failing.step(1.0) is Phase.ROLLED_BACK and "signature does not verify" in failing.reason
    late = _rollout()
    assert late.step(29.0) is Phase.CANARY and late.step(31.0) is Phase.ROLLED_BACK
    assert "did not serve tiny-llm@1.1.0 within 30 s" in late.reason


def test_repeated_telemetry_counts_once_and_other_slots_and_devices_are_ignored():
    rollout = _rollout()
    _serve(rollout, "vessel-a", NEW, 1.0)
    for _ in range(3):  # QoS 1 delivers at least once
        rollout.observe_telemetry(_report("vessel-a", 1, errors=1), 2.0)
    rollout.observe_telemetry(_report("stranger", 2, errors=4), 2.0)
    rollout.observe_telemetry(Telemetry(device="vessel-a", sequence=3, release=NEW, slot="other", window_s=1.0,
                                        requests=4, errors=4, latency_s=0.1), 2.0)
    rollout.observe_telemetry(_report("vessel-a", 4, requests=8), 3.0)
    assert rollout.canary_counts.requests == 12 and rollout.canary_counts.errors == 1
    assert rollout.step(3.0) is Phase.CANARY  # 1 of 12 failed: under the 10 % (counted three times: 25 %)


def test_a_rollout_needs_a_canary_with_a_release_to_go_back_to():
    with pytest.raises(ValueError, match="no device is online"):
        Rollout(NEW, "llm", ["vessel-a"], {}, 0.0)
    with pytest.raises(ValueError, match="not one of the devices"):
        Rollout(NEW, "llm", ["vessel-a"], {"vessel-a": DeviceState("vessel-a", OLD, "llm")}, 0.0, canary="x")
    with pytest.raises(ValueError, match="another release"):
        Rollout(NEW, "llm", ["vessel-a"], {"vessel-a": DeviceState("vessel-a", NEW, "llm")}, 0.0)


def test_a_window_sends_the_differences_of_the_cumulative_counters_numbered():
    window = TelemetryWindow("vessel-a", "llm")
    window.counters(OLD, 10, 1, 5.0)
    first = window.close(OLD, 2.0, clock=1e9)
    window.checker_counters(3, 5)
    window.close(OLD, 0.0, clock=1e9 + 1)
    window.counters(OLD, 14, 1, 6.6)
    window.checker_counters(4, 6)
    second = window.close(OLD, 2.0, clock=1e9 + 2)
    assert (first.sequence, first.requests, first.errors, first.latency_s) == (1, 10, 1, 0.5)
    assert (second.sequence, second.requests, second.errors) == (3, 4, 0)
    assert second.latency_s == pytest.approx(0.4)
    assert (second.supervisor_rejections, second.check_corrections) == (1, 1)
    quiet = window.close(OLD, 2.0, clock=0.0)
    assert math.isnan(quiet.latency_s) and (quiet.supervisor_rejections, quiet.check_corrections) == (0, 0)
    window.checker_counters(1, 0)  # the checker restarted: its counts began again
    assert window.close(OLD, 2.0, clock=0.0).supervisor_rejections == 1
    window.counters(NEW, 3, 0, 0.3)  # the new release's counters start at 0
    assert window.close(NEW, 2.0, clock=0.0).requests == 3
    window.counters(NEW, 2, 0, 0.4)  # loaded again: its counters started over
    third = window.close(NEW, 2.0, clock=0.0)
    assert third.requests == 2 and third.latency_s == pytest.approx(0.2)
    # the message survives the wire
    assert parse_telemetry(topic("vessel-a", "telemetry"), third.encode()).sequence == 7


def test_the_follower_asks_once_per_wish_and_again_after_a_pause_when_the_swap_did_not_happen():
    follower = DesiredFollower("llm", retry_s=10.0)
    assert follower.next_swap(OLD, 0.0) is None
    follower.want(Desired(NEW, "other-slot", "r1"))
    assert follower.next_swap(OLD, 0.0) is None
    follower.want(Desired(NEW, "llm", "r1"))
    assert follower.next_swap(OLD, 1.0) == SwapRequest("tiny-llm", "1.1.0", "llm")
    assert follower.next_swap(OLD, 5.0) is None  # asked; the registry may be down: not again at once
    assert follower.next_swap(OLD, 11.5) is not None
    assert follower.next_swap(NEW, 30.0) is None  # it serves the wish
    follower.want(Desired(OLD, "llm", "r1-back"))  # rolled back
    assert follower.next_swap(NEW, 31.0) == SwapRequest("tiny-llm", "1.0.0", "llm")


def test_decision_logs_ship_in_order_once_delivered_and_the_collector_drops_repeats(tmp_path):
    logs, fleet = tmp_path / "device", tmp_path / "fleet"
    logs.mkdir()
    day = logs / "2026-12-07.jsonl"
    day.write_text('{"period": 0}\n{"period": 1}\nnot json\n{"period": 3')  # the last line is being written
    shipper = DecisionLogShipper("vessel-a", logs)
    (first,) = shipper.batches()
    assert (first.file, first.first_line, len(first.lines)) == (day.name, 0, 3)
    assert json.loads(first.lines[2]) == {"unreadable": "not json"}  # numbering holds
    assert shipper.batches() == []  # one batch in flight per file
    shipper.undelivered(day.name)  # the broker did not take it: the same lines again
    assert shipper.batches() == [first]
    shipper.delivered(day.name)
    with day.open("a") as log:
        log.write('}\n{"period": 4}\n')
    (second,) = shipper.batches()
    assert (second.first_line, second.lines) == (3, ('{"period": 3}', '{"period": 4}'))

    # an agent that restarts before the second batch was delivered sends it again; the collector drops the repeat
    again = DecisionLogShipper("vessel-a", logs).batches()
    assert again == [second]
    collector = DecisionLogCollector(fleet)
    for batch in (first, second, *again):
        collector.add(parse_decisions(topic("vessel-a", "decisions"), batch.encode()))
    assert (fleet / "vessel-a" / day.name).read_text().splitlines()[3:] == ['{"period": 3}', '{"period": 4}']
    assert collector.counts == {"lines": 5, "repeated_lines": 2, "missing_lines": 0}
    # a batch after a gap is kept, the gap counted; a fresh collector goes on from the file's length
    later = DecisionLogCollector(fleet)
    later.add(DecisionBatch("vessel-a", day.name, 7, ('{"period": 7}',)))
    assert later.counts["missing_lines"] == 2 and len((fleet / "vessel-a" / day.name).read_text().splitlines()) == 6


def test_a_small_batch_size_splits_a_long_log(tmp_path):
    (tmp_path / "run.jsonl").write_text("".join(json.dumps({"period": i, "pad": "x" * 50}) + "\n" for i in range(10)))
    shipper = DecisionLogShipper("vessel-a", tmp_path, max_bytes=200)
    lines = []
    while batches := shipper.batches():
        lines += batches[0].lines
        shipper.delivered("run.jsonl")
    assert [json.loads(line)["period"] for line in lines] == list(range(10))


@pytest.mark.parametrize("body, words", [
    ({"device": "vessel-a", "file": "../../etc/passwd", "first_line": 0, "lines": ["{}"]}, "NAME.jsonl"),
    ({"device": "vessel-a", "file": "a.jsonl", "first_line": -1, "lines": ["{}"]}, "not a count"),
    ({"device": "vessel-a", "file": "a.jsonl", "first_line": 0, "lines": []}, "non-empty"),
    ({"device": "vessel-a", "file": "a.jsonl", "first_line": 0, "lines": ["{}\n{}"]}, "one line"),
    ({"device": "vessel-a", "file": "a.jsonl", "first_line": 0, "lines": ["[1]"]}, "not a JSON object"),
    ({"device": "vessel-b", "file": "a.jsonl", "first_line": 0, "lines": ["{}"]}, "vessel-b"),
])
def test_decision_batches_that_cannot_be_written_are_refused(body, words):
    with pytest.raises(FleetMessageError, match=words):
        parse_decisions(topic("vessel-a", "decisions"), json.dumps(body).encode())


@pytest.mark.parametrize("sent_at", [0.0, 4e9])  # a device clock at 1970 or in 2096
def test_a_device_clock_that_is_wrong_changes_nothing_the_controller_judges_by_arrival(sent_at):
    states = {device: DeviceState(device, OLD, "llm") for device in DEVICES}
    rollout = Rollout(NEW, "llm", DEVICES, states, 0.0, POLICY)
    rollout.observe_state(DeviceState("vessel-a", NEW, "llm"), 1.0)
    for sequence in range(1, 6):
        report = dataclasses.replace(_report("vessel-a", sequence), sent_at=sent_at)
        rollout.observe_telemetry(parse_telemetry(topic("vessel-a", "telemetry"), report.encode()), 1.0 + 2 * sequence)
    assert rollout.step(12.0) is Phase.WIDENING
