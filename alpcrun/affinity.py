"""Pinning a server process to chosen CPUs (the servers' ``cpu_affinity`` setting).

An alpcrun server is one Python event loop plus gRPC core's threads, and every call hands work
from one of those threads to another several times. When the threads may run on any CPU, each
hand-off can wake a thread on another CPU, which on virtual machines costs an interrupt
between CPUs. Kept on one CPU (ideally one no busy worker shares), the hand-offs stay there:
a node-cache hit of 1 KiB gets 0.1-0.2 ms faster at p50 on the 2-core machine the benchmarks
run on (``bench/shared_data.py`` measures both placements). The process runs one CPU's worth
of Python at a time anyway.

The list uses Linux's cpuset syntax: ``"3"``, ``"0-3"``, ``"0,2,5-7"``. In Kubernetes the same
effect comes from an exclusive CPU (the static CPU manager and a Guaranteed pod with an
integer CPU request), with no setting at all.
"""

from __future__ import annotations

import contextlib
import logging
import os

from alpcrun.errors import ConfigError

logger = logging.getLogger(__name__)

MAX_CPU = 65535
"""Highest CPU number accepted in a list."""


def parse_cpu_list(text: str) -> frozenset[int]:
    """The CPUs of a cpuset list such as ``"0-3,6"``.

    Raises:
        ValueError: Not a list of CPU numbers and ranges, or empty.
    """
    cpus: set[int] = set()
    for part in text.replace(" ", "").split(","):
        low, sep, high = part.partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise ValueError(
                f"{text!r} is not a CPU list (numbers and ranges, e.g. '3' or '0-3,6')"
            )
        first, last = int(low), int(high) if sep else int(low)
        if first > last or last > MAX_CPU:
            raise ValueError(f"{part!r} is not a CPU range from low to high, up to {MAX_CPU}")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def pin_process(cpus: frozenset[int], *, setting: str) -> None:
    """Keep every thread of this process (and those it starts later) on ``cpus``.

    Args:
        cpus: CPUs to run on, a subset of those this process may use.
        setting: The setting's name and env variable, for error messages.

    Raises:
        alpcrun.errors.ConfigError: Not Linux, or a CPU this process may not use.
    """
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError(f"{setting}: CPU affinity is supported on Linux only")
    allowed = os.sched_getaffinity(0)
    outside = sorted(cpus - allowed)
    if outside:
        raise ConfigError(
            f"{setting}: CPU(s) {', '.join(map(str, outside))} are not available to this "
            f"process (it may use {format_cpus(frozenset(allowed))})"
        )
    set_every_thread(cpus)


def set_every_thread(cpus: frozenset[int]) -> None:
    """Set the affinity of every thread of this process to ``cpus``, unchecked (Linux).

    Affinity is per thread and inherited by the threads a thread starts, so all of them are
    set.
    """
    for tid in _threads():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpus)


def apply_setting(value: str | None, *, env_prefix: str) -> None:
    """Pin this process as a server's ``cpu_affinity`` setting says (None: leave it be).

    Call it before the server starts its threads' work; the threads started later inherit it.

    Raises:
        alpcrun.errors.ConfigError: See :func:`pin_process`.
    """
    if value is None:
        return
    cpus = parse_cpu_list(value)
    pin_process(cpus, setting=f"cpu_affinity ({env_prefix}CPU_AFFINITY)")
    logger.info("running on CPU(s) %s", format_cpus(cpus))


def format_cpus(cpus: frozenset[int]) -> str:
    """``cpus`` in cpuset syntax (``"0-3,6"``)."""
    ranges: list[str] = []
    for cpu in sorted(cpus):
        if ranges and cpu == int(ranges[-1].rpartition("-")[2]) + 1:
            ranges[-1] = f"{ranges[-1].partition('-')[0]}-{cpu}"
        else:
            ranges.append(str(cpu))
    return ",".join(ranges)


def _threads() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: this thread only
        return [0]
