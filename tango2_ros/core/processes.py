"""Child processes that die with whatever started them, and stop when asked.

A command killed with SIGKILL (a timeout, the OOM killer) cannot stop its children; without this its nodes, broker
and servers would live on as orphans, holding the names and ports the next run needs. Linux only
(prctl PR_SET_PDEATHSIG); elsewhere a no-op.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` for subprocess.Popen: SIGTERM the child when the parent dies (and now, if it already has)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def stop_process(process: subprocess.Popen | None, grace_s: float) -> None:
    """SIGTERM a server process that still runs, SIGKILL it when it has not ended after `grace_s`, and reap it."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
