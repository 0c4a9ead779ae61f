"""The hospital side, as a PACS speaks it: a DICOM C-STORE receiver (pynetdicom) that takes series from
configured AE titles only, a DICOMweb client (QIDO-RS, WADO-RS, STOW-RS) and an Orthanc server for tests and
demos.

The receiver keeps each association's CT instances in memory and hands them on, grouped by series, when the
sender releases the association (storescu and PACS "send study" jobs send a series in one association). It
accepts only CT image storage, refuses callers not on the list, and refuses instances beyond its size limit
with "out of resources" so a flood cannot exhaust memory.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from io import BytesIO
from pathlib import Path
from typing import Callable

import requests

from tango2_ros.core.net import free_port, wait_for_port
from tango2_ros.core.processes import die_with_parent, stop_process
from tango2_ros.core.settings import setting
from tango2_ros.errors import UserError
from tango2_ros.sdm.volume import CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE

OUT_OF_RESOURCES = 0xA700
FAILED_SOP_SEQUENCE = "00081198"  # in a STOW-RS answer
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


class PacsError(UserError):
    """The PACS refused or failed a request."""


@dataclass(frozen=True)
class ReceiverSettings:
    dicom_port: int = setting(0, "C-STORE receiver port; 0 = no receiver.", 0, 65535)
    dicom_address: str = setting("127.0.0.1", "Address the receiver listens on.")
    ae_title: str = setting("TANGO2SDM", "The receiver's AE title.")
    allowed_aets: tuple[str, ...] = setting(("SCANNER",), "Calling AE titles the receiver accepts.")


class StoreReceiver:
    """C-STORE SCP on `port`; `on_series(datasets, calling_aet)` is called once per series received."""

    @classmethod
    def serving(cls, settings: ReceiverSettings, on_series: Callable[[list, str], None],
                max_bytes: int) -> "StoreReceiver":
        """A started receiver as `settings` say (dicom_port must not be 0)."""
        return cls(on_series, ae_title=settings.ae_title, port=settings.dicom_port, address=settings.dicom_address,
                   allowed_aets=settings.allowed_aets, max_bytes=max_bytes).start()

    def __init__(self, on_series: Callable[[list, str], None], *, ae_title: str = "TANGO2SDM", port: int = 11112,
                 allowed_aets: tuple[str, ...] = (), address: str = "127.0.0.1", max_instances: int = 2000,
                 max_bytes: int = 1 << 30) -> None:
        self.on_series, self.ae_title, self.port, self.address = on_series, ae_title, port, address
        self.allowed_aets, self.max_instances, self.max_bytes = tuple(allowed_aets), max_instances, max_bytes
        self.refused = 0  # instances refused for size
        self._pending: dict[int, tuple[list, int]] = {}  # association id -> (datasets, bytes)
        self._lock = threading.Lock()
        self._server = None

    def start(self) -> "StoreReceiver":
        from pynetdicom import AE, evt

        if not self.allowed_aets:
            raise UserError("the receiver needs at least one allowed calling AE title")
        ae = AE(ae_title=self.ae_title)
        ae.require_calling_aet = list(self.allowed_aets)
        ae.require_called_aet = True
        ae.maximum_pdu_size = 0
        for sop_class in (CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE):
            ae.add_supported_context(sop_class, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2",
                                                 "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70",
                                                 "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90",
                                                 "1.2.840.10008.1.2.5"])
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_RELEASED, self._on_released),
                    (evt.EVT_ABORTED, self._on_aborted)]
        self._server = ae.start_server((self.address, self.port), block=False, evt_handlers=handlers)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_store(self, event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        size = len(event.request.DataSet.getvalue()) if hasattr(event.request.DataSet, "getvalue") else 0
        key = id(event.assoc)
        with self._lock:
            datasets, total = self._pending.get(key, ([], 0))
            if len(datasets) >= self.max_instances or total + size > self.max_bytes:
                self.refused += 1
                return OUT_OF_RESOURCES
            datasets.append(dataset)
            self._pending[key] = (datasets, total + size)
        return 0x0000

    def _on_released(self, event) -> None:
        with self._lock:
            datasets, _ = self._pending.pop(id(event.assoc), ([], 0))
        by_series: dict[str, list] = {}
        for dataset in datasets:
            by_series.setdefault(str(getattr(dataset, "SeriesInstanceUID", "")), []).append(dataset)
        calling = event.assoc.requestor.ae_title
        for series in by_series.values():
            self.on_series(series, calling.strip() if isinstance(calling, str) else str(calling))

    def _on_aborted(self, event) -> None:
        with self._lock:  # an aborted transfer is incomplete: nothing of it is processed
            self._pending.pop(id(event.assoc), None)


class DicomWebClient:
    """QIDO-RS / WADO-RS / STOW-RS against a DICOMweb root such as http://127.0.0.1:8042/dicom-web."""

    def __init__(self, root: str, timeout_s: float = 30.0) -> None:
        self.root, self.timeout_s = root.rstrip("/"), timeout_s

    def studies(self) -> list[dict]:
        return self._json("GET", f"{self.root}/studies")

    def series(self, study_uid: str) -> list[dict]:
        return self._json("GET", f"{self.root}/studies/{study_uid}/series")

    def search(self, path: str, **query: str) -> list[dict]:
        """QIDO-RS: the DICOM JSON of the studies, series or instances under `path` that match `query`."""
        return self._json("GET", f"{self.root}/{path.strip('/')}", params=query)

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str):
        """WADO-RS: one instance as a pydicom dataset."""
        import pydicom

        response = self._request("GET", f"{self.root}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}",
                                 headers={"Accept": 'multipart/related; type="application/dicom"'})
        parts = _multipart_parts(response)
        if len(parts) != 1:
            raise PacsError(f"the PACS sent {len(parts)} parts for one instance")
        return pydicom.dcmread(BytesIO(parts[0]))

    def retrieve_series(self, study_uid: str, series_uid: str) -> list:
        """WADO-RS: every instance of a series as pydicom datasets."""
        import pydicom

        response = self._request("GET", f"{self.root}/studies/{study_uid}/series/{series_uid}",
                                 headers={"Accept": 'multipart/related; type="application/dicom"'})
        return [pydicom.dcmread(BytesIO(part)) for part in _multipart_parts(response)]

    def store(self, datasets: list) -> dict:
        """STOW-RS: store the datasets (all or nothing on the client side: one request)."""
        boundary = uuid.uuid4().hex
        body = BytesIO()
        for dataset in datasets:
            buffer = BytesIO()
            dataset.save_as(buffer, enforce_file_format=True)
            body.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            body.write(buffer.getvalue())
            body.write(b"\r\n")
        body.write(f"--{boundary}--\r\n".encode())
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                   "Accept": "application/dicom+json"}
        answer = self._json("POST", f"{self.root}/studies", data=body.getvalue(), headers=headers)
        failed = answer.get(FAILED_SOP_SEQUENCE, {}).get("Value", []) if isinstance(answer, dict) else []
        if failed:
            raise PacsError(f"the PACS refused {len(failed)} of {len(datasets)} instance(s)")
        return answer

    def _json(self, method: str, url: str, **kwargs):
        response = self._request(method, url, **kwargs)
        return response.json() if response.content else []

    def _request(self, method: str, url: str, **kwargs) -> requests.Response:
        try:
            response = requests.request(method, url, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise PacsError(f"PACS at {self.root} unreachable: {exc.__class__.__name__}") from None
        if response.status_code >= 400:
            raise PacsError(f"PACS answered {response.status_code} to {method} {url.removeprefix(self.root)}")
        return response


class SrOutbox:
    """Stores report SRs over STOW-RS; an SR the PACS cannot take waits as a file in `folder` (when given) and is
    sent after the next successful store, oldest first. Files are written to a temporary name and renamed."""

    def __init__(self, client: DicomWebClient, folder: Path | None) -> None:
        self.client, self.folder = client, folder
        self.stored = 0

    @property
    def waiting(self) -> int:
        return len(list(self.folder.glob("*.dcm"))) if self.folder is not None and self.folder.is_dir() else 0

    def store(self, sr, study_key: str) -> None:
        """Store `sr`, then what waits; PacsError (after keeping `sr` in the outbox) when the PACS refuses it."""
        try:
            self.client.store([sr])
        except PacsError:
            if self.folder is not None:
                self.folder.mkdir(parents=True, exist_ok=True)
                partial = self.folder / f"{study_key}.dcm.partial"
                sr.save_as(partial, enforce_file_format=True)
                os.replace(partial, self.folder / f"{study_key}.dcm")
            raise
        self.stored += 1
        if self.folder is None:
            return
        import pydicom

        for waiting in sorted(self.folder.glob("*.dcm"), key=lambda p: p.stat().st_mtime):
            try:
                self.client.store([pydicom.dcmread(waiting)])
            except PacsError:
                return
            waiting.unlink()
            self.stored += 1


def _multipart_parts(response: requests.Response) -> list[bytes]:
    content_type = response.headers.get("Content-Type", "")
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + response.content)
    if not message.is_multipart():
        raise PacsError(f"expected a multipart answer, got {content_type or 'no content type'}")
    return [part.get_payload(decode=True) for part in message.iter_parts()]


class OrthancServer:
    """Debian's Orthanc with the DICOMweb plugin on loopback ports, its storage in a temporary folder."""

    def __init__(self, folder: Path | None = None, ae_title: str = "ORTHANC") -> None:
        self.folder = folder or Path(tempfile.mkdtemp(prefix="tango2-orthanc-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.http_port, self.dicom_port, self.ae_title = free_port(), free_port(), ae_title
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def start(self, timeout_s: float = 30.0) -> "OrthancServer":
        binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        if not Path(binary).exists() or not Path(DICOMWEB_PLUGIN).exists():
            raise UserError("Orthanc with its DICOMweb plugin is not installed: apt-get install orthanc "
                            "orthanc-dicomweb")
        config = self.folder / "orthanc.json"
        config.write_text(json.dumps({
            "Name": "tango2-test", "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"), "HttpPort": self.http_port, "DicomPort": self.dicom_port,
            "DicomAet": self.ae_title, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True, "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}))
        self.process = subprocess.Popen([binary, f"--logfile={self.folder / 'orthanc.log'}", str(config)],
                                        preexec_fn=die_with_parent,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UserError(f"Orthanc exited at start (see {self.folder / 'orthanc.log'})")
            if wait_for_port(self.http_port, 0.2):
                try:
                    if requests.get(f"{self.dicomweb}/studies", timeout=1).status_code == 200:
                        return self
                except requests.RequestException:
                    pass
            time.sleep(0.05)
        self.stop()
        raise UserError(f"Orthanc did not answer within {timeout_s:.0f} s")

    def stop(self) -> None:
        stop_process(self.process, grace_s=10)
        self.process = None
