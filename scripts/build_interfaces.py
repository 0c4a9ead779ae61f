"""Build and install the tango2_msgs interface package into the running virtual environment.

ROS 2 from PyPI wheels has no `/opt/ros`; the wheels install their CMake packages under the venv's prefix.
Two things stand between those wheels and a plain `cmake` build, both fixed here:
- the wheels' exported `*__rosidl_generator_pyExport.cmake` files name the Python and numpy include folders of
  the machine that built the wheels (`/opt/python/cp311-cp311/...`); they are rewritten to this interpreter's;
- CMake must be told to find packages in, and install into, the venv prefix.
Run it with the venv's interpreter: `.venv/bin/python scripts/build_interfaces.py`.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy

REPO = Path(__file__).resolve().parent.parent
FOREIGN_PYTHON_INCLUDE = re.compile(r"/opt/python/[^;\"]*?/include/python3\.\d+")
FOREIGN_NUMPY_INCLUDE = re.compile(r"/opt/python/[^;\"]*?/numpy/_core/include")


def patch_exported_include_dirs(prefix: Path) -> int:
    """Point the wheels' exported include folders at this interpreter; returns how many files changed."""
    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    changed = 0
    for path in prefix.glob("share/*/cmake/*__rosidl_generator_pyExport.cmake"):
        text = path.read_text()
        patched = FOREIGN_NUMPY_INCLUDE.sub(numpy_include, FOREIGN_PYTHON_INCLUDE.sub(python_include, text))
        if patched != text:
            path.write_text(patched)
            changed += 1
    return changed


def build(source: Path, build_dir: Path, prefix: Path) -> None:
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = [
        "cmake", "-S", str(source), "-B", str(build_dir), *generator,
        f"-DCMAKE_PREFIX_PATH={prefix}",
        f"-DCMAKE_INSTALL_PREFIX={prefix}",
        f"-DPython3_EXECUTABLE={sys.executable}",
        "-DBUILD_TESTING=OFF",
        "-DCMAKE_BUILD_TYPE=Release",
    ]
    for command in (configure, ["cmake", "--build", str(build_dir)], ["cmake", "--install", str(build_dir)]):
        subprocess.run(command, check=True, env=_env_with_prefix(prefix))


def _env_with_prefix(prefix: Path) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["AMENT_PREFIX_PATH"] = str(prefix)
    env["PATH"] = f"{prefix / 'bin'}:{env.get('PATH', '')}"
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REPO / "tango2_msgs")
    parser.add_argument("--build-dir", type=Path, default=REPO / "build" / "tango2_msgs")
    parser.add_argument("--prefix", type=Path, default=Path(sys.prefix))
    args = parser.parse_args()
    if sys.prefix == sys.base_prefix:
        print("error: run this with the virtual environment's python (.venv/bin/python)", file=sys.stderr)
        return 2
    patched = patch_exported_include_dirs(args.prefix)
    if patched:
        print(f"patched the include folders of {patched} exported CMake files")
    build(args.source, args.build_dir, args.prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
