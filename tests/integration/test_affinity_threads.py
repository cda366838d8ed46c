"""cpu_affinity in a fresh process: every thread pinned, and threads started later too."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

PIN = """
import os, threading
from alpcrun.affinity import pin_process
started = threading.Event()
before = threading.Thread(target=started.wait, daemon=True)  # exists before pinning
before.start()
pin_process(frozenset({{{cpu}}}), setting="test")
after = []
t = threading.Thread(target=lambda: after.append(os.sched_getaffinity(0)))
t.start(); t.join()
tasks = os.listdir("/proc/self/task")
every = {{frozenset(os.sched_getaffinity(int(tid))) for tid in tasks}}
started.set(); before.join()
print(sorted(map(sorted, every)), sorted(after[0]))
"""


def test_every_thread_is_pinned_and_new_threads_inherit_it() -> None:
    """pin_process pins the threads running before it, and threads started later inherit it."""
    cpu = min(os.sched_getaffinity(0))
    done = subprocess.run(
        [sys.executable, "-c", PIN.format(cpu=cpu)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == [f"[[{cpu}]]", f"[{cpu}]"]
