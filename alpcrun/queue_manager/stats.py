"""Frozen statistics of the queue manager core, read by metrics and the admin API."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from alpcrun.queue_manager.limits import charged
from alpcrun.queue_manager.records import SessionRecord, WorkerPhase, WorkerRecord


@dataclass(slots=True)
class CoreCounters:
    """Running totals of the core, kept by its collaborators (sessions outlive none of them)."""

    dispatched_batches: int = 0
    """Batches sent to workers (every attempt counts)."""
    binds: int = 0
    """Workers bound to sessions."""
    unbinds: int = 0
    """Workers told to unbind."""
    unbinds_by_reason: dict[str, int] = field(default_factory=dict)
    """Unbinds by :class:`~alpcrun.queue_manager.scheduler.UnbindReason` value."""
    sessions_expired: int = 0
    """Sessions closed because nobody used them for ``session_expiry``."""
    workers_lost: int = 0
    """Workers whose stream ended or whose heartbeat stopped."""
    submitted: int = 0
    """Tasks accepted."""
    completed: int = 0
    """Tasks that succeeded."""
    failed: int = 0
    """Tasks dead-lettered (less those resubmitted)."""
    retried_tasks: int = 0
    """Task attempts that failed and were tried again."""
    timed_out_attempts: int = 0
    """Attempts failed by ``task_timeout``."""
    duplicate_results: int = 0
    """Late results of attempts already given up on, dropped."""
    duplicate_batches: int = 0
    """Client batches received again under a known id, ignored."""
    task_bytes: int = 0
    """Charged bytes of the tasks held now: queued, in flight or waiting for a retry (a gauge:
    added when a batch is accepted, taken off when its last task has its final result)."""
    result_bytes: int = 0
    """Charged bytes of the result batches held now, undelivered or unacknowledged (a gauge)."""
    letter_bytes: int = 0
    """Charged bytes of the dead letters held now (a gauge)."""


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    """One session's counters."""

    session_id: str
    app_id: str
    priority: int
    state: int
    tags: tuple[str, ...]
    pending_tasks: int
    pending_batches: int
    inflight_batches: int
    inflight_tasks: int
    buffered_results: int
    dead_letters: int
    submitted: int
    completed: int
    failed: int
    bound_workers: int
    wanted_workers: int
    unbinding_workers: int
    client_attached: bool
    preemptions: int
    retried: int
    duplicate_results: int
    duplicate_batches: int
    delayed_tasks: int
    pending_bytes: int
    result_bytes: int
    dead_letter_bytes: int


@dataclass(frozen=True, slots=True)
class CoreStatistics:
    """Totals and per-session counters."""

    sessions: tuple[SessionStatistics, ...]
    workers: int
    idle_workers: int
    bound_workers: int
    draining_workers: int
    dispatched_batches: int
    binds: int
    unbinds: int
    unbinds_by_reason: tuple[tuple[str, int], ...]
    sessions_expired: int
    workers_lost: int
    submitted: int
    completed: int
    failed: int
    retried_tasks: int
    timed_out_attempts: int
    duplicate_results: int
    duplicate_batches: int
    dead_letters: int
    task_bytes: int
    result_bytes: int
    dead_letter_bytes: int


def session_statistics(s: SessionRecord) -> SessionStatistics:
    """Snapshot one session's counters."""
    return SessionStatistics(
        session_id=s.id,
        app_id=s.config.app_id,
        priority=s.config.priority,
        state=s.state,
        tags=s.config.tags,
        pending_tasks=s.queue.tasks,
        pending_batches=len(s.queue),
        inflight_batches=s.inflight_batches,
        inflight_tasks=s.inflight_tasks,
        buffered_results=len(s.results),
        dead_letters=len(s.dead_letters),
        submitted=s.submitted,
        completed=s.completed,
        failed=s.failed,
        bound_workers=s.active_workers(),
        wanted_workers=s.wanted_workers(),
        unbinding_workers=len(s.workers) - s.active_workers(),
        client_attached=s.client is not None,
        preemptions=s.preempted,
        retried=s.retried,
        duplicate_results=s.duplicate_results,
        duplicate_batches=s.duplicate_batches,
        delayed_tasks=s.delayed_tasks,
        pending_bytes=charged(s.queue.bytes, s.queue.tasks, s.queue.batches),
        result_bytes=s.results.bytes,
        dead_letter_bytes=s.dead_letters.bytes,
    )


def collect(
    sessions_: Iterable[SessionRecord], workers_: Iterable[WorkerRecord], core: CoreCounters
) -> CoreStatistics:
    """Snapshot the sessions, the workers and the running totals."""
    sessions = tuple(session_statistics(s) for s in sessions_)
    workers = list(workers_)
    return CoreStatistics(
        sessions=sessions,
        workers=len(workers),
        idle_workers=sum(1 for w in workers if w.phase is WorkerPhase.IDLE and not w.draining),
        bound_workers=sum(1 for w in workers if w.phase is not WorkerPhase.IDLE),
        draining_workers=sum(1 for w in workers if w.draining),
        dispatched_batches=core.dispatched_batches,
        binds=core.binds,
        unbinds=core.unbinds,
        unbinds_by_reason=tuple(sorted(core.unbinds_by_reason.items())),
        sessions_expired=core.sessions_expired,
        workers_lost=core.workers_lost,
        submitted=core.submitted,
        completed=core.completed,
        failed=core.failed,
        retried_tasks=core.retried_tasks,
        timed_out_attempts=core.timed_out_attempts,
        duplicate_results=core.duplicate_results,
        duplicate_batches=core.duplicate_batches,
        dead_letters=sum(s.dead_letters for s in sessions),
        task_bytes=core.task_bytes,
        result_bytes=core.result_bytes,
        dead_letter_bytes=core.letter_bytes,
    )
