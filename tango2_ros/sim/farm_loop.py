"""The plant's side of the farm's ROS 2 closed loop, in lock-step and faster than real time.

Each control period the simulator publishes what the greenhouse's sensor gateway would (readings and the weather
forecast, MQTT QoS 1, stamped with the plant's clock), then waits until the modbus_bridge has written the
actuator registers of its Modbus server with the stamp of that state: the answer went through the
greenhouse_bridge, the farm_controller, the safety_supervisor and the modbus_bridge. The supervisor's
`sdf/command` for that stamp supplies the verdict for the metrics.
"""
from __future__ import annotations

import json
import math
import threading
import time

import paho.mqtt.client as mqtt
import rclpy

from tango2_msgs.msg import ActuatorCommand
from tango2_ros.ros.conversions.farm import VERDICT_FROM_ROS
from tango2_ros.ros.conversions.stamps import stamp_to_seconds
from tango2_ros.sdf.actuators import Command
from tango2_ros.sdf.controllers import Observation
from tango2_ros.sdf.field import PlantModbusServer
from tango2_ros.sdf.greenhouse import Climate, Greenhouse
from tango2_ros.sdf.payloads import sensor_payload
from tango2_ros.sdf.simulation import Step


class FarmLoopError(RuntimeError):
    """The nodes did not answer a state in time."""


class RosFarmLoop:
    def __init__(self, node, namespace: str, greenhouse: Greenhouse, broker_port: int, topic_prefix: str,
                 controller: str, *, modbus_port: int, timeout_s: float = 120.0, shadow: bool = False) -> None:
        """With `shadow`, each period also waits (after its actuator write) for the candidate's proposal: simulated
        periods follow each other at once, a farm's are minutes apart, and the candidate answers in between."""
        self.node, self.greenhouse, self.topic_prefix = node, greenhouse, topic_prefix
        self.controller, self.timeout_s, self.shadow = controller, timeout_s, shadow
        self.serving_s: list[float] = []  # per period: the state sent -> its actuator write
        self._shadowed: set[int] = set()
        self._written: dict[int, Command] = {}
        self._commands: dict[int, ActuatorCommand] = {}
        self._condition = threading.Condition()
        self.modbus = PlantModbusServer(self._on_write, port=modbus_port).start()
        node.create_subscription(ActuatorCommand, f"{namespace.rstrip('/')}/sdf/command", self._on_command, 50)
        node.create_subscription(ActuatorCommand, f"{namespace.rstrip('/')}/sdf/shadow_proposal",
                                 lambda m: self._shadowed.add(int(round(stamp_to_seconds(m.header.stamp)))), 50)
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tango2-greenhouse-simulator")
        self._bridge_online = threading.Event()
        self.mqtt.on_message = lambda _c, _u, m: self._bridge_online.set() if m.payload == b"online" else None
        self.mqtt.connect("127.0.0.1", broker_port)
        self.mqtt.subscribe(f"{topic_prefix}/bridge", qos=1)
        self.mqtt.loop_start()
        self._wait_until_ready(namespace.rstrip("/"))

    def _wait_until_ready(self, namespace: str) -> None:
        """Until the bridge listens on MQTT and every node has discovered the topics it needs (a first state sent
        earlier would be lost to discovery, not to the nodes)."""
        wanted = {f"{namespace}/sdf/state": 2, f"{namespace}/sdf/proposal": 1, f"{namespace}/sdf/command": 3}
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.05)
            if self._bridge_online.is_set() and all(self.node.count_subscribers(topic) >= count
                                                    for topic, count in wanted.items()):
                return
        raise FarmLoopError("the farm's nodes or the MQTT bridge did not get ready within 30 s")

    def _on_write(self, command: Command, stamp_s: int) -> None:
        with self._condition:
            self._written[stamp_s] = command
            self._condition.notify_all()

    def _on_command(self, message: ActuatorCommand) -> None:
        self._commands[int(round(stamp_to_seconds(message.header.stamp)))] = message

    def close(self) -> None:
        self.mqtt.loop_stop()
        self.mqtt.disconnect()
        self.modbus.stop()

    def __call__(self, _t_s: float, climate: Climate, _seen: Observation) -> Step:
        utc = int(self.greenhouse.utc_s())
        forecast = self.greenhouse.forecast()
        self.mqtt.publish(f"{self.topic_prefix}/forecast", json.dumps({
            "time": utc, "hours_ahead": [f[0] for f in forecast], "outside_temperature_c": [f[1] for f in forecast],
            "global_radiation_w_m2": [f[2] for f in forecast]}), qos=1)
        self.mqtt.publish(f"{self.topic_prefix}/state", sensor_payload(climate, self.greenhouse.actuators, utc), qos=1)
        sent = time.monotonic()
        deadline = sent + self.timeout_s
        command = None
        while command is None:
            rclpy.spin_once(self.node, timeout_sec=0.002)
            with self._condition:
                command = self._written.pop(utc, None)
            if command is None and time.monotonic() > deadline:
                raise FarmLoopError(f"no actuator write for the state of {self.greenhouse.clock():%Y-%m-%d %H:%M} "
                                    f"within {self.timeout_s:.0f} s")
        self.serving_s.append(time.monotonic() - sent)
        message = self._commands.pop(utc, None)
        while message is None and time.monotonic() < deadline:  # the command topic may trail the Modbus write
            rclpy.spin_once(self.node, timeout_sec=0.002)
            message = self._commands.pop(utc, None)
        while self.shadow and utc not in self._shadowed and time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.01)
        self._shadowed.discard(utc)
        return self._step(command, message)

    def _step(self, command: Command, message: ActuatorCommand | None) -> Step:
        if message is None:
            return Step(command, "accepted", ["the supervisor's command message was not seen"])
        fallback = message.controller == "baseline" and self.controller != "baseline"
        verdict = "fallback" if fallback else VERDICT_FROM_ROS.get(message.verdict, "rejected")
        proposal = None if fallback or message.controller == "supervisor" else \
            {s.name: float(s.value) for s in message.setpoints if math.isfinite(s.value)}
        clamps = len([r for r in message.reasons if not r.startswith("proposal rejected")])
        return Step(command, verdict, list(message.reasons), clamps, proposal, message.rationale, message.model)
