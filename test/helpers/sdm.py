"""What the SDM tests share: the CLI runner, findings lists, copies of a series."""
import shutil
import subprocess
import sys
from pathlib import Path

from tango2_ros.sdm.findings import Finding
from tango2_ros.sdm.labels import LABEL_NAMES, label_of
from tango2_ros.sdm.training import TRAINED_LABELS

TANGO2 = [sys.executable, "-m", "tango2_ros.cli"]


def tango2(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*TANGO2, *args], capture_output=True, text=True, timeout=timeout)


def findings_with(*present: str) -> list[Finding]:
    names = {label_of(slug).name for slug in present}
    return [Finding(n, (0.9 if n in names else 0.1) if n in TRAINED_LABELS else None, 0.5, n in names)
            for n in LABEL_NAMES]


def copy_series(series: Path, target: Path) -> Path:
    shutil.copytree(series, target)
    return target


def draft_in_pacs(dicomweb: str, series: Path, fhir_dir: Path | None = None, salt: str = "tango2",
                  findings: tuple[str, ...] = ("lung-nodule",)) -> str:
    """Store a phantom CT series and its AI draft report in the PACS as ct_report does; the study UID."""
    import pydicom

    from tango2_ros.sdm.outputs import Destinations, ReportDelivery
    from tango2_ros.sdm.pacs import DicomWebClient
    from tango2_ros.sdm.pipeline import StudyReport
    from tango2_ros.sdm.report import template_draft
    from tango2_ros.sdm.volume import load_study

    DicomWebClient(dicomweb).store([pydicom.dcmread(f) for f in sorted(series.iterdir())])
    volume, found = load_study(series), findings_with(*findings)
    report = StudyReport(volume.study_key(salt), found, template_draft(found), "ct-findings@1.0.0", volume=volume)
    delivery = ReportDelivery(Destinations(pacs_dicomweb=dicomweb, fhir_dir=str(fhir_dir) if fhir_dir else ""))
    assert delivery.deliver(report) == ""
    return volume.study_uid
