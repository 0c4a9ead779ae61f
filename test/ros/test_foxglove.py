"""The stack's topics for Foxglove and Lichtblick: a client speaking the Foxglove WebSocket protocol
(foxglove.sdk.v1) sees the configured topics advertised with their ROS 2 types, subscribes, and receives the
messages as the stack published them (CDR that deserializes to the same message); a client that sends garbage does
not stop the server for the others."""
import json
import struct

import pytest

pytestmark = pytest.mark.ros
NS = "/t22fox"
SUBPROTOCOL = "foxglove.sdk.v1"  # what foxglove-sdk 0.30 speaks (formerly foxglove.websocket.v1)
MESSAGE_DATA = 0x01  # the binary opcode of a message for a subscription


def _advertised(feed) -> dict[str, dict]:
    channels: dict[str, dict] = {}
    while True:
        try:
            frame = feed.recv(timeout=1.0)
        except TimeoutError:
            return channels
        if isinstance(frame, str) and json.loads(frame)["op"] == "advertise":
            channels.update({c["topic"]: c for c in json.loads(frame)["channels"]})


def test_foxglove_clients_get_the_stacks_topics_with_their_ros_types():
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import String
    from websockets.sync.client import connect

    from helpers.diagnostics import DiagnosticsWatcher
    from helpers.lifecycle import bring_up
    from helpers.ros import ros_node, spawn, stop, wait_until
    from tango2_msgs.msg import Target, TargetArray

    server = spawn(["-m", "tango2_ros.nodes.foxglove_server", "--ros-args", "-r", "__node:=foxglove_server",
                    "-r", f"__ns:={NS}", "-p", "port:=0", "-p", "discovery_period_s:=0.2"])
    try:
        with ros_node("t22_fox") as node:
            targets = node.create_publisher(TargetArray, f"{NS}/sds/targets", 10)
            other = node.create_publisher(String, f"{NS}/not_offered", 10)
            bring_up(node, f"{NS}/foxglove_server")
            status = DiagnosticsWatcher(node, f"{NS}/foxglove_server").wait_for(
                lambda s: any(kv.key == "offered" and "sds/targets" in kv.value for kv in s.values), 30)
            url = next(kv.value for kv in status.values if kv.key == "url")
            with connect(url, subprotocols=[SUBPROTOCOL], open_timeout=10) as rude:
                rude.send("{not json")
                rude.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 1, "channelId": 99999}]}))
            with connect(url, subprotocols=[SUBPROTOCOL], open_timeout=10) as feed:
                assert feed.subprotocol == SUBPROTOCOL
                channels = _advertised(feed)
                channel = channels[f"{NS}/sds/targets"]
                assert (channel["encoding"], channel["schemaEncoding"]) == ("cdr", "ros2msg")
                assert channel["schemaName"] == "tango2_msgs/TargetArray" and "MSG: tango2_msgs/Target" in channel["schema"]
                assert f"{NS}/not_offered" not in channels
                feed.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 7, "channelId": channel["id"]}]}))
                sent = TargetArray(targets=[Target(id="AIS-440123450", range_m=9001.0, cpa_m=150.0)])
                received = []

                def arrived() -> bool:
                    targets.publish(sent)
                    other.publish(String(data="x"))
                    try:
                        frame = feed.recv(timeout=0.3)
                    except TimeoutError:
                        return False
                    if isinstance(frame, bytes) and frame[0] == MESSAGE_DATA:
                        received.append(frame)
                    return bool(received)

                assert wait_until(arrived, 20, interval=0.05)
                subscription, _log_time = struct.unpack_from("<IQ", received[0], 1)
                message = deserialize_message(received[0][13:], TargetArray)
                assert subscription == 7 and message.targets[0].id == "AIS-440123450"
                assert message.targets[0].cpa_m == 150.0
    finally:
        output = stop(server)
    assert "Traceback" not in output, output[-4000:]
