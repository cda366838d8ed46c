"""Runner state and counters: ``RunnerState``, ``WorkerStatistics`` and the mutable ``Counters``."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from alpcrun.proto import WorkerState


class Counters:
    """Mutable counters of one runner, shared by its session pumps (loop thread only)."""

    __slots__ = ("batches_done", "tasks_done", "tasks_failed")

    def __init__(self) -> None:
        self.batches_done = 0
        self.tasks_done = 0
        self.tasks_failed = 0


class RunnerState(enum.StrEnum):
    """Where a :class:`WorkerRunner` is in its life."""

    CONNECTING = "connecting"
    IDLE = "idle"
    BOUND = "bound"
    DRAINING = "draining"
    STOPPED = "stopped"


WIRE_STATE: dict[RunnerState, WorkerState.ValueType] = {
    RunnerState.CONNECTING: WorkerState.WORKER_STATE_IDLE,
    RunnerState.IDLE: WorkerState.WORKER_STATE_IDLE,
    RunnerState.BOUND: WorkerState.WORKER_STATE_BOUND,
    RunnerState.DRAINING: WorkerState.WORKER_STATE_DRAINING,
    RunnerState.STOPPED: WorkerState.WORKER_STATE_DRAINING,
}


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """A snapshot of a runner's counters."""

    batches_done: int
    """Task batches processed (results built) since start."""
    tasks_done: int
    """Tasks processed, failed ones included."""
    tasks_failed: int
    """Tasks whose handler raised or returned a non-bytes result."""
    state: RunnerState
    """The runner's current state."""
    worker_id: str
    """The id of the current registration ("" while not registered)."""
    session_id: str
    """The bound session ("" when none)."""
    inflight_batches: int
    """Batches received and not yet answered."""


__all__ = ["WIRE_STATE", "Counters", "RunnerState", "WorkerStatistics"]
