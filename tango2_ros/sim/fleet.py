"""A fleet on one machine (`tango2 fleet simulate`): N device stacks, a fleet broker, an OCI registry and the fleet
controller, all real and on loopback, rolling one release out through a canary while one device's link is down.

Each device is the `fleet-device` profile's nodes (llm_node, llm_api, model manager, fleet_agent) in a `tango2
launch` process on a DDS domain of its own, with its own model cache and its own mosquitto broker. The broker's
bridge reaches the fleet broker through a `TcpLink` that the simulation cuts for `offline_s` once the rollout has
begun, and a load generator asks the device's OpenAI-style API a short question every `request_interval_s` the
whole time (the device's users, who must not notice the rollout: `failed_requests`).

The registry first holds SmolLM2-135M-Instruct 1.0.0, which every device serves; then 1.1.0 is published (the same
weights, a new signed release) and rolled out. With `bad_release` 1.1.0 is a signed file that is not a model: the
canary cannot load it, keeps serving 1.0.0, and the rollout must stop there and roll back. With
`registry_outage_s` the registry stops when the rollout widens and comes back that much later: the devices that
could not pull keep serving 1.0.0, say why, and ask again.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from tango2_ros.bringup.profiles import available_profiles
from tango2_ros.core.artifacts.publishing import publish_bundle, sign_bundle, write_bundle
from tango2_ros.core.artifacts.signing import TrustStore, generate_keypair
from tango2_ros.core.artifacts.stores import open_store
from tango2_ros.core.fleet.controller import FleetController
from tango2_ros.core.fleet.messages import topic
from tango2_ros.core.fleet.rollout import CanaryPolicy, Phase
from tango2_ros.core.mqtt import Bridge, MqttBroker
from tango2_ros.core.net import free_port
from tango2_ros.core.oci_registry import OciRegistry
from tango2_ros.core.processes import die_with_parent
from tango2_ros.core.runtime.default_models import default_llm_path
from tango2_ros.errors import UserError
from tango2_ros.sim.link import TcpLink

MODEL = "smollm2-135m-instruct"
SERVING, ROLLED_OUT = "1.0.0", "1.1.0"
STOP_GRACE_S = 20.0


@dataclass(frozen=True)
class FleetPlan:
    devices: int = 3
    bad_release: bool = False
    offline_s: float = 20.0  # how long the last device's link is down, from the rollout's start
    timeout_s: float = 600.0
    domain_base: int = 150  # device i runs on ROS_DOMAIN_ID domain_base + i
    request_interval_s: float = 1.0
    registry_outage_s: float = 0.0  # the registry is down this long once the rollout widens (0: never)
    telemetry_period_s: float = 2.0
    policy: CanaryPolicy = CanaryPolicy(window_s=10.0, min_requests=3, silent_after_s=30.0, load_timeout_s=180.0)


class LoadGenerator:
    """A device's users: a short chat request every `interval_s` to its OpenAI-style API, answers counted."""

    def __init__(self, port: int, interval_s: float) -> None:
        self.url, self.interval_s = f"http://127.0.0.1:{port}/v1/chat/completions", interval_s
        self.requests = self.failed = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Name one colour."}], "max_tokens": 4,
                "temperature": 0}
        while not self._stop.wait(self.interval_s):
            self.requests += 1
            try:
                answer = requests.post(self.url, json=body, timeout=60)
                answer.raise_for_status()
            except requests.RequestException as exc:
                self.failed += 1
                self.last_error = str(exc)[:200]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=65)


class DeviceStack:
    """One device: broker (bridged through a cuttable link), the fleet-device profile's nodes, its users."""

    def __init__(self, device_id: str, domain_id: int, folder: Path, fleet_broker_port: int, registry: str,
                 trusted_keys: Path, plan: FleetPlan) -> None:
        self.id, self.domain_id, self.folder = device_id, domain_id, folder
        self.link = TcpLink(fleet_broker_port)
        self.broker = MqttBroker(folder=folder / "broker", bridges=(Bridge(
            name=f"{device_id}-uplink", remote=f"127.0.0.1:{self.link.port}",
            out=tuple(topic(device_id, kind) for kind in ("telemetry", "state", "decisions")),
            into=(topic(device_id, "desired"),)),))
        self.api_port = free_port()
        self.profile = folder / "fleet-device.yaml"
        self.profile.write_text(yaml.safe_dump(self._profile(registry, trusted_keys, plan)))
        self.users = LoadGenerator(self.api_port, plan.request_interval_s)
        self.process: subprocess.Popen | None = None
        self.offline_s = 0.0

    def _profile(self, registry: str, trusted_keys: Path, plan: FleetPlan) -> dict:
        profile = yaml.safe_load(available_profiles()["fleet-device"].read_text())
        parameters = {node["name"]: node["parameters"] for node in profile["nodes"]}
        parameters["llm_node"].update(n_threads=1, n_parallel=1, n_ctx_per_seq=512)
        parameters["llm_api"].update(port=self.api_port)
        parameters["models"].update(store=registry, cache_dir=str(self.folder / "cache"),
                                    trusted_keys_dir=str(trusted_keys), reconcile_period_s=1.0, retry_after_s=5.0)
        parameters["models"]["llm"].update(version=SERVING)
        parameters["fleet_agent"].update(device_id=self.id, mqtt_port=self.broker.port,
                                         telemetry_period_s=plan.telemetry_period_s, retry_s=5.0)
        return profile

    def start(self) -> None:
        self.broker.start()
        log = (self.folder / "launch.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tango2_ros.cli", "launch", str(self.profile)], stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
            env={**os.environ, "ROS_DOMAIN_ID": str(self.domain_id), "PYTHONUNBUFFERED": "1"})

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        self.users.stop()
        if self.alive():
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.broker.stop()
        self.link.close()


class FleetSimulation:
    def __init__(self, plan: FleetPlan, folder: Path | None = None, say=lambda text: None) -> None:
        if plan.devices < 2:
            raise UserError("a fleet rollout needs at least 2 devices: a canary and one more")
        if not 0 <= plan.domain_base <= 232 - plan.devices:
            raise UserError(f"--domain-base {plan.domain_base}: the devices' DDS domains must lie in 0-232")
        self.plan, self.say = plan, say
        self.folder = folder or Path(tempfile.mkdtemp(prefix="tango2-fleet-"))
        self.registry: OciRegistry | None = None
        self.store = ""  # the registry as the devices' model managers name it
        self.fleet_broker: MqttBroker | None = None
        self.controller: FleetController | None = None
        self.devices: list[DeviceStack] = []

    # -- set-up ------------------------------------------------------------------------------------------------
    def _keys(self) -> tuple[Path, TrustStore]:
        keys = self.folder / "keys"
        generate_keypair(keys / "fleet.key", keys / "fleet.pub")
        trust = TrustStore(keys / "trusted")
        trust.trust(keys / "fleet.pub")
        return keys / "fleet.key", trust

    def _publish(self, version: str, source: Path, key: Path, trust: TrustStore) -> None:
        bundle = self.folder / "bundles" / f"{MODEL}-{version}"
        write_bundle(bundle, [source], name=MODEL, version=version, task="llm", format="gguf", quantization="q4_1")
        sign_bundle(bundle, key)
        publish_bundle(open_store(self.store), bundle, trust)
        shutil.rmtree(bundle)

    def _not_a_model(self) -> Path:
        path = self.folder / "bundles" / "src" / "smollm2-135m-instruct-broken.gguf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"GGUF" + random.Random(0).randbytes(1 << 20))
        return path

    def _wait(self, condition, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            for device in self.devices:
                if not device.alive():
                    raise UserError(f"{device.id}'s stack stopped (see {device.folder}/launch.log)")
            if time.monotonic() > deadline:
                raise UserError(f"{what} did not happen within {timeout_s:g} s (logs under {self.folder})")
            time.sleep(0.5)

    # -- the run -------------------------------------------------------------------------------------------------
    def run(self) -> dict:
        try:
            return self._run()
        finally:
            self.close()

    def _run(self) -> dict:
        plan = self.plan
        key, trust = self._keys()
        self.registry = OciRegistry(self.folder / "registry").start()
        self.store = f"oci://{self.registry.host}/tango2"
        self._publish(SERVING, default_llm_path(), key, trust)
        self.fleet_broker = MqttBroker(folder=self.folder / "fleet-broker").start()
        self.controller = FleetController("127.0.0.1", self.fleet_broker.port, policy=plan.policy).start()
        self.devices = [DeviceStack(f"device-{i + 1}", plan.domain_base + i, self.folder / f"device-{i + 1}",
                                    self.fleet_broker.port, self.store, trust.folder, plan)
                        for i in range(plan.devices)]
        first = f"{MODEL}@{SERVING}"
        self.say(f"starting {plan.devices} device stacks (DDS domains {plan.domain_base}-"
                 f"{plan.domain_base + plan.devices - 1}), registry {self.registry.host}, fleet broker "
                 f":{self.fleet_broker.port}")
        for device in self.devices:
            device.start()
        self._wait(lambda: all(self.controller.serving().get(d.id) == first for d in self.devices),
                   f"every device serving {first}", plan.timeout_s)
        for device in self.devices:
            device.users.start()
        time.sleep(3 * plan.telemetry_period_s)  # windows on 1.0.0: the canary's latency before the release
        self.say(f"every device serves {first}; publishing {MODEL}@{ROLLED_OUT}"
                 + (" (a file that is not a model)" if plan.bad_release else ""))
        self._publish(ROLLED_OUT, self._not_a_model() if plan.bad_release else default_llm_path(), key, trust)
        release = f"{MODEL}@{ROLLED_OUT}"
        rollout = self.controller.begin(release, "llm", [d.id for d in self.devices])
        started = time.monotonic()
        offline = self.devices[-1]
        offline.link.cut()
        self.say(f"rollout of {release}: canary {rollout.canary}; {offline.id}'s link is down for {plan.offline_s:g} s")
        outage = _Outage(self.registry, plan.registry_outage_s, self.say)
        while True:
            phase = self.controller.step()
            elapsed = time.monotonic() - started
            if not offline.link.up and elapsed >= plan.offline_s:
                offline.link.restore()
                offline.offline_s = elapsed
                self.say(f"{offline.id}'s link is back after {elapsed:.1f} s")
            outage.step(widening=phase is Phase.WIDENING)
            if phase in (Phase.DONE, Phase.ROLLED_BACK) and offline.link.up and outage.over and self._settled(phase):
                break
            if elapsed > plan.timeout_s:
                raise UserError(f"the rollout did not finish within {plan.timeout_s:g} s: {rollout.report()}")
            time.sleep(0.5)
        self.say(f"rollout {phase.value} after {time.monotonic() - started:.1f} s" +
                 (f": {rollout.reason}" if rollout.reason else ""))
        return self._report(time.monotonic() - started)

    def _settled(self, phase: Phase) -> bool:
        """Rolled out: every device serves the release. Rolled back: the canary serves its previous release, and the
        device that was offline has said what it serves since it came back."""
        rollout, serving = self.controller.rollout, self.controller.serving()
        if phase is Phase.DONE:
            return True
        return serving.get(rollout.canary) == rollout.previous[rollout.canary] and \
            self.controller.devices[self.devices[-1].id].heard_at > rollout.started_at + self.devices[-1].offline_s

    def _report(self, rollout_s: float) -> dict:
        for device in self.devices:
            device.users.stop()
        time.sleep(2 * self.plan.telemetry_period_s)  # the last windows reach the fleet
        rollout = self.controller.rollout.report()
        updated = {d["id"]: d["updated_at_s"] for d in rollout["devices"]}
        records = self.controller.devices
        return {
            "release": rollout["release"], "canary": rollout["canary"], "rolled_back": rollout["rolled_back"],
            "reason": rollout["reason"], "rollout_s": round(rollout_s, 1),
            "telemetry_messages": self.controller.counts["telemetry"],
            "registry_outage_s": self.plan.registry_outage_s,
            "telemetry_repeats_dropped": self.controller.counts["repeats"],
            "canary_counts": rollout["canary_counts"],
            "devices": [{"id": d.id, "final_version": self.controller.serving().get(d.id, ""),
                         "updated_at_s": updated.get(d.id), "offline_s": round(d.offline_s, 1),
                         "requests": d.users.requests, "failed_requests": d.users.failed,
                         "telemetry_messages": records[d.id].telemetry if d.id in records else 0,
                         "telemetry_lost": records[d.id].lost() if d.id in records else None,
                         "swap_failures": records[d.id].failures if d.id in records else []}
                        for d in self.devices],
            "logs": str(self.folder),
        }

    def close(self) -> None:
        """Stop everything; the logs stay in the folder, the model copies (100 MB per device and release) go."""
        for device in self.devices:
            device.stop()
            shutil.rmtree(device.folder / "cache", ignore_errors=True)
        if self.controller is not None:
            self.controller.stop()
        for server in (self.fleet_broker, self.registry):
            if server is not None:
                server.stop()
        if self.registry is not None:
            shutil.rmtree(self.registry.folder / "data", ignore_errors=True)


class _Outage:
    """The registry going down once the rollout widens, and coming back `seconds` later (same port, same blobs)."""

    def __init__(self, registry: OciRegistry, seconds: float, say) -> None:
        self.registry, self.seconds, self.say = registry, seconds, say
        self.down_at: float | None = None
        self.over = seconds <= 0

    def step(self, widening: bool) -> None:
        if self.over:
            return
        if self.down_at is None and widening:
            self.registry.stop()
            self.down_at = time.monotonic()
            self.say(f"the registry is down for {self.seconds:g} s")
        elif self.down_at is not None and time.monotonic() - self.down_at >= self.seconds:
            self.registry.start()
            self.over = True
            self.say("the registry is back")


def report_text(report: dict) -> str:
    """The report for a person."""
    lines = [f"{report['release']}: canary {report['canary']}, "
             + (f"rolled back ({report['reason']})" if report["rolled_back"] else "rolled out")
             + f" in {report['rollout_s']} s; {report['telemetry_messages']} telemetry messages"]
    for device in report["devices"]:
        lines.append(f"  {device['id']:<10} {device['final_version']:<32} updated at "
                     f"{device['updated_at_s'] if device['updated_at_s'] is not None else '-'} s, offline "
                     f"{device['offline_s']} s, {device['failed_requests']}/{device['requests']} requests failed, "
                     f"{device['telemetry_lost']} telemetry lost, {len(device['swap_failures'])} swap failure(s)")
    return "\n".join(lines)

