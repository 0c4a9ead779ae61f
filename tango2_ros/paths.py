"""Where the package's shared files (launch profiles, configuration, models) live.

In a source checkout (the usual case with the PyPI ROS wheels, installed editable) they are next to the package;
after `colcon build` or a wheel install they are in `<prefix>/share/tango2_ros`.
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "tango2_ros"


@lru_cache(maxsize=1)
def share_dir() -> Path:
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "package.xml").is_file() and (checkout / "config" / "profiles").is_dir():
        return checkout
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError):
        return Path(sys.prefix) / "share" / PACKAGE


def profile_dirs() -> list[Path]:
    """Folders searched for `<profile>.yaml`: $TANGO2_PROFILE_PATH (os.pathsep-separated) first, then the package's."""
    extra = [Path(p) for p in os.environ.get("TANGO2_PROFILE_PATH", "").split(os.pathsep) if p]
    return [*extra, share_dir() / "config" / "profiles"]


def launch_dir() -> Path:
    return share_dir() / "launch"


def models_dir() -> Path:
    """Model store, pull cache and keys: $TANGO2_MODELS_DIR, else `models/` of a source checkout, else
    ~/.local/share/tango2/models."""
    configured = os.environ.get("TANGO2_MODELS_DIR")
    if configured:
        return Path(configured)
    checkout = share_dir() / "models"
    if (share_dir() / "setup.py").is_file():  # a source checkout
        return checkout
    return Path.home() / ".local" / "share" / "tango2" / "models"


def default_store() -> str:
    return os.environ.get("TANGO2_MODEL_STORE") or str(models_dir() / "store")


def cache_dir() -> Path:
    return models_dir() / "cache"


def signing_key_path() -> Path:
    return models_dir() / "keys" / "local.key"


def trusted_keys_dir() -> Path:
    return models_dir() / "keys" / "trusted"


def releases_dir() -> Path:
    """Trained releases kept with the source (`models/releases/<name>/<version>/`), published at set-up."""
    return share_dir() / "models" / "releases"
