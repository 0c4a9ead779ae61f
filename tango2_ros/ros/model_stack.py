"""A command-line program's view of a running stack's model manager: the slot events, the shadow scores the judging
nodes report, the manager's services and the nodes' parameters (`tango2 models status`, `tango2 models shadow`)."""
from __future__ import annotations

import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.qos import DurabilityPolicy, QoSProfile

from tango2_msgs.msg import ModelInfo, ModelStatus
from tango2_msgs.srv import ListModels
from tango2_ros.errors import UserError
from tango2_ros.ros.deployments import reported_shadow_scores, slot_rows

SERVICE_WAIT_S = 5.0
HEARTBEAT_S = 1.5  # a node's /diagnostics period is 1 s by default
MAX_LISTEN_S = 10.0


class ModelStack:
    """A CLI node's view of one stack: the manager's slot events, every node's shadow scores, its services."""

    def __init__(self, node, manager: str) -> None:
        self.node, self.manager = node, manager.rstrip("/")
        self.events: dict[str, ModelStatus] = {}
        self.shadows: dict[str, dict] = {}
        self._heard = 0.0  # when the first /diagnostics message arrived
        latched = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(ModelStatus, f"{self.manager}/status",
                                 lambda m: self.events.__setitem__(m.slot, m), latched)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)

    def _on_diagnostics(self, message: DiagnosticArray) -> None:
        self._heard = self._heard or time.monotonic()
        for judge, score in reported_shadow_scores(message):
            self.shadows[score["model"]] = {**score, "judge": judge}

    def listen(self, seconds: float, shadow_slots: tuple[str, ...] = ()) -> None:
        """At least `seconds`, and on until every node's heartbeat has had a chance to arrive after the first one
        did and each of `shadow_slots` that serves a candidate has its score (a new process discovers the publishers
        one by one, and on a busy machine the judge's may come seconds after the manager's); at most MAX_LISTEN_S in
        all."""
        started = time.monotonic()
        while True:
            now = time.monotonic()
            heard_enough = self._heard and now - self._heard >= HEARTBEAT_S
            if now - started >= MAX_LISTEN_S or (now - started >= seconds and heard_enough
                                                 and all(self._scored(slot) for slot in shadow_slots)):
                return
            rclpy.spin_once(self.node, timeout_sec=0.05)

    def _scored(self, slot: str) -> bool:
        """Whether the candidate `slot` serves has a score (a slot serving nothing needs none)."""
        event = self.events.get(slot)
        if event is None or event.model.state != ModelInfo.STATE_ACTIVE:
            return True
        return f"{event.model.name}@{event.model.version}" in self.shadows

    def shadowed_slots(self) -> dict[str, str]:
        """Each of the manager's slots -> the slot it shadows ('' for a serving slot)."""
        slots = self.parameter(self.manager, "slots") or []
        return {slot: self.parameter(self.manager, f"{slot}.shadow_of") or "" for slot in slots}

    def call(self, kind, name: str, request, timeout_s: float = SERVICE_WAIT_S):
        client = self.node.create_client(kind, name)
        try:
            if not client.wait_for_service(timeout_sec=SERVICE_WAIT_S):
                raise UserError(f"{name} is not available (is the stack running? --manager names the manager)")
            future = client.call_async(request)
            rclpy.spin_until_future_complete(self.node, future, timeout_sec=timeout_s)
            if not future.done():
                raise UserError(f"{name} did not answer within {timeout_s:.0f} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def parameter(self, node: str, name: str):
        """A node's parameter value; None when the node does not declare it."""
        values = self.call(GetParameters, f"{node}/get_parameters", GetParameters.Request(names=[name])).values
        return _plain(values[0]) if values else None

    def set_parameter(self, node: str, name: str, value) -> str:
        """'' when set, else the node's reason."""
        kind, field = (ParameterType.PARAMETER_BOOL, "bool_value") if isinstance(value, bool) else \
            (ParameterType.PARAMETER_INTEGER, "integer_value")
        parameter = Parameter(name=name, value=ParameterValue(type=kind, **{field: value}))
        result = self.call(SetParameters, f"{node}/set_parameters", SetParameters.Request(parameters=[parameter]))
        return "" if result.results[0].successful else result.results[0].reason or "refused"

    def rows(self) -> list[dict]:
        listed = self.call(ListModels, f"{self.manager}/list", ListModels.Request()).models
        return slot_rows(self.events, listed, self.shadows)


def _plain(value: ParameterValue):
    return {ParameterType.PARAMETER_BOOL: value.bool_value, ParameterType.PARAMETER_INTEGER: value.integer_value,
            ParameterType.PARAMETER_DOUBLE: value.double_value, ParameterType.PARAMETER_STRING: value.string_value,
            ParameterType.PARAMETER_STRING_ARRAY: list(value.string_array_value)}.get(value.type)
