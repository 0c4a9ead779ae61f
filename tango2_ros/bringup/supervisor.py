"""`tango2 launch`: run a profile's nodes as processes on a machine without `ros2 launch`.

Each node runs as its own process (`python -m tango2_ros.nodes.<executable> --ros-args ...`). Lifecycle nodes
are configured in profile order, then activated in profile order (as Nav2's lifecycle manager does). A node
that exits unexpectedly is restarted after its back-off and brought back to active; SIGINT/SIGTERM stop every
node (SIGINT, then SIGTERM, then SIGKILL) in reverse order.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import rclpy
import yaml
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from tango2_ros.bringup.profiles import NodeSpec, Profile
from tango2_ros.core.processes import die_with_parent
from tango2_ros.ros.graph import Graph, snapshot, wait_for_nodes

STOP_GRACE_S = 10.0
SERVICE_WAIT_S = 30.0
TRANSITION_WAIT_S = 120.0  # configure may load a model


@dataclass
class ManagedProcess:
    """One node of the profile and the process currently running it."""

    spec: NodeSpec
    process: subprocess.Popen | None = None
    state: str = "not started"
    restarts: int = 0
    next_start_at: float = 0.0
    exit_codes: list[int] = field(default_factory=list)


class Supervisor:
    """Starts, drives, watches and stops the processes of one profile."""

    def __init__(self, profile: Profile, *, out: TextIO = sys.stdout, ros_args: list[str] | None = None) -> None:
        self.profile = profile
        self.out = out
        self.processes = [ManagedProcess(spec) for spec in profile.nodes]
        self._stop = threading.Event()
        self._print_lock = threading.Lock()
        self._params_dir = Path(tempfile.mkdtemp(prefix=f"tango2-{profile.name}-"))
        rclpy.init(args=ros_args, signal_handler_options=SignalHandlerOptions.NO)
        self.node: Node = rclpy.create_node("tango2_launcher", start_parameter_services=False)

    # -- public ----------------------------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> bool:
        """Start every process and bring lifecycle nodes to active; False if one did not get there."""
        for managed in self.processes:
            self._spawn(managed)
        ok = True
        for transition, label in ((Transition.TRANSITION_CONFIGURE, "inactive"), (Transition.TRANSITION_ACTIVATE, "active")):
            for managed in self.processes:
                if self.stopping:
                    return False
                if managed.spec.lifecycle and managed.state != "failed":
                    ok &= self._change_state(managed, transition, label)
                elif not managed.spec.lifecycle:
                    managed.state = "running"
        self.print_status()
        return ok

    def reconfigure(self, name: str) -> bool:
        """Take one active lifecycle node through deactivate, cleanup, configure and activate: it forgets the state
        its configure() built (a fresh start without a new process)."""
        managed = next((m for m in self.processes if m.spec.name == name), None)
        if managed is None or not managed.spec.lifecycle:
            raise ValueError(f"{name} is not a lifecycle node of profile {self.profile.name}")
        return all(self._change_state(managed, transition, label) for transition, label in (
            (Transition.TRANSITION_DEACTIVATE, "inactive"), (Transition.TRANSITION_CLEANUP, "unconfigured"),
            (Transition.TRANSITION_CONFIGURE, "inactive"), (Transition.TRANSITION_ACTIVATE, "active")))

    def watch(self, duration_s: float | None = None) -> None:
        """Restart crashed nodes until a stop is requested or duration_s has passed."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not self.stopping and (deadline is None or time.monotonic() < deadline):
            for managed in self.processes:
                self._check(managed)
            self._stop.wait(0.2)

    def graph(self, discovery_timeout_s: float = 5.0) -> Graph:
        """The live graph, once discovery has seen every running node of the profile."""
        running = [m.spec.fully_qualified_name for m in self.processes if m.state in ("active", "inactive", "running")]
        wait_for_nodes(self.node, running, discovery_timeout_s)
        return snapshot(self.node)

    def shutdown(self) -> None:
        """Stop every node, newest first: SIGINT, then SIGTERM, then SIGKILL after the grace period."""
        self._stop.set()
        for managed in reversed(self.processes):
            process = managed.process
            if process is None or process.poll() is not None:
                continue
            for sig, grace in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    self.say(f"{managed.spec.name}: did not stop after {signal.Signals(sig).name}")
            managed.state = "stopped"
            self.say(f"{managed.spec.name}: stopped (exit code {process.returncode})")
        self.node.destroy_node()
        rclpy.try_shutdown()
        shutil.rmtree(self._params_dir, ignore_errors=True)

    def status(self) -> list[dict]:
        return [
            {"node": m.spec.fully_qualified_name, "state": m.state, "pid": m.process.pid if m.process else None,
             "restarts": m.restarts, "exit_codes": list(m.exit_codes)}
            for m in self.processes
        ]

    def print_status(self) -> None:
        rows = self.status()
        width = max(len(r["node"]) for r in rows)
        lines = [f"{'node':<{width}}  {'state':<12} {'pid':>7}  restarts"]
        lines += [f"{r['node']:<{width}}  {r['state']:<12} {r['pid'] or '-':>7}  {r['restarts']}" for r in rows]
        self.say("\n".join(lines), prefix=False)

    def say(self, text: str, *, prefix: bool = True) -> None:
        with self._print_lock:
            print(f"[tango2 launch] {text}" if prefix else text, file=self.out, flush=True)

    # -- internals -------------------------------------------------------------------------------------------
    def _spawn(self, managed: ManagedProcess) -> None:
        spec = managed.spec
        params_file = None
        if spec.parameters:
            params_file = self._params_dir / f"{spec.name}.yaml"
            params_file.write_text(yaml.safe_dump(spec.params_file_content()))
        command = [sys.executable, "-m", spec.module, *spec.ros_arguments(params_file)]
        env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
        managed.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            preexec_fn=die_with_parent,
        )
        managed.state = "starting"
        self.say(f"{spec.name}: started (pid {managed.process.pid})")
        threading.Thread(target=self._relay_output, args=(managed.spec.name, managed.process), daemon=True).start()

    def _relay_output(self, name: str, process: subprocess.Popen) -> None:
        for line in process.stdout:  # ends when the process closes its output
            with self._print_lock:
                print(f"[{name}] {line.rstrip()}", file=self.out, flush=True)

    def _change_state(self, managed: ManagedProcess, transition_id: int, label: str) -> bool:
        fqn = managed.spec.fully_qualified_name
        if not self._wait_until_responsive(managed):
            if managed.process is not None and managed.process.poll() is not None:
                return False  # it died; watch() restarts it
            managed.state = "failed"
            self.say(f"{managed.spec.name}: lifecycle services of {fqn} did not answer{self._name_taken(fqn)}")
            return False
        client = self.node.create_client(ChangeState, f"{fqn}/change_state")
        try:
            if not client.wait_for_service(timeout_sec=SERVICE_WAIT_S):
                managed.state = "failed"
                self.say(f"{managed.spec.name}: {fqn}/change_state did not appear")
                return False
            future = client.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
            rclpy.spin_until_future_complete(self.node, future, timeout_sec=TRANSITION_WAIT_S)
            if future.result() is None or not future.result().success:
                managed.state = "failed"
                self.say(f"{managed.spec.name}: transition to {label} failed (see the node's log above)"
                         f"{self._name_taken(fqn)}")
                return False
            managed.state = label
            self.say(f"{managed.spec.name}: {label}")
            return True
        finally:
            self.node.destroy_client(client)

    def _name_taken(self, fqn: str) -> str:
        """A note when more than one node in the graph has this name: the other is not ours (an orphan of an
        earlier run that was killed, or another launch in the same ROS domain), and lifecycle calls go astray."""
        namesakes = sum(1 for name, namespace in self.node.get_node_names_and_namespaces()
                        if f"{namespace.rstrip('/')}/{name}" == fqn)
        if namesakes < 2:
            return ""
        return (f"; {namesakes} nodes are named {fqn}: another process (an orphan of an earlier run, or another "
                "launch in this ROS domain) has the name; stop it and start again")

    def _wait_until_responsive(self, managed: ManagedProcess) -> bool:
        """Wait until the node answers get_state.

        After a restart, discovery may still list the dead process's services under the same name; a request
        sent then is lost. An answer can only come from the live process.
        """
        client = self.node.create_client(GetState, f"{managed.spec.fully_qualified_name}/get_state")
        deadline = time.monotonic() + SERVICE_WAIT_S
        try:
            while time.monotonic() < deadline and not self.stopping:
                if managed.process is not None and managed.process.poll() is not None:
                    return False
                if not client.wait_for_service(timeout_sec=0.2):
                    continue
                future = client.call_async(GetState.Request())
                rclpy.spin_until_future_complete(self.node, future, timeout_sec=1.0)
                if future.done() and future.result() is not None:
                    return True
                client.remove_pending_request(future)
            return False
        finally:
            self.node.destroy_client(client)

    def _check(self, managed: ManagedProcess) -> None:
        process = managed.process
        now = time.monotonic()
        if process is not None and process.poll() is not None and managed.state not in ("crashed", "gave up", "stopped"):
            managed.exit_codes.append(process.returncode)
            if managed.restarts >= managed.spec.restart.max_restarts:
                managed.state = "gave up"
                self.say(f"{managed.spec.name}: exited with code {process.returncode}; "
                         f"gave up after {managed.restarts} restarts")
                return
            managed.state = "crashed"
            managed.next_start_at = now + managed.spec.restart.delay_s(managed.restarts + 1)
            self.say(f"{managed.spec.name}: exited with code {process.returncode}; "
                     f"restarting in {managed.next_start_at - now:.1f} s")
        if managed.state == "crashed" and now >= managed.next_start_at:
            managed.restarts += 1
            self._spawn(managed)
            if managed.spec.lifecycle:
                if self._change_state(managed, Transition.TRANSITION_CONFIGURE, "inactive"):
                    self._change_state(managed, Transition.TRANSITION_ACTIVATE, "active")
            else:
                managed.state = "running"
