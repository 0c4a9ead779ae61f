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
