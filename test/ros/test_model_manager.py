"""model_manager with a real llm_node over DDS: deployment, swaps under load, refusals, rollback, crashes.

The registry is a local store built by the fixture from the real SmolLM2 GGUF: versions 1.0.0 and 1.1.0 are
good, 1.2.0 is signed by a key nobody trusts, 1.3.0 has a corrupted file in the store, 1.4.0 is a signed file
that is not a loadable model.
"""
import threading
import time
from collections import Counter

import pytest
from rclpy.action import ActionClient
from rclpy.qos import DurabilityPolicy, QoSProfile

from helpers.lifecycle import bring_up, set_parameter
from helpers.ros import goal_response, result_of, ros_node, spawn, stop, wait_until
from helpers.registry import llm_arguments, make_keys, make_lora_adapter, manager_arguments, publish
from helpers.servers import make_model_file
from tango2_msgs.action import Generate
from tango2_msgs.msg import ModelInfo, ModelStatus
from tango2_msgs.srv import ListModels, Rollback, SwapModel
from tango2_ros.core.artifacts.manifest import Manifest
from tango2_ros.core.artifacts.signing import TrustStore
from tango2_ros.core.runtime.default_models import default_llm_path

pytestmark = pytest.mark.ros

NS = "/t4"
LLM = f"{NS}/llm_node"
MANAGER = f"{NS}/models"
MODEL = "smollm2-135m-instruct"


def build_registry(root):
    make_keys(root, "fleet", "rogue")  # the manager trusts only the fleet key
    publisher_trust = TrustStore(root / "publisher-trusted")  # whoever pushed 1.2.0 trusted the rogue key too
    for name in ("fleet", "rogue"):
        publisher_trust.trust(root / "keys" / f"{name}.pub")
    corrupt = make_model_file(root / "src" / "corrupt.gguf", 1 << 20, seed=3)
    broken = make_model_file(root / "src" / "not-a-model.gguf", 1 << 20, seed=4)
    plan = [("1.0.0", default_llm_path(), "fleet"), ("1.1.0", default_llm_path(), "fleet"),
            ("1.2.0", default_llm_path(), "rogue"), ("1.3.0", corrupt, "fleet"), ("1.4.0", broken, "fleet")]
    for version, source, key in plan:
        publish(root, MODEL, version, source, key, publisher_trust)
    adapter = make_lora_adapter(root / "src" / "colreg-lora.gguf")
    publish(root, MODEL, "1.5.0", adapter, quantization="f32", kind="adapter", adapter_base=f"{MODEL}@1.0.0")
    corrupted = Manifest.from_bytes((root / "bundles" / f"{MODEL}-1.3.0" / "manifest.json").read_bytes()).files[0].sha256
    blob = root / "store" / "blobs" / "sha256" / corrupted
    blob.write_bytes(b"GGUF" + bytes(blob.stat().st_size - 4))


def manager_args(root, ns=NS, **slot):
    return manager_arguments(root, ns, MODEL, **{
        "reconcile_period_s": 0.3, "retry_after_s": 1.0, "llm.version": "1.0.0", "llm.rollback_min_requests": 4,
        "llm.rollback_error_rate": 0.5, "llm.rollback_window_s": 60.0, "llm.health_budget_s": 30.0, **slot})


def llm_args(ns=NS):
    return llm_arguments(ns, "n_parallel:=4", "n_ctx_per_seq:=512", "stream_interval_tokens:=0")


class Harness:
    """The two processes plus the clients a user would have (services, action, latched status topic)."""

    def __init__(self, node, root, processes, ns=NS):
        self.node, self.root, self.processes, self.ns = node, root, processes, ns
        self.swap = node.create_client(SwapModel, f"{ns}/models/swap")
        self.rollback = node.create_client(Rollback, f"{ns}/models/rollback")
        self.list = node.create_client(ListModels, f"{ns}/models/list")
        self.action = ActionClient(node, Generate, f"{ns}/llm/generate")
        self.events: list[ModelStatus] = []
        self.subscribe_status()

    def subscribe_status(self):
        latched = QoSProfile(depth=50, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        return self.node.create_subscription(ModelStatus, f"{self.ns}/models/status", self.events.append, latched)

    def call(self, client, request, timeout=120.0):
        assert client.wait_for_service(timeout_sec=30), f"{client.srv_name} missing"
        return result_of(client.call_async(request), timeout)

    def ask(self, text="Say hello.", **kwargs):
        goal = Generate.Goal(prompt=text, max_tokens=kwargs.pop("max_tokens", 8), **kwargs)
        handle = result_of(self.action.send_goal_async(goal), 30)
        assert handle.accepted
        return goal_response(handle, 120).result

    def serving(self) -> str:
        return self.ask().model

    def wait_serving(self, label, timeout=60.0):
        assert wait_until(lambda: self.serving() == label, timeout, interval=0.3), f"never served {label}"

    def event(self, kind, version, timeout=30.0):
        found = lambda: next((e for e in self.events if e.event == kind and e.model.version == version), None)  # noqa: E731
        assert wait_until(lambda: found() is not None, timeout), [(e.event, e.model.version) for e in self.events]
        return found()

    def ensure(self, version):
        """Serve `version` (waiting while the manager is busy with a deployment of its own)."""
        for _ in range(60):
            response = self.call(self.swap, SwapModel.Request(name=MODEL, version=version))
            if not response.message.startswith("busy"):
                break
            time.sleep(0.5)
        assert response.active_version == version, response.message


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    build_registry(root)
    llm = spawn(llm_args())
    manager = spawn(manager_args(root))
    try:
        with ros_node("manager_test") as node:
            bring_up(node, LLM)
            bring_up(node, MANAGER)
            h = Harness(node, root, {"llm": llm, "manager": manager})
            assert h.action.wait_for_server(timeout_sec=30)
            time.sleep(1.0)  # let the new clients be discovered both ways before the first request
            yield h
    finally:
        for process in (manager, llm):
            stop(process)


def test_the_pinned_version_is_deployed_at_start_and_the_status_is_latched(harness):
    harness.wait_serving(f"{MODEL}@1.0.0")
    late: list[ModelStatus] = []
    latched = QoSProfile(depth=50, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    harness.node.create_subscription(ModelStatus, f"{MANAGER}/status", late.append, latched)
    assert wait_until(lambda: any(e.event == "loaded" and e.model.version == "1.0.0" for e in late), 10), \
        "a subscriber that joins later must still get the deployment event"
    loaded = next(e for e in late if e.event == "loaded")
    assert loaded.slot == "llm" and loaded.model.state == ModelInfo.STATE_ACTIVE and loaded.model.node == LLM
    assert loaded.model.sha256.startswith("sha256:") and loaded.model.size_bytes > 90_000_000


def test_a_swap_under_continuous_load_drops_no_request(harness):
    harness.ensure("1.0.0")
    outcomes, stop_flag = [], threading.Event()

    def client_loop():
        while not stop_flag.is_set():
            result = harness.ask("Name a colour.")
            outcomes.append((result.finish_reason, result.model, result.error))

    threads = [threading.Thread(target=client_loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: len(outcomes) >= 3, 60)  # the old version answers under load
    response = harness.call(harness.swap, SwapModel.Request(name=MODEL, version="1.1.0"))
    assert wait_until(lambda: sum(model == f"{MODEL}@1.1.0" for _, model, _ in outcomes) >= 3, 60), outcomes[-3:]
    stop_flag.set()
    for thread in threads:
        thread.join(timeout=120)
    assert response.success, response.message
    assert (response.previous_version, response.active_version) == ("1.0.0", "1.1.0")
    assert response.load_s > 0 and response.health_s > 0 and response.pull_s > 0
    served = Counter(model for _, model, _ in outcomes)
    assert served[f"{MODEL}@1.0.0"] > 0 and served[f"{MODEL}@1.1.0"] > 0, served
    failures = [o for o in outcomes if o[0] not in ("stop", "length")]
    assert not failures, failures
    assert harness.event("swapped", "1.1.0").previous_version == "1.0.0"


@pytest.mark.parametrize("version, reason", [
    ("9.9.9", "not in"),
    ("1.2.0", "untrusted key"),
    ("1.3.0", "corrupted or tampered"),
    ("1.4.0", "could not load"),
])
def test_a_failed_swap_leaves_the_old_version_serving_and_says_why(harness, version, reason):
    harness.ensure("1.0.0")
    response = harness.call(harness.swap, SwapModel.Request(name=MODEL, version=version))
    assert not response.success and reason in response.message, response.message
    assert response.active_version == "1.0.0" and "1.0.0 still serving" in response.message
    assert harness.serving() == f"{MODEL}@1.0.0"
    failed = harness.event("failed", version)
    assert failed.model.state == ModelInfo.STATE_FAILED and reason in failed.model.reason


def test_an_adapter_artifact_is_deployed_on_top_of_its_base(harness):
    """A domain update as a LoRA adapter: a few kB travel, the manager pulls the base it names and the consumer
    loads both."""
    harness.ensure("1.1.0")
    response = harness.call(harness.swap, SwapModel.Request(name=MODEL, version="1.5.0"))
    assert response.success and response.active_version == "1.5.0", response.message
    assert harness.serving() == f"{MODEL}@1.5.0"
    cached = harness.root / "cache" / MODEL
    assert (cached / "1.5.0" / "colreg-lora.gguf").stat().st_size < 100_000 and (cached / "1.0.0").is_dir()


def test_two_swaps_at_once_one_is_told_busy(harness):
    harness.ensure("1.0.0")
    futures = [harness.swap.call_async(SwapModel.Request(name=MODEL, version=v)) for v in ("1.1.0", "1.0.0")]
    responses = [result_of(f, 120) for f in futures]
    busy = [r for r in responses if r.message.startswith("busy")]
    assert len(busy) == 1 and not busy[0].success, [r.message for r in responses]


def test_rollback_returns_to_the_version_served_before(harness):
    harness.ensure("1.0.0")
    harness.ensure("1.1.0")
    response = harness.call(harness.rollback, Rollback.Request(slot="llm"))
    assert response.success and (response.previous_version, response.active_version) == ("1.1.0", "1.0.0")
    assert harness.serving() == f"{MODEL}@1.0.0"


def test_a_version_whose_requests_fail_is_rolled_back_by_the_manager(harness):
    harness.ensure("1.0.0")
    harness.ensure("1.1.0")
    before = len([e for e in harness.events if e.event == "rolled-back"])
    # Requests whose output cannot satisfy their schema in one token count as model errors on the consumer.
    for _ in range(6):
        result = harness.ask("Reply with JSON.", max_tokens=1, json_schema='{"type": "object"}')
        assert result.finish_reason == "error"
    rolled_back = lambda: len([e for e in harness.events if e.event == "rolled-back"]) > before  # noqa: E731
    assert wait_until(rolled_back, 20), harness.processes["manager"].output()[-3000:]
    rolled = [e for e in harness.events if e.event == "rolled-back"][-1]
    assert rolled.model.version == "1.0.0" and rolled.previous_version == "1.1.0"
    harness.wait_serving(f"{MODEL}@1.0.0", timeout=10)


def test_list_reports_every_version_and_its_state(harness):
    harness.ensure("1.0.0")
    models = harness.call(harness.list, ListModels.Request()).models
    states = {m.version: m.state for m in models}
    assert set(states) == {"1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0"}
    assert states["1.0.0"] == ModelInfo.STATE_ACTIVE and states["1.2.0"] == ModelInfo.STATE_FAILED
    assert next(m for m in models if m.version == "1.0.0").node == LLM
    assert harness.call(harness.list, ListModels.Request(task="detector")).models == []


@pytest.mark.parametrize("request_, words", [
    (SwapModel.Request(name=MODEL, version="1.0.0", slot="nope"), "unknown slot"),
    (SwapModel.Request(name="other-model", version="1.0.0"), "no slot serves model"),
    (SwapModel.Request(name=MODEL, version="not-a-version"), "not in"),
    (SwapModel.Request(name=MODEL, version="1.0.0; rm -rf /"), "not in"),
])
def test_bad_swap_requests_get_a_reason_and_change_nothing(harness, request_, words):
    harness.ensure("1.0.0")
    response = harness.call(harness.swap, request_)
    assert not response.success and words in response.message, response.message
    assert harness.serving() == f"{MODEL}@1.0.0"


def test_rollback_of_an_unknown_slot_is_refused(harness):
    response = harness.call(harness.rollback, Rollback.Request(slot="nope"))
    assert not response.success and "unknown slot" in response.message


def test_consumer_crash_during_a_swap_then_restore_after_restart(harness):
    harness.ensure("1.0.0")
    future = harness.swap.call_async(SwapModel.Request(name=MODEL, version="1.1.0"))
    time.sleep(0.15)  # the manager is pulling 1.1.0 or the consumer is loading it
    harness.processes["llm"].kill()
    harness.processes["llm"].wait()
    response = result_of(future, 60)
    assert not response.success and ("went away" in response.message or "not running" in response.message), response.message
    assert response.active_version == "1.0.0"
    # the supervisor would restart it; here the test does: the manager puts the slot's version back
    harness.processes["llm"] = spawn(llm_args())
    bring_up(harness.node, LLM)
    assert harness.action.wait_for_server(timeout_sec=30)
    harness.event("restored", "1.0.0", timeout=60)
    harness.wait_serving(f"{MODEL}@1.0.0", timeout=30)


def test_policy_latest_deploys_new_releases_within_the_memory_budget(tmp_path):
    """Two copies of the 94 MiB model do not fit a 150 MiB budget: an update is refused until the slot may swap
    resource-preserving (unload first), which a parameter allows at run time."""
    ns = "/t5"
    root = tmp_path
    make_keys(root, "fleet")
    publish(root, MODEL, "1.0.0", default_llm_path())
    llm = spawn(llm_args(ns))
    manager = spawn(manager_args(root, ns, **{"llm.policy": "latest", "llm.version": "\"\"", "llm.poll_period_s": 0.5,
                                             "llm.memory_budget_mb": 150.0}))
    try:
        with ros_node("latest_test") as node:
            bring_up(node, f"{ns}/llm_node")
            bring_up(node, f"{ns}/models")
            h = Harness(node, root, {"llm": llm, "manager": manager}, ns)
            assert h.action.wait_for_server(timeout_sec=30)
            time.sleep(1.0)
            h.wait_serving(f"{MODEL}@1.0.0")

            publish(root, MODEL, "1.1.0", default_llm_path())
            refused = h.event("failed", "1.1.0", timeout=30)
            assert "old plus new need 188 MiB" in refused.model.reason and "allow_resource_preserving" in refused.model.reason
            assert h.serving() == f"{MODEL}@1.0.0"

            assert set_parameter(node, f"{ns}/models", "llm.allow_resource_preserving", True)
            assert not set_parameter(node, f"{ns}/models", "llm.policy", "sometimes")
            response = h.call(h.swap, SwapModel.Request(name=MODEL, version=""))  # empty = latest
            assert response.success and response.active_version == "1.1.0", response.message
            assert "resource-preserving" in response.message

            publish(root, MODEL, "1.2.0", default_llm_path())
            h.event("updated", "1.2.0", timeout=30)
            h.wait_serving(f"{MODEL}@1.2.0", timeout=10)
    finally:
        for process in (manager, llm):
            stop(process)
