"""An OCI distribution registry process (the CNCF `docker-registry`, Debian's package) on loopback: what
`tango2 fleet simulate` rolls releases out from, and what the registry tests push to and pull from."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from tango2_ros.core.net import free_port
from tango2_ros.core.processes import die_with_parent, stop_process
from tango2_ros.errors import UserError

START_TIMEOUT_S = 15.0


class OciRegistry:
    """`docker-registry serve` with its blobs under `folder`; `host` is host:port once started."""

    def __init__(self, folder: Path | None = None, port: int | None = None) -> None:
        self.folder = folder or Path(tempfile.mkdtemp(prefix="tango2-registry-"))
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "OciRegistry":
        binary = shutil.which("docker-registry")
        if binary is None:
            raise UserError("docker-registry (the OCI registry) is not installed: apt-get install docker-registry")
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "registry.yml"
        config.write_text("version: 0.1\nlog: {level: error}\n"
                          f"storage: {{filesystem: {{rootdirectory: {self.folder / 'data'}}}, delete: {{enabled: true}}}}\n"
                          f"http: {{addr: {self.host}}}\n")
        self.process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=(self.folder / "registry.log").open("ab"), preexec_fn=die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (self.folder / "registry.log").read_text(errors="replace")[-500:]
                raise UserError(f"docker-registry did not start on {self.host}: {log}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        try:
            return requests.get(f"http://{self.host}/v2/", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        stop_process(self.process, grace_s=10.0)
        self.process = None
