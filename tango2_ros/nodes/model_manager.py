"""model_manager: deploys signed model artifacts to the nodes that serve them, swaps and rolls back at run time.

Each *slot* pairs a model name in the registry with one consuming node (e.g. slot `llm`: model
`smollm2-135m-instruct` served by `/tango2/llm_node`). The deployment logic (swap, rollback, reconcile, memory
plan) is tango2_ros.core.deployment; this node gives it the registry and cache, each consumer's `~/load_model`
client and its /diagnostics reports, runs its reconcile loop in a thread (registry I/O never blocks the
executor), and serves `~/list` (ListModels), `~/swap` (SwapModel), `~/rollback` (Rollback) and the topic
`~/status` (ModelStatus, transient local): `/tango2/models/...` with the node named `models` as in the profiles.
A node of the same namespace that says `swap_hold` on /diagnostics defers swaps (swap windows, see the core); the
manager's own /diagnostics value `swap_holds` says which holds it heeds now ('' = none).
"""
from __future__ import annotations

import threading

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.qos import DurabilityPolicy, QoSProfile

from tango2_msgs.msg import ModelStatus
from tango2_msgs.srv import ListModels, Rollback, SwapModel
from tango2_ros.core.artifacts.stores import ArtifactError
from tango2_ros.core.deployment import POLICIES, Deployer, Registry, SlotConfig, SlotEvent
from tango2_ros.nodes.base import ERROR, OK, WARN, Tango2Node, run_node
from tango2_ros.ros.conversions.models import event_to_ros, listed_to_ros, outcome_to_ros
from tango2_ros.ros.load_model import LoadModelClient


class ModelManager(Tango2Node):
    def __init__(self) -> None:
        super().__init__("model_manager")
        self.declare_settings(Registry)
        self.declare("reconcile_period_s", 1.0, "How often consumers are checked and deployments reconciled.",
                     min_value=0.1, max_value=3600.0)
        self.declare("retry_after_s", 30.0, "Wait this long before redeploying to a slot after a failed attempt.",
                     min_value=0.0, max_value=86400.0)
        names = self.declare_parameter("slots", ["llm"], ParameterDescriptor(
            type=ParameterType.PARAMETER_STRING_ARRAY, description="Model slots; each has <slot>.model, <slot>.node, ...")
        ).value
        self._consumers = {name: LoadModelClient(self, self._declare_slot(name).node, self.get_logger().warning)
                           for name in names}
        self.add_on_set_parameters_callback(self._check_parameters)
        self.deployer: Deployer | None = None
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None
        latched = QoSProfile(depth=50, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._status_pub = self.create_publisher(ModelStatus, "~/status", latched)

    def executor_threads(self) -> int:
        """Services are coroutines awaiting background work; one thread serves them all."""
        return 1

    def _declare_slot(self, slot: str) -> SlotConfig:
        llm = slot == "llm"
        self.declare(f"{slot}.model", "smollm2-135m-instruct" if llm else "", "Artifact name served in this slot.",
                     read_only=True)
        self.declare(f"{slot}.node", "/tango2/llm_node" if llm else "", "Fully qualified name of the consuming node.",
                     read_only=True)
        self.declare_settings(SlotConfig, prefix=f"{slot}.")  # these can change at run time (`ros2 param set`)
        config = self._slot_config(slot)
        if config.policy not in POLICIES:
            raise ValueError(f"slot {slot}: policy must be one of {', '.join(POLICIES)}, not {config.policy!r}")
        if not config.model or not config.node:
            raise ValueError(f"slot {slot}: set {slot}.model and {slot}.node")
        return config

    def _slot_config(self, slot: str) -> SlotConfig:
        return self.settings(SlotConfig, f"{slot}.", name=slot, model=self.param(f"{slot}.model"),
                             node=self.param(f"{slot}.node"))

    def _check_parameters(self, parameters) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name.endswith(".policy") and parameter.value not in POLICIES:
                return SetParametersResult(successful=False, reason=f"policy must be one of {', '.join(POLICIES)}")
        return SetParametersResult(successful=True)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def configure(self) -> None:
        registry = self.settings(Registry)
        store, cache = registry.open()
        if registry.require_signature and not len(cache.trust):
            self.set_status(WARN, f"no trusted keys in {cache.trust.folder}: every signed artifact will be refused")
        self.deployer = Deployer(store, cache, on_event=self._on_event, log=self.get_logger(),
                                 retry_after_s=lambda: self.param("retry_after_s"),
                                 hold_scope=self.get_namespace().rstrip("/") + "/",  # this stack's nodes hold swaps
                                 hold_alive_s=5 * max(1.0, self.param("reconcile_period_s")))
        for name, consumer in self._consumers.items():
            self.deployer.add_slot(name, lambda name=name: self._slot_config(name), consumer)
        for kind, name, handler in ((ListModels, "~/list", self._on_list), (SwapModel, "~/swap", self._on_swap),
                                    (Rollback, "~/rollback", self._on_rollback)):
            self.create_service(kind, name, handler, callback_group=self.coroutine_group)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.set_status(OK, f"{len(self._consumers)} slot(s), registry {self.deployer.store.location}")

    def activate(self) -> None:
        self._stop.clear()
        self._loop = threading.Thread(target=self._reconcile_loop, name="reconcile", daemon=True)
        self._loop.start()

    def deactivate(self) -> None:
        self._stop.set()
        if self._loop is not None:
            self._loop.join(timeout=5.0)

    def cleanup(self) -> None:
        self.deactivate()

    # -- services (coroutines: the work runs in a thread, the executor stays free) ----------------------------
    async def _on_swap(self, request: SwapModel.Request, response: SwapModel.Response) -> SwapModel.Response:
        slot = self.deployer.slot_for(request.slot, request.name)
        if not isinstance(slot, str):
            slot = await self.in_background(lambda: self.deployer.swap(slot, request.version, force=request.force))
        return outcome_to_ros(slot, response)

    async def _on_rollback(self, request: Rollback.Request, response: Rollback.Response) -> Rollback.Response:
        slot = self.deployer.slot_for(request.slot, "")
        if not isinstance(slot, str):
            slot = await self.in_background(lambda: self.deployer.rollback(slot, "requested"))
        return outcome_to_ros(slot, response)

    async def _on_list(self, request: ListModels.Request, response: ListModels.Response) -> ListModels.Response:
        try:
            listed = await self.in_background(lambda: self.deployer.listing(request.task.strip()))
            response.models = [listed_to_ros(entry) for entry in listed]
        except ArtifactError as exc:
            self.get_logger().warning(f"list: {exc}")
        return response

    # -- the deployer's inputs and outputs -------------------------------------------------------------------
    def _reconcile_loop(self) -> None:
        while not self._stop.wait(self.param("reconcile_period_s")) and self.context.ok():
            self.deployer.reconcile_all(alive_window_s=5 * max(1.0, self.param("reconcile_period_s")))

    def _on_diagnostics(self, message: DiagnosticArray) -> None:
        for status in message.status:
            self.deployer.observe(status.name, {kv.key: kv.value for kv in status.values})
        self.set_values(swap_holds="; ".join(self.deployer.holding()))  # why a swap would wait now

    def _on_event(self, event: SlotEvent) -> None:
        self._status_pub.publish(event_to_ros(event, self.get_clock().now().to_msg()))
        healthy, message, serving = self.deployer.summary()
        self.set_status(OK if healthy else ERROR, message, **serving)


def main(args: list[str] | None = None) -> int:
    return run_node(ModelManager, args)


if __name__ == "__main__":
    raise SystemExit(main())
