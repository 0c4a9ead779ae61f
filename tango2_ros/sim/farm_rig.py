"""The farm's nodes for a simulated run (`tango2 sdf simulate` through ROS, and the tests), with a mosquitto
broker and the plant's Modbus server, in their own namespace; the plant drives them through `farm_loop`."""
from __future__ import annotations

import sys
from pathlib import Path

from tango2_msgs.msg import ModelInfo
from tango2_ros.bringup.profiles import NodeSpec, Profile
from tango2_ros.bringup.supervisor import Supervisor
from tango2_ros.core.net import free_port
from tango2_ros.errors import UserError
from tango2_ros.ros.deployments import wait_for_deployments
from tango2_ros.sdf.field import MqttBroker
from tango2_ros.sim import SIM_NAMESPACE
from tango2_ros.sim.farm_loop import RosFarmLoop

TOPIC_PREFIX = "tango2/greenhouse/sim"


class FarmRig:
    """The farm's nodes for a simulated run, with a mosquitto broker, in their own namespace. A LAM model given as a
    registry reference is deployed by a model manager, as on the farm (a GGUF file goes to the llm_node directly)."""

    def __init__(self, controller: str, crop: str, greenhouse, model: str | None = None) -> None:
        self.broker = MqttBroker().start()
        modbus_port = free_port()
        nodes = [
            NodeSpec("greenhouse_bridge", "greenhouse_bridge", SIM_NAMESPACE, parameters={
                "mqtt_port": self.broker.port, "topic_prefix": TOPIC_PREFIX, "crop": crop,
                "client_id": f"tango2-sim-bridge-{self.broker.port}"}),
            NodeSpec("farm_controller", "farm_controller", SIM_NAMESPACE, parameters={
                "controller": controller, "crop": crop, "llm_action": f"{SIM_NAMESPACE}/llm/generate"}),
            NodeSpec("safety_supervisor", "safety_supervisor", SIM_NAMESPACE, parameters={
                "crop": crop, "controller": controller, "proposal_timeout_s": 60.0 if controller == "lam" else 10.0,
                "stale_after_s": 3600.0}),
            NodeSpec("modbus_bridge", "modbus_bridge", SIM_NAMESPACE, parameters={"port": modbus_port}),
        ]
        deployed = model if model and not Path(model).is_file() else None
        if controller == "lam":
            llm = {"n_parallel": 1, "n_ctx_per_seq": 1024}
            if model and not deployed:
                llm["model_path"] = str(Path(model).resolve())
            nodes.insert(0, NodeSpec("llm_node", "llm_node", SIM_NAMESPACE, parameters=llm))
        if deployed:
            nodes.append(_model_manager(deployed))
        self.supervisor = Supervisor(Profile("sdf-sim", "nodes of the simulated greenhouse", tuple(nodes),
                                             Path("<tango2 sdf simulate>")), out=sys.stderr)
        try:
            if not self.supervisor.start():
                raise UserError("the farm's nodes did not come up")
            if deployed:
                _wait_deployed(self.supervisor.node, deployed)
            self.loop = RosFarmLoop(self.supervisor.node, SIM_NAMESPACE, greenhouse, self.broker.port, TOPIC_PREFIX,
                                    controller, modbus_port=modbus_port)
        except BaseException:
            self.supervisor.shutdown()
            self.broker.stop()
            raise
        self.description = ("MQTT -> greenhouse_bridge -> farm_controller -> safety_supervisor -> modbus_bridge "
                            "-> Modbus TCP")

    def shutdown(self) -> None:
        self.loop.close()
        self.supervisor.shutdown()
        self.broker.stop()


def _model_manager(reference: str):
    """A model manager with one slot, `lam`, serving `reference` into the simulation's llm_node: pinned to a
    version, or following the registry for `latest` (a release published during the run is swapped in)."""
    name, _, spec = reference.partition("@")
    if not name or not spec:
        raise UserError(f"--model {reference}: no such file, and not an artifact reference NAME@VERSION|TAG")
    follow = spec == "latest"
    return NodeSpec("models", "model_manager", SIM_NAMESPACE, parameters={
        "slots": ["lam"], "lam.model": name, "lam.node": f"{SIM_NAMESPACE}/llm_node",
        "lam.policy": "latest" if follow else "pinned", "lam.version": "" if follow else spec,
        "lam.poll_period_s": 2.0})


def _wait_deployed(node, reference: str, timeout_s: float = 120.0) -> None:
    """Until the model manager reports the LAM's model active in the llm_node; its refusal is the user's error."""
    event = wait_for_deployments(node, f"{SIM_NAMESPACE}/models/status", ["lam"], timeout_s)["lam"]
    if event is None:
        raise UserError(f"--model {reference}: not deployed within {timeout_s:.0f} s")
    if event.model.state == ModelInfo.STATE_FAILED:
        raise UserError(f"--model {reference}: the model manager did not deploy it: {event.model.reason}")
