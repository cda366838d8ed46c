"""A reader process on the same node maps a payload handed over a Unix socket: no copy made."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from ulid import ULID

from alpcrun.payload.tiers.disk import DiskBackend
from alpcrun.payload.tiers.ram import RamBackend

pytestmark = pytest.mark.integration

SIZE = 64 << 20

READER = r"""
import json, socket, sys
import numpy as np
from alpcrun.payload.views import MappedPayload

def anon_kib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

sock = socket.socket(fileno=int(sys.argv[1]))
size = int(sys.argv[2])
before = anon_kib()
_, (fd,), _, _ = socket.recv_fds(sock, 16, 1)
with MappedPayload(fd, size) as payload:
    arr = payload.array(np.float64)
    total = float(arr.sum())
    writable = arr.flags.writeable
    after = anon_kib()
    del arr
print(json.dumps({"sum": total, "anon_growth_kib": after - before, "writable": writable}))
"""


@pytest.fixture(params=["ram", "disk"])
def backend(request, tmp_path):
    b = RamBackend(SIZE) if request.param == "ram" else DiskBackend(tmp_path / "d", SIZE)
    yield b
    b.close()


def test_a_reader_process_maps_the_payload_without_copying_it(backend):
    """64 MiB summed by another process: right answer, read-only, its private memory flat."""
    pid = str(ULID())
    data = np.arange(SIZE // 8, dtype=np.float64)
    backend.create(pid, SIZE)
    backend.write(pid, 0, data.tobytes())
    backend.commit(pid)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        child = subprocess.Popen(
            [sys.executable, "-c", READER, str(theirs.fileno()), str(SIZE)],
            pass_fds=[theirs.fileno()],
            stdout=subprocess.PIPE,
        )
        fd = backend.readonly_fd(pid)
        socket.send_fds(ours, [b"p"], [fd])
        out, _ = child.communicate(timeout=60)
    os.close(fd)
    assert child.returncode == 0
    report = json.loads(out)
    assert report["sum"] == float(data.sum())
    assert report["writable"] is False
    # the 64 MiB were read through the shared mapping: the reader's anonymous (private)
    # memory grew by far less than one copy of the payload
    assert report["anon_growth_kib"] < 8 * 1024, report
