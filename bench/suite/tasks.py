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
    """An 8-byte digest (for validating a whole 1 MiB result once per run, not per task)."""
    return hashlib.blake2b(data, digest_size=8).digest()


def echoed(i: int) -> bytes:
    """``echo(payload(i))``, built without reversing 1 MiB byte by byte."""
    return b"\0" * (BIG % 8) + i.to_bytes(8, "little")[::-1] * (BIG // 8)


def probe(shared: bytes, x: int) -> int:
    """W5b: read the shared object at a position that depends on ``x`` and return that byte.

    Cheap on purpose (W5b measures how the object reaches the task, not hashing): the client
    checks each answer against its own copy, ``shared[x * 7919 % len(shared)]``.
    """
    return shared[x * 7919 % len(shared)]
