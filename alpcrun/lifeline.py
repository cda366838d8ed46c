"""Child processes that must not outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PARENT_PID_ENV = "ALPCRUNCH_PARENT_PID"
"""Set by a launcher (``alpcrun local``, the benchmarks) to its pid; every ``alpcrun`` command
and worker started with it exits when that process dies."""


def exit_with_parent_from_env() -> None:
    """Ask the kernel for SIGTERM when the launcher named in ``ALPCRUNCH_PARENT_PID`` dies.

    Runs in the child itself, after exec: forking with a Python ``preexec_fn`` from a process
    that already runs gRPC is unsafe, so the launcher spawns plainly and the child arms this.
    """
    wanted = os.environ.get(PARENT_PID_ENV)
    if not wanted or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if str(os.getppid()) != wanted:  # the launcher died before we armed the signal
        os.kill(os.getpid(), signal.SIGTERM)
