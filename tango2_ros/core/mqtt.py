"""A mosquitto MQTT broker process: the farm's sensor broker, and each fleet device's broker bridged to the
fleet broker (tango2_ros.core.fleet)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tango2_ros.core.net import free_port, wait_for_port
from tango2_ros.core.processes import die_with_parent, stop_process
from tango2_ros.errors import UserError


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)
    if found is None:
        raise UserError("mosquitto (the MQTT broker) is not installed: apt-get install mosquitto")
    return found


@dataclass(frozen=True)
class Bridge:
    """A mosquitto bridge from this broker to a remote one: `out` topics go there, `in` topics come here, both with
    QoS 1 on a persistent session, so what is published while the link is down waits in this broker's queue (and
    the remote one keeps what this side subscribed to) until the link is back."""

    name: str
    remote: str  # host:port
    out: tuple[str, ...] = ()
    into: tuple[str, ...] = ()

    def config(self) -> str:
        lines = [f"connection {self.name}", f"address {self.remote}", f"remote_clientid {self.name}",
                 "cleansession false", "restart_timeout 1 5"]
        lines += [f"topic {pattern} out 1" for pattern in self.out]
        lines += [f"topic {pattern} in 1" for pattern in self.into]
        return "\n".join(lines) + "\n"


QUEUED_MESSAGES = 100000  # per client, the bridge included: a day of telemetry at one message every few seconds


class MqttBroker:
    """mosquitto (loopback by default) with persistence: QoS 1 sessions survive a restart of the broker.
    Anonymous access: put it on a trusted network or add mosquitto's password file for a real farm."""

    def __init__(self, port: int | None = None, folder: Path | None = None, address: str = "127.0.0.1",
                 bridges: tuple[Bridge, ...] = ()) -> None:
        self.port, self.address = port or free_port(), address
        self.folder = folder or Path(tempfile.mkdtemp(prefix="tango2-mosquitto-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config = self.folder / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} {address}\nallow_anonymous true\npersistence true\n"
                               f"persistence_location {self.folder}/\nautosave_interval 1\nuser root\n"
                               f"max_queued_messages {QUEUED_MESSAGES}\n"
                               + "".join(bridge.config() for bridge in bridges))
        self.process: subprocess.Popen | None = None

    def start(self) -> "MqttBroker":
        self.process = subprocess.Popen([mosquitto_binary(), "-c", str(self.config)], preexec_fn=die_with_parent,
                                        stdout=subprocess.DEVNULL,
                                        stderr=(self.folder / "mosquitto.log").open("ab"))
        if not wait_for_port(self.port, 5.0):
            self.stop()
            raise UserError(f"mosquitto did not start on port {self.port} (see {self.folder}/mosquitto.log)")
        return self

    def stop(self) -> None:
        stop_process(self.process, grace_s=5.0)
        self.process = None


