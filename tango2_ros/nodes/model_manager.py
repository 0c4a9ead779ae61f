"""model_manager: deploys signed model artifacts to the nodes that serve them, swaps and rolls back at run time.

Each *slot* pairs a model name in the registry with one consuming node (e.g. slot `llm`: model
`smollm2-135m-instruct` served by `/tango2/llm_node`). A swap pulls and verifies the artifact into the local
cache, then asks the consumer (its `~/load_model` service) to load it next to the current model, warm it up,
health-check it and switch between requests. Whatever fails (pull, signature, files, load, health check, the
consumer crashing) leaves the old version serving and is reported with its reason.

A reconcile loop (its own thread, so registry I/O never blocks the executor) keeps each consumer serving
the slot's version: it deploys the configured version when a consumer appears or comes back after a crash,
follows the registry's latest release for slots with `policy: latest`, and rolls back by itself when the
consumer's error rate after a swap passes the slot's threshold (counted from the consumer's /diagnostics).

Interfaces: services `~/list` (ListModels), `~/swap` (SwapModel), `~/rollback` (Rollback) and the topic
`~/status` (ModelStatus, transient local), i.e. `/tango2/models/...` with the node named `models` in
namespace `/tango2` as in the profiles.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.qos import DurabilityPolicy, QoSProfile

from tango2_msgs.msg import ModelInfo, ModelStatus
from tango2_msgs.srv import ListModels, LoadModel, Rollback, SwapModel
from tango2_ros import paths
from tango2_ros.core.artifacts.cache import ArtifactCache
from tango2_ros.core.artifacts.manifest import Manifest, semver_key
from tango2_ros.core.artifacts.signing import TrustStore
from tango2_ros.core.artifacts.stores import ArtifactError, Store, StoreUnavailable, open_store
from tango2_ros.nodes.base import ERROR, OK, WARN, Tango2Node, run_node

POLICIES = ("pinned", "latest")
CONSUMER_WAIT_S = 5.0
RESEND_AFTER_S = 3.0


class SwapError(RuntimeError):
    """A swap did not happen; the old version keeps serving. The message is the reason."""


@dataclass
class SlotConfig:
    name: str
    model: str  # artifact name in the registry
    node: str  # fully qualified name of the consuming node
    policy: str  # pinned | latest
    version: str  # pinned version or tag; empty = latest at start-up
    poll_period_s: float
    health_budget_s: float
    swap_timeout_s: float
    rollback_error_rate: float
    rollback_min_requests: int
    rollback_window_s: float
    memory_budget_mb: float
    allow_resource_preserving: bool


@dataclass
class Watch:
    """A new version under observation: rolled back if its own error rate passes the threshold in time."""

    version: str
    until: float


@dataclass
class Slot:
    name: str
    read_config: Callable[[], SlotConfig]  # parameters may change at run time: read them at each use
    client: object
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: Manifest | None = None
    active_bytes: int = 0  # model plus adapter of the active version
    active_folders: tuple[Path, ...] = ()
    history: list[str] = field(default_factory=list)  # versions deployed, the last one serving
    failed: dict[str, str] = field(default_factory=dict)  # version -> why (not redeployed automatically)
    consumer_label: str = ""  # what the consumer says it serves (from /diagnostics)
    consumer_seen: float = 0.0
    counters: tuple[int, int] = (0, 0)  # requests and errors of the model the consumer serves now
    watch: Watch | None = None
    next_poll: float = 0.0
    retry_after: float = 0.0

    @property
    def config(self) -> SlotConfig:
        return self.read_config()


@dataclass
class Deployment:
    """What a swap hands the consumer: a verified model file, plus an adapter file for adapter artifacts."""

    manifest: Manifest
    model_path: Path
    adapter_path: Path | None
    folders: tuple[Path, ...]  # cache folders in use (kept from eviction while serving)
    device_bytes: int  # model plus adapter
    timings: dict[str, float]


@dataclass
class SwapOutcome:
    success: bool
    message: str
    previous: str = ""
    active: str = ""
    timings: dict[str, float] = field(default_factory=dict)


class ModelManager(Tango2Node):
    def __init__(self) -> None:
        super().__init__("model_manager")
        self.declare("store", "", "Model registry: a folder, http(s):// URL or oci://host:port/prefix; "
                     "empty = models/store (or $TANGO2_MODEL_STORE).")
        self.declare("cache_dir", "", "Where pulled, verified artifacts are kept; empty = models/cache.")
        self.declare("cache_max_mb", 20480, "Cache size limit; least recently used versions are evicted.",
                     min_value=1, max_value=10**7)
        self.declare("trusted_keys_dir", "", "Folder of trusted ed25519 public keys (*.pub); empty = models/keys/trusted.")
        self.declare("require_signature", True, "Refuse unsigned artifacts (files are always checked).")
        self.declare("reconcile_period_s", 1.0, "How often consumers are checked and deployments reconciled.",
                     min_value=0.1, max_value=3600.0)
        self.declare("retry_after_s", 30.0, "Wait this long before redeploying to a slot after a failed attempt.",
                     min_value=0.0, max_value=86400.0)
        slot_names = self.declare_parameter(
            "slots", ["llm"], ParameterDescriptor(type=ParameterType.PARAMETER_STRING_ARRAY,
                                                  description="Model slots; each has <slot>.model, <slot>.node, ...")
        ).value
        self.slots: dict[str, Slot] = {}
        for name in slot_names:
            config = self._declare_slot(name)
            # Clients exist from the start: a client that was just created can lose its first answers
            self.slots[name] = Slot(name, lambda name=name: self._slot_config(name),
                                    self.create_client(LoadModel, f"{config.node}/load_model"))
        self.add_on_set_parameters_callback(self._check_parameters)
        self.store: Store | None = None
        self.cache: ArtifactCache | None = None
        self._manifests: dict[str, Manifest] = {}  # manifest digest -> parsed manifest
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None
        latched = QoSProfile(depth=50, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._status_pub = self.create_publisher(ModelStatus, "~/status", latched)

    def executor_threads(self) -> int:
        """Services are coroutines awaiting background work; one thread serves them all."""
        return 1

    def _declare_slot(self, slot: str) -> SlotConfig:
        """Declare a slot's parameters; all but `model` and `node` can be changed at run time (`ros2 param set`)."""
        def p(key: str, default, description: str, **bounds):
            return self.declare(f"{slot}.{key}", default, description, **bounds)

        config = SlotConfig(
            name=slot,
            model=p("model", "smollm2-135m-instruct" if slot == "llm" else "", "Artifact name served in this slot.",
                    read_only=True),
            node=p("node", "/tango2/llm_node" if slot == "llm" else "", "Fully qualified name of the consuming node.",
                   read_only=True),
            policy=p("policy", "pinned", "pinned: serve `version`; latest: follow the newest release in the registry."),
            version=p("version", "", "Pinned version or tag; empty = the latest release at start-up."),
            poll_period_s=p("poll_period_s", 60.0, "policy latest: how often the registry is asked.",
                            min_value=0.1, max_value=86400.0),
            health_budget_s=p("health_budget_s", 10.0, "The new version's golden request must finish within this.",
                              min_value=0.1, max_value=600.0),
            swap_timeout_s=p("swap_timeout_s", 300.0, "Give up on a consumer that has not answered a load in this.",
                             min_value=1.0, max_value=3600.0),
            rollback_error_rate=p("rollback_error_rate", 0.5, "Roll back when this share of requests fails after a swap.",
                                  min_value=0.0, max_value=1.0),
            rollback_min_requests=p("rollback_min_requests", 5, "...counted over at least this many requests.",
                                    min_value=1, max_value=100000),
            rollback_window_s=p("rollback_window_s", 120.0, "How long after a swap errors are watched.",
                                min_value=0.0, max_value=86400.0),
            memory_budget_mb=p("memory_budget_mb", 0.0, "Memory for this slot's models; 0 = no limit. Old plus new "
                               "must fit during a swap.", min_value=0.0, max_value=10.0**7),
            allow_resource_preserving=p("allow_resource_preserving", False, "When old plus new do not fit: unload "
                                        "the old version first (brief outage) instead of refusing."),
        )
        if config.policy not in POLICIES:
            raise ValueError(f"slot {slot}: policy must be one of {', '.join(POLICIES)}, not {config.policy!r}")
        if not config.model or not config.node:
            raise ValueError(f"slot {slot}: set {slot}.model and {slot}.node")
        return config

    def _slot_config(self, slot: str) -> SlotConfig:
        values = {name: self.param(f"{slot}.{name}") for name in SlotConfig.__dataclass_fields__ if name != "name"}
        return SlotConfig(name=slot, **values)

    def _check_parameters(self, parameters) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name.endswith(".policy") and parameter.value not in POLICIES:
                return SetParametersResult(successful=False, reason=f"policy must be one of {', '.join(POLICIES)}")
        return SetParametersResult(successful=True)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def configure(self) -> None:
        trust = TrustStore(Path(self.param("trusted_keys_dir") or paths.trusted_keys_dir()))
        if self.param("require_signature") and not len(trust):
            self.set_status(WARN, f"no trusted keys in {trust.folder}: every signed artifact will be refused")
        self.store = open_store(self.param("store") or paths.default_store())
        self.cache = ArtifactCache(Path(self.param("cache_dir") or paths.cache_dir()), trust,
                                   max_bytes=self.param("cache_max_mb") << 20,
                                   require_signature=self.param("require_signature"))
        self._manager_services = [
            self.create_service(ListModels, "~/list", self._on_list, callback_group=self.coroutine_group),
            self.create_service(SwapModel, "~/swap", self._on_swap, callback_group=self.coroutine_group),
            self.create_service(Rollback, "~/rollback", self._on_rollback, callback_group=self.coroutine_group),
        ]
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.set_status(OK, f"{len(self.slots)} slot(s), registry {self.store.location}")

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
        slot = self._slot_for(request.slot, request.name)
        if isinstance(slot, str):
            response.message = slot
            return response
        outcome: SwapOutcome = await self.in_background(
            lambda: self._swap(slot, request.version, event="swapped", requested_by="service"))
        response.success, response.message = outcome.success, outcome.message
        response.previous_version, response.active_version = outcome.previous, outcome.active
        response.pull_s = outcome.timings.get("pull", 0.0)
        response.load_s = outcome.timings.get("load", 0.0)
        response.warmup_s = outcome.timings.get("warmup", 0.0)
        response.health_s = outcome.timings.get("health", 0.0)
        return response

    async def _on_rollback(self, request: Rollback.Request, response: Rollback.Response) -> Rollback.Response:
        slot = self._slot_for(request.slot, "")
        if isinstance(slot, str):
            response.message = slot
            return response
        outcome: SwapOutcome = await self.in_background(lambda: self._rollback(slot, "requested"))
        response.success, response.message = outcome.success, outcome.message
        response.previous_version, response.active_version = outcome.previous, outcome.active
        return response

    async def _on_list(self, request: ListModels.Request, response: ListModels.Response) -> ListModels.Response:
        try:
            response.models = await self.in_background(lambda: self._list(request.task.strip()))
        except ArtifactError as exc:
            self.get_logger().warning(f"list: {exc}")
        return response

    def _slot_for(self, slot_name: str, model: str) -> Slot | str:
        """The slot a request means, or the reason there is none."""
        if slot_name:
            slot = self.slots.get(slot_name)
            if slot is None:
                return f"unknown slot {slot_name!r} (slots: {', '.join(self.slots)})"
            if model and model != slot.config.model:
                return f"slot {slot_name} serves {slot.config.model}, not {model}"
            return slot
        matching = [s for s in self.slots.values() if not model or s.config.model == model]
        if len(matching) == 1:
            return matching[0]
        if not matching:
            served = ", ".join(f"{s.config.name}={s.config.model}" for s in self.slots.values())
            return f"no slot serves model {model!r} (slots: {served})"
        return f"several slots match; name one of {', '.join(s.config.name for s in matching)}"

    # -- swapping --------------------------------------------------------------------------------------------
    def _swap(self, slot: Slot, spec: str, *, event: str, requested_by: str) -> SwapOutcome:
        """Pull, verify and deploy `spec` to the slot; serialised per slot (a concurrent request gets 'busy')."""
        if not slot.lock.acquire(blocking=False):
            return SwapOutcome(False, f"busy: slot {slot.config.name} is already being swapped",
                               previous=self._active_version(slot), active=self._active_version(slot))
        try:
            return self._swap_locked(slot, spec, event=event, requested_by=requested_by)
        finally:
            slot.lock.release()

    def _swap_locked(self, slot: Slot, spec: str, *, event: str, requested_by: str) -> SwapOutcome:
        config = slot.config
        previous = self._active_version(slot)
        started = time.monotonic()
        target = spec or "latest"
        try:
            self.get_logger().info(f"slot {config.name}: deploying {config.model}@{spec or 'latest'} ({requested_by})")
            deployment = self._pull(slot, spec)
            manifest = deployment.manifest
            target = manifest.version
            if slot.active is not None and slot.active.digest() == manifest.digest() and event != "restored":
                return SwapOutcome(True, f"{config.name}: already serving {manifest.reference}", previous=previous,
                                   active=previous, timings=dict(deployment.timings))
            self._publish(slot, manifest, ModelInfo.STATE_LOADING, "loading", previous)
            release_first, note = self._memory_plan(slot, deployment)
            response = self._call_consumer(slot, LoadModel.Request(
                model_path=str(deployment.model_path), adapter_path=str(deployment.adapter_path or ""),
                name=manifest.name, version=manifest.version, health_budget_s=config.health_budget_s,
                release_first=release_first,
            ))
            if not response.success:
                raise SwapError(f"{config.node} kept {response.active or 'nothing'}: {response.message}")
        except (SwapError, ArtifactError) as exc:
            slot.failed[target] = str(exc)
            slot.retry_after = time.monotonic() + self.param("retry_after_s")
            failed = ModelInfo(name=config.model, version=target, state=ModelInfo.STATE_FAILED, reason=str(exc),
                               node=config.node)
            self._publish_info(slot, failed, "failed", previous)
            self.get_logger().error(f"slot {config.name}: {config.model}@{spec or 'latest'} not deployed: {exc}")
            self._update_diagnostics()
            return SwapOutcome(False, f"{exc}; {previous or 'nothing'} still serving" if previous else str(exc),
                               previous=previous, active=previous)
        slot.active, slot.active_bytes, slot.active_folders = manifest, deployment.device_bytes, deployment.folders
        if event == "rolled-back":
            slot.history = slot.history[:-1]
        elif not slot.history or slot.history[-1] != manifest.version:
            slot.history.append(manifest.version)
        slot.failed.pop(manifest.version, None)
        slot.consumer_label = manifest.reference
        slot.watch = (Watch(manifest.version, time.monotonic() + config.rollback_window_s)
                      if previous and event != "rolled-back" else None)
        timings = {**{f"pull_{k}": v for k, v in deployment.timings.items()}, "pull": sum(deployment.timings.values()),
                   "load": response.load_s, "warmup": response.warmup_s, "health": response.health_s,
                   "total": time.monotonic() - started}
        self._publish(slot, manifest, ModelInfo.STATE_ACTIVE, event, previous)
        message = f"{config.name}: {previous or 'nothing'} -> {manifest.version} ({event}{note})"
        self.get_logger().info(message + " " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
        self._update_diagnostics()
        return SwapOutcome(True, message, previous=previous, active=manifest.version, timings=timings)

    def _rollback(self, slot: Slot, reason: str) -> SwapOutcome:
        if len(slot.history) < 2:
            version = self._active_version(slot)
            return SwapOutcome(False, f"slot {slot.config.name} has no earlier version to roll back to",
                               previous=version, active=version)
        bad = slot.history[-1]
        outcome = self._swap(slot, slot.history[-2], event="rolled-back", requested_by=f"rollback: {reason}")
        if outcome.success:
            slot.failed[bad] = f"rolled back: {reason}"
        return outcome

    def _pull(self, slot: Slot, spec: str) -> Deployment:
        """Pull and verify the version (and, for an adapter, the base artifact it applies to)."""
        pulled = self.cache.pull(self.store, slot.config.model, spec, keep=slot.active_folders)
        if pulled.offline:
            self.get_logger().warning(f"registry unreachable; {pulled.manifest.reference} comes from the cache")
        manifest = pulled.manifest
        if manifest.kind != "adapter":
            return Deployment(manifest, pulled.primary_path, None, (pulled.folder,), manifest.total_size, pulled.timings)
        base_name, _, base_version = manifest.adapter_base.partition("@")
        base = self.cache.pull(self.store, base_name, base_version, keep=(*slot.active_folders, pulled.folder))
        if base.manifest.format != manifest.format:
            raise SwapError(f"adapter {manifest.reference} is {manifest.format}, its base {base.manifest.reference} "
                            f"is {base.manifest.format}")
        timings = {key: pulled.timings.get(key, 0.0) + base.timings.get(key, 0.0) for key in {*pulled.timings, *base.timings}}
        return Deployment(manifest, base.primary_path, pulled.primary_path, (pulled.folder, base.folder),
                          manifest.total_size + base.manifest.total_size, timings)

    def _memory_plan(self, slot: Slot, deployment: Deployment) -> tuple[bool, str]:
        """Whether the consumer must unload first: only when old plus new exceed the budget and the policy allows."""
        budget = slot.config.memory_budget_mb * 2**20
        if not budget:
            return False, ""
        new, old = deployment.device_bytes, slot.active_bytes
        reference = deployment.manifest.reference
        if new > budget:
            raise SwapError(f"{reference} needs {new / 2**20:.0f} MiB, more than the slot's budget "
                            f"{slot.config.memory_budget_mb:.0f} MiB")
        if old + new <= budget:
            return False, ""
        if not slot.config.allow_resource_preserving:
            raise SwapError(f"old plus new need {(old + new) / 2**20:.0f} MiB, more than the slot's budget "
                            f"{slot.config.memory_budget_mb:.0f} MiB; set {slot.config.name}.allow_resource_preserving "
                            "to swap with a brief outage")
        return True, ", resource-preserving: the old version was unloaded first, requests waited meanwhile"

    def _call_consumer(self, slot: Slot, request: LoadModel.Request) -> LoadModel.Response:
        """Ask the consumer to load; the request is idempotent, so it is sent again when the consumer already
        reports the new version but no answer came (DDS can drop a response to a client it has just discovered)."""
        client = slot.client
        if not client.wait_for_service(timeout_sec=CONSUMER_WAIT_S):
            raise SwapError(f"{slot.config.node} is not running (no {client.srv_name})")
        wanted = f"{request.name}@{request.version}"
        deadline = time.monotonic() + slot.config.swap_timeout_s
        future = client.call_async(request)
        sent = time.monotonic()
        while True:
            answered = threading.Event()
            future.add_done_callback(lambda _future, event=answered: event.set())
            while not answered.wait(0.5):
                now = time.monotonic()
                if not client.service_is_ready():
                    client.remove_pending_request(future)
                    raise SwapError(f"{slot.config.node} went away during the swap (crashed?)")
                if now > deadline:
                    client.remove_pending_request(future)
                    raise SwapError(f"{slot.config.node} did not answer within {slot.config.swap_timeout_s:.0f} s")
                if slot.consumer_label == wanted and now - sent > RESEND_AFTER_S:
                    client.remove_pending_request(future)
                    self.get_logger().warning(f"{slot.config.node} serves {wanted} but its answer was lost; asking again")
                    future, sent = client.call_async(request), now
                    break
            else:
                return future.result()

    # -- reconcile loop --------------------------------------------------------------------------------------
    def _reconcile_loop(self) -> None:
        while not self._stop.wait(self.param("reconcile_period_s")):
            for slot in self.slots.values():
                try:
                    self._reconcile(slot)
                except Exception as exc:  # noqa: BLE001 - the loop must survive any one slot's trouble
                    if self._stop.is_set() or not self.context.ok():
                        return  # shutting down
                    self.get_logger().error(f"slot {slot.config.name}: reconcile failed: {exc}")

    def _reconcile(self, slot: Slot) -> None:
        now = time.monotonic()
        consumer_alive = now - slot.consumer_seen < 5 * max(1.0, self.param("reconcile_period_s"))
        if not consumer_alive or slot.lock.locked() or now < slot.retry_after:
            return
        config = slot.config
        if self._should_roll_back(slot):
            requests, errors = slot.counters
            rate = errors / requests
            slot.watch = None
            self._rollback(slot, f"error rate {rate:.0%} after the swap (threshold {config.rollback_error_rate:.0%})")
            return
        if slot.active is None:
            self._swap(slot, config.version, event="loaded", requested_by="start-up")
        elif slot.consumer_label and slot.consumer_label != slot.active.reference:
            # the consumer restarted (or someone loaded another model by hand): put the slot's version back
            self._swap(slot, slot.active.version, event="restored", requested_by=f"consumer serves {slot.consumer_label}")
        elif config.policy == "latest" and now >= slot.next_poll:
            slot.next_poll = now + config.poll_period_s
            try:
                latest = self.store.resolve(config.model, "latest")
            except StoreUnavailable as exc:
                self.get_logger().warning(f"slot {config.name}: cannot poll the registry: {exc}")
                return
            if semver_key(latest) > semver_key(slot.active.version) and latest not in slot.failed:
                self._swap(slot, latest, event="updated", requested_by="policy latest")

    def _should_roll_back(self, slot: Slot) -> bool:
        watch = slot.watch
        if watch is None or slot.active is None or slot.active.version != watch.version:
            return False
        if time.monotonic() > watch.until:
            slot.watch = None
            return False
        if slot.consumer_label != slot.active.reference:
            return False
        requests, errors = slot.counters
        return requests >= slot.config.rollback_min_requests and errors / requests >= slot.config.rollback_error_rate

    def _on_diagnostics(self, message: DiagnosticArray) -> None:
        for status in message.status:
            slot = next((s for s in self.slots.values() if s.config.node == status.name), None)
            if slot is None:
                continue
            values = {kv.key: kv.value for kv in status.values}
            slot.consumer_seen = time.monotonic()
            slot.consumer_label = values.get("model", slot.consumer_label)
            slot.counters = (int(values.get("model_requests", 0)), int(values.get("model_errors", 0)))

    # -- reporting -------------------------------------------------------------------------------------------
    def _active_version(self, slot: Slot) -> str:
        return slot.active.version if slot.active else ""

    def _publish(self, slot: Slot, manifest: Manifest, state: str, event: str, previous: str) -> None:
        self._publish_info(slot, self._info(manifest, state, slot.config.node), event, previous)

    def _publish_info(self, slot: Slot, info: ModelInfo, event: str, previous: str) -> None:
        status = ModelStatus(slot=slot.config.name, model=info, previous_version=previous, event=event)
        status.header.stamp = self.get_clock().now().to_msg()
        self._status_pub.publish(status)

    @staticmethod
    def _info(manifest: Manifest, state: str, node: str = "", reason: str = "") -> ModelInfo:
        return ModelInfo(name=manifest.name, version=manifest.version, task=manifest.task, format=manifest.format,
                         quantization=manifest.quantization, sha256=manifest.digest(), size_bytes=manifest.total_size,
                         state=state, reason=reason, node=node)

    def _list(self, task: str) -> list[ModelInfo]:
        infos = []
        for name in self.store.names():
            for version in self.store.versions(name):
                manifest = self._manifest(name, version)
                if task and manifest.task != task:
                    continue
                slot = next((s for s in self.slots.values() if s.active and s.active.reference == manifest.reference), None)
                failure = next((r for s in self.slots.values() if s.config.model == name
                                for v, r in s.failed.items() if v == version), "")
                state = (ModelInfo.STATE_ACTIVE if slot else ModelInfo.STATE_FAILED if failure
                         else ModelInfo.STATE_AVAILABLE)
                infos.append(self._info(manifest, state, slot.config.node if slot else "", failure))
        return infos

    def _manifest(self, name: str, version: str) -> Manifest:
        record = self.store.record(name, version)
        if record.manifest_digest not in self._manifests:
            self._manifests[record.manifest_digest] = Manifest.from_bytes(
                self.store.read_blob(record, record.manifest_digest))
        return self._manifests[record.manifest_digest]

    def _update_diagnostics(self) -> None:
        failing = [s.config.name for s in self.slots.values() if s.active is None and s.failed]
        serving = {f"slot.{s.config.name}": s.active.reference if s.active else "" for s in self.slots.values()}
        if failing:
            self.set_status(ERROR, f"nothing deployed to slot(s) {', '.join(failing)}", **serving)
        else:
            self.set_status(OK, ", ".join(f"{k[5:]}={v or '-'}" for k, v in serving.items()), **serving)


def main(args: list[str] | None = None) -> int:
    return run_node(ModelManager, args)


if __name__ == "__main__":
    raise SystemExit(main())
