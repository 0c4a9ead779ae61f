"""Deploying model artifacts into the slots of consuming nodes: swap, rollback, reconcile and the memory plan.

ROS-free: the model manager node is an adapter that gives this core its store and cache, a `Consumer` per slot
(its `~/load_model` client), the consumers' reports from /diagnostics (`observe`), and turns `SlotEvent`s into
`ModelStatus` messages. A slot pairs a model name in the registry with one consuming node. A swap pulls and
verifies the artifact, plans memory, and asks the consumer to load it beside the current model; whatever fails
leaves the old version serving and says why. `reconcile` keeps each consumer serving its slot's version: the first
deployment, restoring after a consumer restart, following `latest`, and rolling back a new version whose own error
rate passes the slot's threshold.

Swap windows: any node may say that now is not the moment to change a model (its /diagnostics value `swap_hold`
gives the reason: a ship mid-manoeuvre, an emergency stop, a study being read). An operator's swap or a `latest`
update is then deferred and done when no node holds any more; after the slot's `max_deferral_s` it is given up
(a later request or poll asks again), and `force` overrides. Rollbacks, restores and the first deployment never
wait: they put back or bring up a model, they do not change a working one.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from tango2_ros import paths
from tango2_ros.core.artifacts.cache import ArtifactCache
from tango2_ros.core.artifacts.manifest import Manifest, semver_key
from tango2_ros.core.artifacts.signing import TrustStore
from tango2_ros.core.artifacts.stores import ArtifactError, Store, StoreUnavailable, open_store
from tango2_ros.core.runtime.serving import HOLD_KEY, LoadOutcome
from tango2_ros.core.shadow import SHADOW_KEY, shadow_score
from tango2_ros.core.settings import setting

POLICIES = ("pinned", "latest")
AVAILABLE, LOADING, ACTIVE, FAILED = "available", "loading", "active", "failed"
DEFERRABLE = ("swapped", "updated", "promoted")  # the swaps that change a working model


class SwapError(RuntimeError):
    """A swap did not happen; the old version keeps serving. The message is the reason."""


@dataclass(frozen=True)
class Registry:
    """Where a deployer pulls artifacts from, where it keeps them and whom it trusts (the model manager's
    parameters; empty folders are the repository's defaults)."""
    store: str = setting("", "Model registry: a folder, http(s):// URL or oci://host:port/prefix; empty = models/store "
                         "(or $TANGO2_MODEL_STORE).")
    cache_dir: str = setting("", "Where pulled, verified artifacts are kept; empty = models/cache.")
    cache_max_mb: int = setting(20480, "Cache size limit; least recently used versions are evicted.", 1, 10**7)
    trusted_keys_dir: str = setting("", "Folder of trusted ed25519 public keys (*.pub); empty = models/keys/trusted.")
    require_signature: bool = setting(True, "Refuse unsigned artifacts (files are always checked).")

    def open(self) -> tuple[Store, ArtifactCache]:
        trust = TrustStore(Path(self.trusted_keys_dir or paths.trusted_keys_dir()))
        cache = ArtifactCache(Path(self.cache_dir or paths.cache_dir()), trust, max_bytes=self.cache_max_mb << 20,
                              require_signature=self.require_signature)
        return open_store(self.store or paths.default_store()), cache


@dataclass
class SlotConfig:
    name: str
    model: str  # artifact name in the registry
    node: str  # fully qualified name of the consuming node
    policy: str = setting("pinned", "pinned: serve `version`; latest: follow the newest release in the registry.")
    version: str = setting("", "Pinned version or tag; empty = the latest release at start-up.")
    poll_period_s: float = setting(60.0, "policy latest: how often the registry is asked.", 0.1, 86400.0)
    health_budget_s: float = setting(10.0, "The new version's golden request must finish within this.", 0.1, 600.0)
    swap_timeout_s: float = setting(300.0, "Give up on a consumer that has not answered a load in this.", 1.0, 3600.0)
    rollback_error_rate: float = setting(0.5, "Roll back when this share of requests fails after a swap.", 0.0, 1.0)
    rollback_min_requests: int = setting(5, "...counted over at least this many requests.", 1, 100000)
    rollback_window_s: float = setting(120.0, "How long after a swap errors are watched.", 0.0, 86400.0)
    memory_budget_mb: float = setting(0.0, "Memory for this slot's models; 0 = no limit. Old plus new must fit "
                                       "during a swap.", 0.0, 10.0**7)
    allow_resource_preserving: bool = setting(False, "When old plus new do not fit: unload the old version first "
                                               "(brief outage) instead of refusing.")
    max_deferral_s: float = setting(600.0, "A swap waits at most this long for the nodes' swap holds to end, then it "
                                    "is given up.", 0.0, 86400.0)
    shadow_of: str = setting("", "This slot serves a candidate in shadow beside that slot (its node is asked after "
                             "the serving one and judged, never acted on); empty = a serving slot.")
    promote: bool = setting(False, "A shadow slot: once a judging node reports the candidate promoted by its gate, "
                            "deploy it to `shadow_of` (waiting for the swap windows like any swap).")


@dataclass(frozen=True)
class LoadRequest:
    """What a consumer is asked to load: a verified model file, plus an adapter file for adapter artifacts, or a
    VLM bundle's folder plus the language model it runs on (`base_path`)."""

    model_path: Path
    adapter_path: Path | None
    name: str
    version: str
    health_budget_s: float
    release_first: bool  # resource-preserving: unload the current model first
    base_path: Path | None = None

    @property
    def reference(self) -> str:
        return f"{self.name}@{self.version}"


class Consumer(Protocol):
    def load(self, request: LoadRequest, timeout_s: float, serving: Callable[[], str]) -> LoadOutcome:
        """Ask the consumer to load; raise SwapError when it is not there, goes away or does not answer in time.
        `serving()` says what the consumer reports serving now (an answer may be lost after it switched)."""


@dataclass(frozen=True)
class SlotEvent:
    """A change of what a slot serves, for `~/status`."""

    slot: str
    node: str
    state: str  # AVAILABLE | LOADING | ACTIVE | FAILED
    event: str  # loading, loaded, swapped, updated, restored, rolled-back, failed
    previous: str
    name: str
    version: str
    manifest: Manifest | None = None
    reason: str = ""


@dataclass
class Watch:
    """A new version under observation: rolled back if its own error rate passes the threshold in time."""

    version: str
    until: float


@dataclass(frozen=True)
class Deferred:
    """A swap waiting for the nodes' holds to end."""

    spec: str
    event: str
    requested_by: str
    since: float


@dataclass
class Slot:
    name: str
    read_config: Callable[[], SlotConfig]  # parameters may change at run time: read them at each use
    consumer: Consumer
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: Manifest | None = None
    active_bytes: int = 0  # model plus adapter of the active version
    active_folders: tuple[Path, ...] = ()
    history: list[str] = field(default_factory=list)  # versions deployed, the last one serving
    failed: dict[str, str] = field(default_factory=dict)  # version -> why (not redeployed automatically)
    consumer_label: str = ""  # what the consumer says it serves
    consumer_seen: float = -1e18
    counters: tuple[int, int] = (0, 0)  # requests and errors of the model the consumer serves now
    watch: Watch | None = None
    deferred: Deferred | None = None
    next_poll: float = 0.0
    retry_after: float = 0.0

    @property
    def config(self) -> SlotConfig:
        return self.read_config()

    @property
    def active_version(self) -> str:
        return self.active.version if self.active else ""


@dataclass
class Deployment:
    manifest: Manifest
    model_path: Path
    adapter_path: Path | None
    folders: tuple[Path, ...]  # cache folders in use (kept from eviction while serving)
    device_bytes: int  # model plus adapter
    timings: dict[str, float]
    base_path: Path | None = None  # the language model a VLM bundle (model_path) runs on


@dataclass
class SwapOutcome:
    success: bool
    message: str
    previous: str = ""
    active: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    deferred: bool = False  # waiting for a swap window


@dataclass(frozen=True)
class Listed:
    manifest: Manifest
    state: str
    node: str = ""
    reason: str = ""


class Logger(Protocol):
    def info(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def error(self, message: str) -> None: ...


class Deployer:
    def __init__(self, store: Store, cache: ArtifactCache, *, on_event: Callable[[SlotEvent], None], log: Logger,
                 retry_after_s: Callable[[], float] = lambda: 30.0, clock: Callable[[], float] = time.monotonic,
                 hold_scope: str = "/", hold_alive_s: float = 5.0) -> None:
        """Holds count from nodes whose names start with `hold_scope` and that reported within `hold_alive_s`
        (a node that went silent holds nothing)."""
        self.store, self.cache, self.on_event, self.log = store, cache, on_event, log
        self.retry_after_s, self.clock = retry_after_s, clock
        self.hold_scope, self.hold_alive_s = hold_scope, hold_alive_s
        self.holds: dict[str, tuple[str, float]] = {}  # node -> (reason, when it last said so)
        self.shadow_scores: dict[str, tuple[str, dict]] = {}  # candidate name@version -> (judging node, its score)
        self.promoted: set[str] = set()  # candidates already handed to their serving slot
        self.slots: dict[str, Slot] = {}
        self._manifests: dict[str, Manifest] = {}  # manifest digest -> parsed manifest

    def add_slot(self, name: str, read_config: Callable[[], SlotConfig], consumer: Consumer) -> Slot:
        self.slots[name] = Slot(name, read_config, consumer)
        return self.slots[name]

    def slot_for(self, slot_name: str, model: str) -> Slot | str:
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
    def swap(self, slot: Slot, spec: str, *, event: str = "swapped", requested_by: str = "service",
             force: bool = False) -> SwapOutcome:
        """Pull, verify and deploy `spec` to the slot; serialised per slot (a concurrent request gets 'busy').
        A swap that changes a working model waits while a node holds swaps, unless `force`d."""
        holding = self.holding()
        if holding and event in DEFERRABLE and not force and slot.active is not None:
            return self._defer(slot, Deferred(spec, event, requested_by, self.clock()), holding)
        if not slot.lock.acquire(blocking=False):
            return SwapOutcome(False, f"busy: slot {slot.config.name} is already being swapped",
                               previous=slot.active_version, active=slot.active_version)
        slot.deferred = None  # the newest request wins (a busy answer leaves a waiting swap waiting)
        try:
            return self._swap_locked(slot, spec, event, requested_by)
        finally:
            slot.lock.release()

    def _swap_locked(self, slot: Slot, spec: str, event: str, requested_by: str) -> SwapOutcome:
        config, previous, started = slot.config, slot.active_version, self.clock()
        target = spec or "latest"
        try:
            self.log.info(f"slot {config.name}: deploying {config.model}@{target} ({requested_by})")
            deployment = self._pull(slot, spec)
            manifest, target = deployment.manifest, deployment.manifest.version
            if slot.active is not None and slot.active.digest() == manifest.digest() and event != "restored":
                return SwapOutcome(True, f"{config.name}: already serving {manifest.reference}", previous=previous,
                                   active=previous, timings=dict(deployment.timings))
            self._event(slot, LOADING, "loading", previous, manifest)
            release_first, note = self.memory_plan(slot, deployment)
            answer = slot.consumer.load(
                LoadRequest(deployment.model_path, deployment.adapter_path, manifest.name, manifest.version,
                            config.health_budget_s, release_first, deployment.base_path),
                config.swap_timeout_s, lambda: slot.consumer_label)
            if not answer.success:
                raise SwapError(f"{config.node} kept {answer.active or 'nothing'}: {answer.message}")
        except (SwapError, ArtifactError) as exc:
            return self._failed(slot, target, previous, exc)
        self._serving(slot, deployment, event, previous)
        timings = {**{f"pull_{k}": v for k, v in deployment.timings.items()}, "pull": sum(deployment.timings.values()),
                   "load": answer.load_s, "warmup": answer.warmup_s, "health": answer.health_s,
                   "total": self.clock() - started}
        message = f"{config.name}: {previous or 'nothing'} -> {manifest.version} ({event}{note})"
        self.log.info(message + " " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
        return SwapOutcome(True, message, previous=previous, active=manifest.version, timings=timings)

    def _failed(self, slot: Slot, target: str, previous: str, exc: Exception) -> SwapOutcome:
        config = slot.config
        slot.failed[target] = str(exc)
        slot.retry_after = self.clock() + self.retry_after_s()
        self.on_event(SlotEvent(config.name, config.node, FAILED, "failed", previous, config.model, target,
                                reason=str(exc)))
        self.log.error(f"slot {config.name}: {config.model}@{target} not deployed: {exc}")
        return SwapOutcome(False, f"{exc}; {previous} still serving" if previous else str(exc), previous=previous,
                           active=previous)

    def _serving(self, slot: Slot, deployment: Deployment, event: str, previous: str) -> None:
        manifest = deployment.manifest
        slot.active, slot.active_bytes, slot.active_folders = manifest, deployment.device_bytes, deployment.folders
        if event == "rolled-back":
            slot.history = slot.history[:-1]
        elif not slot.history or slot.history[-1] != manifest.version:
            slot.history.append(manifest.version)
        slot.failed.pop(manifest.version, None)
        slot.consumer_label = manifest.reference
        slot.watch = (Watch(manifest.version, self.clock() + slot.config.rollback_window_s)
                      if previous and event != "rolled-back" else None)
        self._event(slot, ACTIVE, event, previous, manifest)

    def _defer(self, slot: Slot, waiting: Deferred, holding: list[str]) -> SwapOutcome:
        config, target = slot.config, waiting.spec or "latest"
        slot.deferred = waiting
        reason = "; ".join(holding)
        message = (f"{config.name}: {config.model}@{target} deferred ({reason}); it is deployed when no node holds "
                   f"swaps, within {config.max_deferral_s:g} s, or now with force")
        self.log.warning(message)
        self.on_event(SlotEvent(config.name, config.node, AVAILABLE, "deferred", slot.active_version, config.model,
                                target, reason=reason))
        return SwapOutcome(False, message, previous=slot.active_version, active=slot.active_version, deferred=True)

    def _retry_deferred(self, slot: Slot) -> None:
        """Deploy the waiting swap once no node holds; give it up after the slot's longest deferral."""
        waiting, config = slot.deferred, slot.config
        waited = self.clock() - waiting.since
        holding = self.holding()
        if not holding:
            self.swap(slot, waiting.spec, event=waiting.event, requested_by=f"{waiting.requested_by}, deferred "
                                                                             f"{waited:.0f} s")
        elif waited > config.max_deferral_s:
            slot.deferred = None
            reason = f"given up after {config.max_deferral_s:g} s of holds: {'; '.join(holding)}"
            self.log.warning(f"slot {config.name}: {config.model}@{waiting.spec or 'latest'} {reason}")
            self.on_event(SlotEvent(config.name, config.node, AVAILABLE, "deferral-expired", slot.active_version,
                                    config.model, waiting.spec or "latest", reason=reason))

    def holding(self) -> list[str]:
        """'node: reason' of each node that holds swaps now."""
        now = self.clock()
        return [f"{node}: {reason}" for node, (reason, seen) in sorted(self.holds.items())
                if now - seen < self.hold_alive_s]

    def rollback(self, slot: Slot, reason: str) -> SwapOutcome:
        if len(slot.history) < 2:
            return SwapOutcome(False, f"slot {slot.config.name} has no earlier version to roll back to",
                               previous=slot.active_version, active=slot.active_version)
        bad = slot.history[-1]
        outcome = self.swap(slot, slot.history[-2], event="rolled-back", requested_by=f"rollback: {reason}")
        if outcome.success:
            slot.failed[bad] = f"rolled back: {reason}"
        return outcome

    def _pull(self, slot: Slot, spec: str) -> Deployment:
        """Pull and verify the version and the artifact it runs on: an adapter's base, a VLM bundle's language
        model (its manifest's base_model; the bundle goes to the consumer as its folder)."""
        pulled = self.cache.pull(self.store, slot.config.model, spec, keep=slot.active_folders)
        if pulled.offline:
            self.log.warning(f"registry unreachable; {pulled.manifest.reference} comes from the cache")
        manifest = pulled.manifest
        if manifest.kind != "adapter" and manifest.task != "vlm":
            return Deployment(manifest, pulled.primary_path, None, (pulled.folder,), manifest.total_size, pulled.timings)
        base_name, _, base_version = (manifest.adapter_base or manifest.base_model).partition("@")
        if not base_name:
            raise SwapError(f"{manifest.reference} names no language model to run on (its manifest's base_model)")
        base = self.cache.pull(self.store, base_name, base_version, keep=(*slot.active_folders, pulled.folder))
        timings = {key: pulled.timings.get(key, 0.0) + base.timings.get(key, 0.0) for key in {*pulled.timings, *base.timings}}
        folders, size = (pulled.folder, base.folder), manifest.total_size + base.manifest.total_size
        if manifest.task == "vlm":
            return Deployment(manifest, pulled.folder, None, folders, size, timings, base_path=base.primary_path)
        if base.manifest.format != manifest.format:
            raise SwapError(f"adapter {manifest.reference} is {manifest.format}, its base {base.manifest.reference} "
                            f"is {base.manifest.format}")
        return Deployment(manifest, base.primary_path, pulled.primary_path, folders, size, timings)

    @staticmethod
    def memory_plan(slot: Slot, deployment: Deployment) -> tuple[bool, str]:
        """Whether the consumer must unload first: only when old plus new exceed the budget and the policy allows."""
        config = slot.config
        budget = config.memory_budget_mb * 2**20
        if not budget:
            return False, ""
        new, old = deployment.device_bytes, slot.active_bytes
        if new > budget:
            raise SwapError(f"{deployment.manifest.reference} needs {new / 2**20:.0f} MiB, more than the slot's budget "
                            f"{config.memory_budget_mb:.0f} MiB")
        if old + new <= budget:
            return False, ""
        if not config.allow_resource_preserving:
            raise SwapError(f"old plus new need {(old + new) / 2**20:.0f} MiB, more than the slot's budget "
                            f"{config.memory_budget_mb:.0f} MiB; set {config.name}.allow_resource_preserving "
                            "to swap with a brief outage")
        return True, ", resource-preserving: the old version was unloaded first, requests waited meanwhile"

    # -- reconciling -----------------------------------------------------------------------------------------
    def observe(self, node: str, values: dict[str, str]) -> None:
        """A node's report (its /diagnostics values): whether it holds swaps, and for a consumer what it serves and
        that model's requests and errors."""
        if node.startswith(self.hold_scope):
            if values.get(HOLD_KEY):
                self.holds[node] = (values[HOLD_KEY], self.clock())
            else:
                self.holds.pop(node, None)
            score = shadow_score(values.get(SHADOW_KEY, ""))
            if score is not None:
                self.shadow_scores[score["model"]] = (node, score)
        for slot in self.slots.values():
            if slot.config.node == node:
                slot.consumer_seen = self.clock()
                slot.consumer_label = values.get("model", slot.consumer_label)
                slot.counters = (int(values.get("model_requests", 0)), int(values.get("model_errors", 0)))

    def reconcile(self, slot: Slot, alive_window_s: float) -> None:
        now = self.clock()
        if now - slot.consumer_seen >= alive_window_s or slot.lock.locked() or now < slot.retry_after:
            return
        config = slot.config
        if self._should_roll_back(slot):
            requests, errors = slot.counters
            slot.watch = None
            self.rollback(slot, f"error rate {errors / requests:.0%} after the swap "
                                f"(threshold {config.rollback_error_rate:.0%})")
        elif slot.active is None:
            self.swap(slot, config.version, event="loaded", requested_by="start-up")
        elif slot.consumer_label and slot.consumer_label != slot.active.reference:
            # the consumer restarted (or someone loaded another model by hand): put the slot's version back
            self.swap(slot, slot.active.version, event="restored", requested_by=f"consumer serves {slot.consumer_label}")
        elif slot.deferred is not None:
            self._retry_deferred(slot)
        elif config.shadow_of and config.promote and slot.active.reference not in self.promoted and \
                self.shadow_scores.get(slot.active.reference, ("", {}))[1].get("promoted"):
            self._promote(slot)
        elif config.policy == "latest" and now >= slot.next_poll:
            slot.next_poll = now + config.poll_period_s
            try:
                latest = self.store.resolve(config.model, "latest")
            except StoreUnavailable as exc:
                self.log.warning(f"slot {config.name}: cannot poll the registry: {exc}")
                return
            if semver_key(latest) > semver_key(slot.active.version) and latest not in slot.failed:
                self.swap(slot, latest, event="updated", requested_by="policy latest")

    def _promote(self, shadow: Slot) -> None:
        """The shadow slot's candidate passed its gate: deploy it where it was shadowing, once (a deferred promotion
        waits in the target slot like any deferred swap, and is given up after its `max_deferral_s`)."""
        candidate = shadow.active.reference
        judge, score = self.shadow_scores[candidate]
        target = self.slots.get(shadow.config.shadow_of)
        self.promoted.add(candidate)
        if target is None or target.config.model != shadow.active.name:
            self.log.error(f"slot {shadow.name}: {candidate} passed the gate of {judge}, but slot "
                           f"{shadow.config.shadow_of!r} does not serve {shadow.active.name}: not promoted")
            return
        outcome = self.swap(target, shadow.active.version, event="promoted",
                            requested_by=f"the shadow gate of {judge} ({score.get('decisions')} decisions, "
                                         f"{score.get('agreement_pct')} % agreed)")
        self.log.info(f"slot {target.name}: promotion of {candidate}: {outcome.message}")

    def reconcile_all(self, alive_window_s: float) -> None:
        """One pass over every slot; one slot's trouble is logged and never stops the others."""
        for slot in self.slots.values():
            try:
                self.reconcile(slot, alive_window_s)
            except Exception as exc:  # noqa: BLE001 - the loop must survive any one slot's trouble
                self.log.error(f"slot {slot.name}: reconcile failed: {exc}")

    def _should_roll_back(self, slot: Slot) -> bool:
        watch = slot.watch
        if watch is None or slot.active is None or slot.active.version != watch.version:
            return False
        if self.clock() > watch.until:
            slot.watch = None
            return False
        if slot.consumer_label != slot.active.reference:
            return False
        requests, errors = slot.counters
        return requests >= slot.config.rollback_min_requests and errors / requests >= slot.config.rollback_error_rate

    # -- reporting -------------------------------------------------------------------------------------------
    def _event(self, slot: Slot, state: str, event: str, previous: str, manifest: Manifest) -> None:
        self.on_event(SlotEvent(slot.config.name, slot.config.node, state, event, previous, manifest.name,
                                manifest.version, manifest))

    def listing(self, task: str = "") -> list[Listed]:
        """Every version in the registry with its state here (active in a slot, failed, or available)."""
        listed = []
        for name in self.store.names():
            for version in self.store.versions(name):
                manifest = self._manifest(name, version)
                if task and manifest.task != task:
                    continue
                slot = next((s for s in self.slots.values() if s.active and s.active.reference == manifest.reference),
                            None)
                failure = next((r for s in self.slots.values() if s.config.model == name
                                for v, r in s.failed.items() if v == version), "")
                state = ACTIVE if slot else FAILED if failure else AVAILABLE
                listed.append(Listed(manifest, state, slot.config.node if slot else "", failure))
        return listed

    def _manifest(self, name: str, version: str) -> Manifest:
        record = self.store.record(name, version)
        if record.manifest_digest not in self._manifests:
            self._manifests[record.manifest_digest] = Manifest.from_bytes(
                self.store.read_blob(record, record.manifest_digest))
        return self._manifests[record.manifest_digest]

    def summary(self) -> tuple[bool, str, dict[str, str]]:
        """(healthy, message, slot -> reference) for the node's /diagnostics."""
        failing = [s.config.name for s in self.slots.values() if s.active is None and s.failed]
        serving = {f"slot.{s.config.name}": s.active.reference if s.active else "" for s in self.slots.values()}
        message = ", ".join(f"{k[5:]}={v or '-'}" for k, v in serving.items())
        # what waits for a swap window ('' = nothing), always present: /diagnostics values are only ever updated
        serving.update({f"deferred.{s.config.name}": (s.deferred.spec or "latest") if s.deferred else ""
                        for s in self.slots.values()})
        if failing:
            return False, f"nothing deployed to slot(s) {', '.join(failing)}", serving
        return True, message, serving
