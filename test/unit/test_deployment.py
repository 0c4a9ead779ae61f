"""The model manager's deployment core without ROS or processes: first deployment, swaps, refusals, rollback by hand
and by error rate, following `latest`, restoring after a consumer restart, memory plans and adapters, on a real
signed local store and verified cache, with a consumer that speaks the load protocol and a clock the test moves."""
import threading
from pathlib import Path

import pytest

from helpers.registry import make_keys, publish
from helpers.servers import make_model_file
from tango2_ros.core.artifacts.cache import ArtifactCache
from tango2_ros.core.artifacts.stores import LocalStore
from tango2_ros.core.deployment import ACTIVE, FAILED, LOADING, Deployer, LoadOutcome, SlotConfig, SwapError

MODEL, NODE = "tiny-llm", "/t/llm_node"


class Consumer:
    """Loads what it is asked to when the file is there and a GGUF; `refuse`, `gone` and `block` script failures."""

    def __init__(self) -> None:
        self.serving, self.requests = "", []
        self.refuse = self.gone = False
        self.block: threading.Event | None = None

    def load(self, request, timeout_s, serving):
        self.requests.append(request)
        if self.gone:
            raise SwapError(f"{NODE} is not running")
        if self.block is not None:
            self.block.wait(5)
        if self.refuse or request.model_path.read_bytes()[:4] != b"GGUF":
            return LoadOutcome(False, "health check failed", self.serving, self.serving)
        previous, self.serving = self.serving, request.reference
        return LoadOutcome(True, "loaded", previous, self.serving, load_s=0.1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig(tmp_path):
    trust = make_keys(tmp_path, "fleet")
    for index, version in enumerate(("1.0.0", "1.1.0")):
        publish(tmp_path, MODEL, version, make_model_file(tmp_path / "src" / f"{version}.gguf", 4096, seed=index))
    config = SlotConfig("llm", MODEL, NODE, policy="pinned", version="1.0.0", poll_period_s=10.0)
    events, clock, consumer = [], Clock(), Consumer()
    log = type("Log", (), {"info": lambda self, m: None, "warning": lambda self, m: None, "error": lambda self, m: None})()
    deployer = Deployer(LocalStore(tmp_path / "store"), ArtifactCache(tmp_path / "cache", trust),
                        on_event=events.append, log=log, retry_after_s=lambda: 30.0, clock=clock)
    slot = deployer.add_slot("llm", lambda: config, consumer)

    def seen(label=None, requests=0, errors=0):
        deployer.observe(NODE, {"model": label if label is not None else consumer.serving,
                                "model_requests": str(requests), "model_errors": str(errors)})

    return type("Rig", (), dict(root=tmp_path, config=config, events=events, clock=clock, consumer=consumer,
                                deployer=deployer, slot=slot, seen=staticmethod(seen)))


def test_the_first_deployment_waits_for_the_consumer_then_serves_the_pinned_version(rig):
    rig.deployer.reconcile(rig.slot, alive_window_s=5)
    assert rig.consumer.requests == []  # never seen: nobody to deploy to
    rig.seen()
    rig.deployer.reconcile(rig.slot, alive_window_s=5)
    assert rig.consumer.serving == f"{MODEL}@1.0.0" and rig.slot.history == ["1.0.0"]
    assert [(e.state, e.event) for e in rig.events] == [(LOADING, "loading"), (ACTIVE, "loaded")]
    states = {entry.manifest.version: entry.state for entry in rig.deployer.listing()}
    assert states == {"1.0.0": ACTIVE, "1.1.0": "available"}
    assert rig.deployer.summary() == (True, f"llm={MODEL}@1.0.0", {"slot.llm": f"{MODEL}@1.0.0", "deferred.llm": ""})


def test_a_refused_swap_keeps_the_old_version_and_is_not_retried_at_once(rig):
    rig.deployer.swap(rig.slot, "1.0.0")
    rig.consumer.refuse = True
    outcome = rig.deployer.swap(rig.slot, "1.1.0")
    assert not outcome.success and "health check failed" in outcome.message and "1.0.0 still serving" in outcome.message
    assert rig.slot.active_version == "1.0.0" and "1.1.0" in rig.slot.failed and rig.events[-1].state == FAILED
    rig.consumer.gone = True
    assert "is not running" in rig.deployer.swap(rig.slot, "1.1.0").message
    unknown = rig.deployer.swap(rig.slot, "9.9.9")
    assert not unknown.success and "9.9.9 is not in" in unknown.message and rig.slot.active_version == "1.0.0"


def test_a_second_swap_while_one_runs_is_told_busy(rig):
    rig.consumer.block = threading.Event()
    worker = threading.Thread(target=rig.deployer.swap, args=(rig.slot, "1.0.0"))
    worker.start()
    while not rig.consumer.requests:
        pass
    assert rig.deployer.swap(rig.slot, "1.1.0").message.startswith("busy")
    rig.consumer.block.set()
    worker.join()
    assert rig.slot.active_version == "1.0.0"


def test_rollback_by_hand_and_by_the_new_versions_own_error_rate(rig):
    assert not rig.deployer.rollback(rig.slot, "requested").success  # nothing earlier yet
    rig.deployer.swap(rig.slot, "1.0.0")
    rig.deployer.swap(rig.slot, "1.1.0")
    outcome = rig.deployer.rollback(rig.slot, "requested")
    assert outcome.success and rig.slot.active_version == "1.0.0" and rig.slot.failed["1.1.0"] == "rolled back: requested"
    rig.slot.failed.clear()
    rig.deployer.swap(rig.slot, "1.1.0")
    rig.seen(requests=4, errors=4)  # below rollback_min_requests: not yet judged
    rig.deployer.reconcile(rig.slot, alive_window_s=5)
    assert rig.slot.active_version == "1.1.0"
    rig.seen(requests=6, errors=3)
    rig.deployer.reconcile(rig.slot, alive_window_s=5)
    assert rig.slot.active_version == "1.0.0" and "error rate 50%" in rig.slot.failed["1.1.0"]


def test_errors_after_the_watch_window_do_not_roll_back(rig):
    rig.deployer.swap(rig.slot, "1.0.0")
    rig.deployer.swap(rig.slot, "1.1.0")
    rig.clock.now += rig.config.rollback_window_s + 1
    rig.seen(requests=10, errors=10)
    rig.deployer.reconcile(rig.slot, alive_window_s=5)
    assert rig.slot.active_version == "1.1.0"


def test_policy_latest_follows_new_releases_but_not_a_failed_one(rig):
    rig.config.policy = "latest"
    rig.seen()
    rig.deployer.reconcile(rig.slot, alive_window_s=5)
    rig.seen()
    rig.deployer.reconcile(rig.slot, alive_window_s=5)  # polls: 1.1.0 is newer
    assert rig.slot.active_version == "1.1.0"
    publish(rig.root, MODEL, "1.2.0", rig.root / "src" / "1.0.0.gguf")
    rig.consumer.refuse = True
    rig.clock.now += 10
    rig.seen()
    rig.deployer.reconcile(rig.slot, alive_window_s=5)
    assert rig.slot.active_version == "1.1.0" and "1.2.0" in rig.slot.failed
    rig.consumer.refuse = False
    rig.clock.now += 60  # past retry_after and the poll period: a failed release is still not taken
    rig.seen()
    rig.deployer.reconcile(rig.slot, alive_window_s=5)
    assert rig.slot.active_version == "1.1.0"


def test_a_consumer_that_restarted_gets_the_slots_version_back(rig):
    rig.deployer.swap(rig.slot, "1.1.0")
    rig.consumer.serving = "SmolLM2 (built-in default)"
    rig.seen()
    rig.deployer.reconcile(rig.slot, alive_window_s=5)
    assert rig.consumer.serving == f"{MODEL}@1.1.0" and rig.events[-1].event == "restored"


def test_the_memory_plan_refuses_or_unloads_first_as_configured(rig):
    rig.deployer.swap(rig.slot, "1.0.0")
    rig.config.memory_budget_mb = 4096 * 1.5 / 2**20  # one model fits, two do not
    outcome = rig.deployer.swap(rig.slot, "1.1.0")
    assert not outcome.success and "allow_resource_preserving" in outcome.message
    rig.config.allow_resource_preserving = True
    outcome = rig.deployer.swap(rig.slot, "1.1.0")
    assert outcome.success and "resource-preserving" in outcome.message and rig.consumer.requests[-1].release_first


def test_an_adapter_is_deployed_on_its_base(rig):
    adapter = make_model_file(rig.root / "src" / "adapter.gguf", 1024, seed=9)
    publish(rig.root, MODEL, "1.3.0-lora", adapter, kind="adapter", adapter_base=f"{MODEL}@1.0.0")
    assert rig.deployer.swap(rig.slot, "1.3.0-lora").success
    request = rig.consumer.requests[-1]
    assert request.adapter_path.name == "adapter.gguf" and request.model_path.name == "1.0.0.gguf"


def test_a_vlm_bundle_is_deployed_as_its_folder_with_the_language_model_it_names(rig):
    release = Path(__file__).resolve().parents[2] / "models" / "releases" / "ct-report-vlm" / "1.0.0-f32"
    files = [release / name for name in ("adapter-lora.gguf", "ct-encoder.onnx", "ct-projector.onnx")]
    fields = {"task": "vlm", "format": "onnx", "quantization": "f32"}
    publish(rig.root, "ct-vlm", "1.0.0", files, base_model=f"{MODEL}@1.1.0", **fields)
    publish(rig.root, "ct-vlm", "1.1.0", files, **fields)  # names no language model
    consumer = Consumer()
    consumer.load = lambda request, timeout_s, serving: (
        consumer.requests.append(request) or LoadOutcome(True, "loaded", "", request.reference))
    slot = rig.deployer.add_slot("vlm", lambda: SlotConfig("vlm", "ct-vlm", f"{NODE}/vlm"), consumer)
    assert rig.deployer.swap(slot, "1.0.0").success
    request = consumer.requests[-1]
    assert request.model_path.is_dir() and {p.name for p in request.model_path.iterdir()} >= {f.name for f in files}
    assert request.base_path.name == "1.1.0.gguf" and request.adapter_path is None
    refused = rig.deployer.swap(slot, "1.1.0")
    assert not refused.success and "names no language model to run on" in refused.message


def test_requests_name_their_slot(rig):
    assert rig.deployer.slot_for("llm", "") is rig.slot and rig.deployer.slot_for("", MODEL) is rig.slot
    assert "unknown slot 'x'" in rig.deployer.slot_for("x", "")
    assert f"serves {MODEL}, not other" in rig.deployer.slot_for("llm", "other")
    assert "no slot serves model 'other'" in rig.deployer.slot_for("", "other")


def test_a_swap_waits_while_a_node_holds_swaps_and_is_done_when_the_hold_ends(rig):
    """The colreg node mid-manoeuvre (any node's `swap_hold`): an operator's swap is deferred with the reason and
    done by reconcile once the hold ends; a rollback or the first deployment never waits; force overrides."""
    colreg = "/t/colreg_node"
    rig.deployer.observe(colreg, {"swap_hold": "altering course for target-2"})
    rig.seen()
    rig.deployer.reconcile(rig.slot, alive_window_s=5)
    assert rig.slot.active_version == "1.0.0"  # the first deployment: nothing working is changed
    outcome = rig.deployer.swap(rig.slot, "1.1.0")
    assert not outcome.success and outcome.deferred and outcome.active == "1.0.0"
    assert "deferred (/t/colreg_node: altering course for target-2)" in outcome.message
    assert (rig.events[-1].event, rig.events[-1].version, rig.events[-1].reason) == (
        "deferred", "1.1.0", "/t/colreg_node: altering course for target-2")
    assert rig.deployer.summary()[2]["deferred.llm"] == "1.1.0"
    for _ in range(3):  # the hold goes on: nothing changes
        rig.clock.now += 1
        rig.deployer.observe(colreg, {"swap_hold": "altering course for target-2"})
        rig.seen()
        rig.deployer.reconcile(rig.slot, alive_window_s=5)
    assert rig.slot.active_version == "1.0.0" and len(rig.consumer.requests) == 1
    rig.deployer.observe(colreg, {"swap_hold": ""})  # the manoeuvre is over
    rig.deployer.reconcile(rig.slot, alive_window_s=5)
    assert rig.slot.active_version == "1.1.0" and rig.slot.deferred is None and rig.events[-1].event == "swapped"
    rig.deployer.observe(colreg, {"swap_hold": "altering course for target-3"})
    assert rig.deployer.rollback(rig.slot, "requested").success  # puts back what worked: never deferred
    forced = rig.deployer.swap(rig.slot, "1.1.0", force=True)
    assert forced.success and rig.slot.active_version == "1.1.0"


def test_a_hold_that_never_ends_gives_the_swap_up_and_a_silent_node_holds_nothing(rig):
    supervisor = "/t/safety_supervisor"
    rig.deployer.swap(rig.slot, "1.0.0")
    rig.deployer.observe(supervisor, {"swap_hold": "emergency stop"})
    rig.deployer.observe("/elsewhere/ct_report", {"swap_hold": "study in progress"})  # counted: scope is "/"
    assert len(rig.deployer.holding()) == 2
    assert rig.deployer.swap(rig.slot, "1.1.0").deferred
    rig.clock.now += rig.config.max_deferral_s + 1
    for node in (supervisor, "/elsewhere/ct_report"):
        rig.deployer.observe(node, {"swap_hold": "still"})
    rig.seen()
    rig.deployer.reconcile(rig.slot, alive_window_s=5)
    assert rig.slot.deferred is None and rig.slot.active_version == "1.0.0"
    assert rig.events[-1].event == "deferral-expired" and "given up after 600 s" in rig.events[-1].reason
    rig.clock.now += rig.deployer.hold_alive_s  # the holding nodes fall silent (crashed): they hold nothing
    rig.seen()
    assert rig.deployer.holding() == [] and rig.deployer.swap(rig.slot, "1.1.0").success
    scoped = Deployer(rig.deployer.store, rig.deployer.cache, on_event=list().append, log=rig.deployer.log,
                      hold_scope="/t/", clock=rig.clock)
    scoped.observe("/other/colreg_node", {"swap_hold": "altering"})
    assert scoped.holding() == []  # another stack's nodes do not hold this manager's slots


def test_a_shadow_slots_candidate_is_promoted_once_its_judge_says_so_and_waits_for_a_window(rig):
    """A candidate in a shadow slot (its own consumer, never acted on) is deployed to the slot it shadows when a
    node of the stack reports it promoted by its gate, waiting for the swap windows; not before, not twice, and
    never when the slot is not set to promote."""
    import json

    shadow_node, judge = "/t/llm_shadow", "/t/safety_supervisor"
    shadow_consumer = Consumer()
    shadow_config = SlotConfig("llm_shadow", MODEL, shadow_node, policy="pinned", version="1.1.0", shadow_of="llm",
                               promote=False)
    shadow = rig.deployer.add_slot("llm_shadow", lambda: shadow_config, shadow_consumer)
    rig.deployer.swap(rig.slot, "1.0.0")
    rig.deployer.swap(shadow, "1.1.0")

    def reconcile(score: dict, hold: str = "") -> None:  # the judge's report carries its hold and its score
        rig.deployer.observe(judge, {"shadow": json.dumps(score), "swap_hold": hold})
        rig.deployer.observe(shadow_node, {"model": shadow_consumer.serving})
        rig.seen()
        rig.deployer.reconcile_all(alive_window_s=5)

    watching = {"model": f"{MODEL}@1.1.0", "decisions": 3, "agreement_pct": 100.0, "promoted": False}
    reconcile(watching)
    reconcile({**watching, "decisions": 20, "promoted": True})
    assert rig.slot.active_version == "1.0.0"  # promote is off: the score is only reported
    shadow_config.promote = True
    reconcile({**watching, "decisions": 20, "promoted": True}, hold="a greenhouse emergency stop")
    assert rig.slot.active_version == "1.0.0" and rig.slot.deferred is not None  # waits for the window
    reconcile({**watching, "decisions": 20, "promoted": True})
    assert rig.slot.active_version == "1.1.0" and [e.event for e in rig.events].count("promoted") == 1
    rig.deployer.rollback(rig.slot, "an operator's choice")
    reconcile({**watching, "decisions": 20, "promoted": True})
    assert rig.slot.active_version == "1.0.0"  # promoted once; the operator's rollback stands
    rig.deployer.observe(judge, {"shadow": "not json"})  # a garbled report changes nothing
    rig.deployer.observe(judge, {"shadow": json.dumps(["a", "list"])})
    assert rig.deployer.shadow_scores[f"{MODEL}@1.1.0"][1]["promoted"] is True
