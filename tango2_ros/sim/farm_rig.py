"""The farm's nodes for a simulated run (`tango2 sdf simulate` through ROS, and the tests), with a mosquitto
broker and the plant's Modbus server, in their own namespace; the plant drives them through `farm_loop`."""
from __future__ import annotations

import sys
from pathlib import Path

from tango2_msgs.msg import ModelInfo
from tango2_ros.bringup.profiles import NodeSpec, Profile
from tango2_ros.bringup.supervisor import Supervisor
from tango2_ros.core.shadow import SHADOW_KEY, shadow_score
from tango2_ros.core.net import free_port
from tango2_ros.errors import UserError
from tango2_ros.ros.deployments import wait_for_deployments
from tango2_ros.ros.diagnostics import DiagnosticsLatest
from tango2_ros.core.mqtt import MqttBroker
from tango2_ros.sim import SIM_NAMESPACE
from tango2_ros.sim.farm_loop import RosFarmLoop

TOPIC_PREFIX = "tango2/greenhouse/sim"
SHADOW_NICE = 10  # the candidate's llm_node runs below the serving one, on one thread (ggml's workers spin)
DEFAULT_LAM = "smollm2-135m-instruct@1.0.0"  # what the llm_node serves when no --model is given


class FarmRig:
    """The farm's nodes for a simulated run, with a mosquitto broker, in their own namespace. A LAM model given as a
    registry reference is deployed by a model manager, as on the farm (a GGUF file goes to the llm_node directly).
    A `shadow` candidate runs in an llm_node of its own (`llm_shadow`, at lower CPU priority), asked by the
    controller after the serving model and judged by the supervisor (`shadow_score()`)."""

    def __init__(self, controller: str, crop: str, greenhouse, model: str | None = None, shadow: str | None = None,
                 shadow_decisions: int = 20) -> None:
        self.broker = MqttBroker().start()
        modbus_port = free_port()
        nodes = [
            NodeSpec("greenhouse_bridge", "greenhouse_bridge", SIM_NAMESPACE, parameters={
                "mqtt_port": self.broker.port, "topic_prefix": TOPIC_PREFIX, "crop": crop,
                "client_id": f"tango2-sim-bridge-{self.broker.port}"}),
            NodeSpec("farm_controller", "farm_controller", SIM_NAMESPACE, parameters={
                "controller": controller, "crop": crop, "llm_action": f"{SIM_NAMESPACE}/llm/generate",
                "shadow_llm_action": f"{SIM_NAMESPACE}/llm_shadow/generate" if shadow else ""}),
            NodeSpec("safety_supervisor", "safety_supervisor", SIM_NAMESPACE, parameters={
                "crop": crop, "controller": controller, "proposal_timeout_s": 60.0 if controller == "lam" else 10.0,
                "stale_after_s": 3600.0, "shadow.decisions": shadow_decisions}),
            NodeSpec("modbus_bridge", "modbus_bridge", SIM_NAMESPACE, parameters={"port": modbus_port}),
        ]
        deployed = {slot: reference for slot, reference in (("lam", model), ("lam_shadow", shadow))
                    if reference and not Path(reference).is_file()}
        if "lam_shadow" in deployed and "lam" not in deployed and not model:
            deployed["lam"] = DEFAULT_LAM  # the manager serves both, so it can promote the candidate
        if controller == "lam":
            nodes.insert(0, _llm_node("llm_node", model, deployed.get("lam")))
        if shadow:
            nodes.insert(1, _llm_node("llm_shadow", shadow, deployed.get("lam_shadow"), nice=SHADOW_NICE, threads=1,
                                      remappings={"llm/generate": "llm_shadow/generate"}))
        if deployed:
            nodes.append(_model_manager(deployed))
        self.supervisor = Supervisor(Profile("sdf-sim", "nodes of the simulated greenhouse", tuple(nodes),
                                             Path("<tango2 sdf simulate>")), out=sys.stderr)
        try:
            if not self.supervisor.start():
                raise UserError("the farm's nodes did not come up")
            if deployed:
                _wait_deployed(self.supervisor.node, deployed)
            self._supervisor_status = DiagnosticsLatest(self.supervisor.node, f"{SIM_NAMESPACE}/safety_supervisor") \
                if shadow else None  # only a shadow's score is read from it
            self.loop = RosFarmLoop(self.supervisor.node, SIM_NAMESPACE, greenhouse, self.broker.port, TOPIC_PREFIX,
                                    controller, modbus_port=modbus_port, shadow=bool(shadow))
        except BaseException:
            self.supervisor.shutdown()
            self.broker.stop()
            raise
        self.description = ("MQTT -> greenhouse_bridge -> farm_controller -> safety_supervisor -> modbus_bridge "
                            "-> Modbus TCP")

    def shadow_score(self) -> dict | None:
        """The supervisor's last word on the shadow candidate (tango2_ros.core.shadow.ShadowScore.as_dict)."""
        if self._supervisor_status is None:
            return None
        return shadow_score(self._supervisor_status.values().get(SHADOW_KEY, ""))

    def shutdown(self) -> None:
        self.loop.close()
        self.supervisor.shutdown()
        self.broker.stop()


def _llm_node(name: str, model: str | None, deployed: str | None, nice: int = 0, threads: int = 0,
              remappings: dict | None = None):
    """An llm_node for the LAM: a GGUF file loaded at start, a registry reference deployed by the model manager."""
    parameters = {"n_parallel": 1, "n_ctx_per_seq": 1024, "nice": nice, **({"n_threads": threads} if threads else {})}
    if model and not deployed:
        parameters["model_path"] = str(Path(model).resolve())
    return NodeSpec(name, "llm_node", SIM_NAMESPACE, parameters=parameters, remappings=remappings or {})


def _model_manager(deployed: dict[str, str]):
    """A model manager with a slot per registry reference (`lam` into the llm_node, `lam_shadow` into the
    candidate's, promoted into `lam` when the supervisor's gate passes and both serve the same artifact): pinned to a
    version, or following the registry for `latest` (a release published during the run is swapped in)."""
    parameters = {"slots": list(deployed)}
    for slot, reference in deployed.items():
        name, _, spec = reference.partition("@")
        option = "--model" if slot == "lam" else "--shadow"
        if not name or not spec:
            raise UserError(f"{option} {reference}: no such file, and not an artifact reference NAME@VERSION|TAG")
        follow = spec == "latest"
        node = "llm_node" if slot == "lam" else "llm_shadow"
        parameters.update({f"{slot}.model": name, f"{slot}.node": f"{SIM_NAMESPACE}/{node}",
                           f"{slot}.policy": "latest" if follow else "pinned", f"{slot}.version": "" if follow else spec,
                           f"{slot}.poll_period_s": 2.0})
        if slot == "lam_shadow":  # promoted into `lam` once the supervisor's gate passes (the same artifact name)
            serving = deployed.get("lam", "").split("@")[0]
            parameters.update({"lam_shadow.shadow_of": "lam", "lam_shadow.promote": name == serving})
    return NodeSpec("models", "model_manager", SIM_NAMESPACE, parameters=parameters)


def _wait_deployed(node, deployed: dict[str, str], timeout_s: float = 120.0) -> None:
    """Until the model manager reports each slot's model active; a refusal is the user's error."""
    events = wait_for_deployments(node, f"{SIM_NAMESPACE}/models/status", list(deployed), timeout_s)
    for slot, event in events.items():
        option = "--model" if slot == "lam" else "--shadow"
        if event is None:
            raise UserError(f"{option} {deployed[slot]}: not deployed within {timeout_s:.0f} s")
        if event.model.state == ModelInfo.STATE_FAILED:
            raise UserError(f"{option} {deployed[slot]}: the model manager did not deploy it: {event.model.reason}")
