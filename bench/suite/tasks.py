"""The task bodies every system runs, importable by any system's worker processes.

Standard library only. Ray, Dask and Scaler pickle these by reference, so worker processes
import this module (the orchestrator puts the repository root on ``PYTHONPATH``).
"""

from __future__ import annotations

import hashlib
import time

from bench.suite.common import BIG, BUSY_SECONDS


def noop(x: int) -> int:
    """W1, W2, W3: return the argument."""
    return x


def busy(x: int) -> int:
    """W4: spin the CPU for :data:`BUSY_SECONDS`, then return the argument."""
    end = time.perf_counter() + BUSY_SECONDS
    while time.perf_counter() < end:
        pass
    return x


def echo(data: bytes) -> bytes:
    """W5: return the 1 MiB input reversed (a real output, not the input object handed back)."""
    return data[::-1]


def payload(i: int, size: int = BIG) -> bytes:
    """Deterministic ``size`` bytes for task ``i`` (cheap: one 8-byte pattern repeated)."""
    return i.to_bytes(8, "little") * (size // 8) + b"\0" * (size % 8)


def digest(data: bytes) -> bytes:
    """What W5b's tasks return: an 8-byte digest of the shared object (proves it was read)."""
    return hashlib.blake2b(data, digest_size=8).digest()


def shared_digest(shared: bytes, x: int) -> tuple[int, bytes]:
    """W5b: read the shared 1 MiB object and return (x, its digest)."""
    return x, digest(shared)
