"""What every benchmark driver shares: its configuration, the workloads, timing and output.

Standard library only: this module is imported by drivers running in each peer's own
virtual environment (the orchestrator puts the repository root on ``PYTHONPATH``).

The driver contract
-------------------
A driver is a script ``bench/suite/drivers/drive_<system>.py`` run by its system's interpreter
as ``python bench/suite/drivers/drive_<system>.py --config '<json>'`` from the repository root.
It starts its system on loopback with ``cores`` process-based workers, runs the workloads it is
asked for, validates every result, stops everything it started and exits 0. It writes one JSON
object per line on stdout (:func:`emit`) and its logs on stderr:

- ``{"kind": "meta", "system": ..., "versions": {...}, "notes": {...}}`` once, first;
- ``{"kind": "result", "workload": "W1", "variant": "batch", "rep": 0, ...}`` per repetition
  (:class:`Measurement` fields), written by :func:`repeat`;
- ``{"kind": "skip", "workload": ..., "variant": ..., "why": ...}`` for what it cannot do;
- ``{"kind": "error", "workload": ..., "variant": ..., "why": ...}`` when a workload failed
  (the driver goes on with the next one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W5b")
"""W1 no-op throughput, W2 closed-loop round trip, W3 round trip under a window of 64 in flight,
W4 1 ms CPU tasks, W5 1 MiB in and out per task, W5b one shared 1 MiB object read by every task."""

WINDOW = 64
"""Tasks in flight in W3."""
BUSY_SECONDS = 0.001
"""CPU time of one W4 task."""
BIG = 1 << 20
"""Payload size of W5 (in and out) and of the W5b shared object."""
SMALL = 1 << 10
"""Inline payload of W5b's tasks (the comparison point: W1-like tasks carrying 1 KiB)."""


@dataclass(frozen=True)
class Config:
    """What the orchestrator asks of one driver run."""

    workloads: tuple[str, ...] = WORKLOADS
    cores: int = 2
    """Worker processes (one task at a time each)."""
    reps: int = 5
    """Timed repetitions per workload and variant (a warm-up run before them is discarded)."""
    warmup: int = 500
    """Tasks in the warm-up run of the throughput workloads."""
    rep_seconds: float = 3.0
    """Target length of one repetition: N is sized from the warm-up rate (see :func:`size`)."""
    sizes: dict[str, int] = field(
        default_factory=lambda: {"W1": 10_000, "W2": 1_000, "W4": 4_000, "W5": 1_000, "W5b": 10_000}
    )
    """Most tasks per repetition (DESIGN §13 figures; fewer when the system is slow)."""
    min_sizes: dict[str, int] = field(
        default_factory=lambda: {"W1": 1_000, "W2": 200, "W4": 500, "W5": 100, "W5b": 1_000}
    )
    """Fewest tasks per repetition, however slow the system."""
    w3_seconds: float = 5.0
    """Length of one W3 repetition."""
    quick: bool = False

    @classmethod
    def from_json(cls, text: str) -> Config:
        """Read the ``--config`` argument."""
        data = json.loads(text)
        if "workloads" in data:
            data["workloads"] = tuple(data["workloads"])
        return cls(**data)

    def to_json(self) -> str:
        """The ``--config`` argument for a driver."""
        return json.dumps(asdict(self))


def parse_config(argv: list[str] | None = None) -> Config:
    """Parse a driver's command line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="{}", help="JSON of bench.suite.common.Config")
    return Config.from_json(parser.parse_args(argv).config)


def emit(record: dict[str, Any]) -> None:
    """Write one record for the orchestrator (a JSON line on stdout)."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    """A line on stderr (kept in the run's log)."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


@dataclass
class Measurement:
    """One timed repetition of one workload."""

    tasks: int
    """Tasks run (and validated)."""
    seconds: float
    """From the first submit to the last result in hand."""
    failures: int = 0
    """Tasks that failed, were lost or returned a wrong result."""
    latencies: list[float] | None = None
    """Per-task round trips in seconds (W2, W3, optional elsewhere)."""
    submit_seconds: float | None = None
    """Time to hand every task to the system (W1), when the API makes it observable."""
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self, workload: str, variant: str, rep: int) -> dict[str, Any]:
        """The JSON record of this repetition."""
        out: dict[str, Any] = {
            "kind": "result",
            "workload": workload,
            "variant": variant,
            "rep": rep,
            "tasks": self.tasks,
            "seconds": self.seconds,
            "tasks_per_s": self.tasks / self.seconds if self.seconds > 0 else 0.0,
            "failures": self.failures,
        }
        if self.latencies:
            out["latency_ms"] = latency_summary(self.latencies)
        if self.submit_seconds:
            out["submit_per_s"] = self.tasks / self.submit_seconds
        if self.workload_bytes(workload):
            out["mb_per_s"] = self.tasks * self.workload_bytes(workload) / self.seconds / 1e6
        out.update(self.extra)
        return out

    @staticmethod
    def workload_bytes(workload: str) -> int:
        """Payload bytes moved per task (in + out) for MB/s figures."""
        return 2 * BIG if workload == "W5" else 0


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return math.nan
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]


def latency_summary(seconds: Iterable[float]) -> dict[str, float]:
    """p50, p99, p99.9 and mean of round trips, in milliseconds."""
    values = sorted(s * 1e3 for s in seconds)
    return {
        "p50": percentile(values, 0.50),
        "p99": percentile(values, 0.99),
        "p999": percentile(values, 0.999),
        "mean": sum(values) / len(values),
        "n": len(values),
    }


def size(config: Config, workload: str, rate: float) -> int:
    """Tasks for one repetition: about ``rep_seconds`` at ``rate`` tasks/s, within the bounds."""
    most = config.sizes[workload]
    fewest = min(config.min_sizes[workload], most)
    if rate <= 0 or not math.isfinite(rate):
        return fewest
    return max(fewest, min(most, int(rate * config.rep_seconds)))


def repeat(
    config: Config,
    workload: str,
    variant: str,
    run: Callable[[int], Measurement],
    *,
    warmup: int | None = None,
) -> None:
    """Warm up with ``run(warmup)`` (discarded), size N from its rate, then emit ``reps`` runs.

    ``run(n)`` runs ``n`` tasks and returns what it measured. An exception is reported as an
    ``error`` record and the workload's remaining repetitions are skipped.
    """
    try:
        warm = run(warmup if warmup is not None else min(config.warmup, config.sizes[workload]))
        n = size(config, workload, warm.tasks / warm.seconds if warm.seconds > 0 else 0.0)
        log(f"{workload}/{variant}: warm-up {warm.tasks} tasks in {warm.seconds:.2f}s; N={n}")
        for rep in range(config.reps):
            emit(run(n).record(workload, variant, rep))
    except Exception as exc:  # reported, and the driver goes on
        log(f"{workload}/{variant} failed: {exc!r}")
        emit({"kind": "error", "workload": workload, "variant": variant, "why": repr(exc)})


def repeat_window(
    config: Config, variant: str, run: Callable[[float], Measurement], *, warmup: float = 1.0
) -> None:
    """W3: ``run(seconds)`` keeps :data:`WINDOW` tasks in flight for ``seconds``; warm-up first."""
    try:
        run(warmup)
        for rep in range(config.reps):
            emit(run(config.w3_seconds).record("W3", variant, rep))
    except Exception as exc:
        log(f"W3/{variant} failed: {exc!r}")
        emit({"kind": "error", "workload": "W3", "variant": variant, "why": repr(exc)})


def skip(workload: str, variant: str, why: str) -> None:
    """Say that this system cannot run a workload (shown in the table)."""
    emit({"kind": "skip", "workload": workload, "variant": variant, "why": why})


def meta(system: str, versions: dict[str, str], **notes: Any) -> None:
    """The first record: versions of what is measured and how it was run."""
    emit(
        {
            "kind": "meta",
            "system": system,
            "versions": {"python": sys.version.split()[0], **versions},
            "notes": notes,
            "pid": os.getpid(),
        }
    )


def wants(config: Config, workload: str) -> bool:
    """Whether the orchestrator asked for ``workload``."""
    return workload in config.workloads


def with_efficiency(config: Config, m: Measurement) -> Measurement:
    """W4: achieved rate over the ideal ``cores / BUSY_SECONDS``, as ``efficiency``."""
    ideal = config.cores / BUSY_SECONDS
    m.extra["efficiency"] = (m.tasks / m.seconds) / ideal if m.seconds > 0 else 0.0
    return m
