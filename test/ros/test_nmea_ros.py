"""NMEA 0183 / AIS: the decoder on real sentence formats (AIS encoded and decoded by pyais), its refusals, and the
bridge over real UDP feeding the colreg node: from sentences to a COLREG decision."""
import socket

import pytest

from tango2_ros.sds.geometry import to_geographic
from tango2_ros.sds.nmea_out import ais_position, rmc, sentence


@pytest.mark.ros
def test_sentences_over_udp_become_fused_tracks_and_a_colreg_decision_and_garbage_is_counted():
    from helpers.diagnostics import DiagnosticsWatcher
    from helpers.lifecycle import bring_up
    from helpers.ros import ros_node, spawn, stop, wait_until
    from helpers.servers import free_port
    from tango2_msgs.msg import NavigationDecision, TargetArray

    ns, port = "/t5nmea", free_port()
    origin = (35.0, 129.0)
    goal = to_geographic(12.0, 0.0, *origin)
    bridge = spawn(["-m", "tango2_ros.nodes.nmea_bridge", "--ros-args", "-r", "__node:=nmea_bridge", "-r",
                    f"__ns:={ns}", "-p", f"udp_port:={port}", "-p", "udp_address:=127.0.0.1", "-p",
                    "diagnostics_period_s:=0.2"])
    tracker = spawn(["-m", "tango2_ros.nodes.tracker_node", "--ros-args", "-r", "__node:=tracker_node", "-r",
                     f"__ns:={ns}"])
    colreg = spawn(["-m", "tango2_ros.nodes.colreg_node", "--ros-args", "-r", "__node:=colreg_node", "-r",
                    f"__ns:={ns}", "-p", f"goal_lat_deg:={goal[0]}", "-p", f"goal_lon_deg:={goal[1]}"])
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with ros_node("nmea_probe") as node:
            watcher = DiagnosticsWatcher(node, f"{ns}/nmea_bridge")
            bring_up(node, f"{ns}/nmea_bridge")
            bring_up(node, f"{ns}/tracker_node")
            bring_up(node, f"{ns}/colreg_node")
            decisions: list[NavigationDecision] = []
            targets: list[TargetArray] = []
            node.create_subscription(NavigationDecision, f"{ns}/sds/decision", decisions.append, 50)
            node.create_subscription(TargetArray, f"{ns}/sds/targets", targets.append, 50)
            head_on = to_geographic(6.0, 0.0, *origin)  # 6 NM ahead, coming south: a head-on encounter

            def acting():
                _send_encounter(sender, port, origin, head_on)
                return any(d.state in ("altering", "avoiding") and "AIS-440123450" in [a.target_id for a in d.assessments]
                           for d in decisions[-5:])

            assert wait_until(acting, 20, interval=0.5), [(d.state, d.status_reason) for d in decisions[-3:]]
            decision = next(d for d in reversed(decisions) if d.state in ("altering", "avoiding"))
            assert decision.course_change_deg >= 30 and 14 in decision.rules
            assessment = decision.assessments[0]
            assert assessment.encounter_name == "head-on" and assessment.role == assessment.ROLE_GIVE_WAY
            fused = [t for t in targets[-1].targets]
            assert len(fused) == 1, [(t.id, t.sources) for t in fused]  # AIS and radar: one ship, one track
            target = fused[0]
            assert target.id == "AIS-440123450" and target.sources == target.SOURCE_AIS | target.SOURCE_RADAR
            assert abs(target.range_m - 6 * 1852) < 30 and abs(target.tcpa_s - 15 * 60) < 10
            status = watcher.wait_for(lambda s: int({kv.key: kv.value for kv in s.values}.get("rejected", 0)) >= 3, 10)
            last = {kv.key: kv.value for kv in status.values}["last_rejected"]
            assert any(words in last for words in ("not ASCII", "bad checksum", "no checksum")), last
            assert bridge.poll() is None and tracker.poll() is None and colreg.poll() is None  # garbage killed none
    finally:
        sender.close()
        outputs = stop(colreg) + stop(tracker) + stop(bridge)
    assert "Traceback" not in outputs, outputs[max(0, outputs.find("Traceback") - 2000):][:6000]  # the traceback, if any


def _send_encounter(sender, port: int, origin: tuple[float, float], head_on: tuple[float, float]) -> None:
    """Garbage (not ASCII, a bad checksum, a cut sentence), own ship's fix and heading, the AIS ship, and the same
    ship on radar 6 NM dead ahead (true bearing), 10 m off the AIS position."""
    for datagram in (bytes(range(200, 256)), rmc(*origin, 0.0, 12.0)[:-2].encode() + b"00", b"$GPRMC,12"):
        sender.sendto(datagram, ("127.0.0.1", port))
    sender.sendto((rmc(*origin, 0.0, 12.0) + "\r\n" + sentence("HEHDT,000.0,T") + "\r\n").encode(), ("127.0.0.1", port))
    sender.sendto(ais_position(440123450, *head_on, 180.0, 12.0).encode(), ("127.0.0.1", port))
    sender.sendto(sentence("RATTM,03,6.005,000.0,T,12.0,180.0,T,0.0,30.0,N,,T,,120000,A").encode(), ("127.0.0.1", port))
