"""Core records and statistics → protobuf messages for replies and the admin API."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from alpcrun.proto import (
    DeadLetter,
    Session,
    SessionInfo,
    SessionStats,
    Task,
    WorkerInfo,
    WorkerState,
)
from alpcrun.queue_manager.deadletters import DeadLetterEntry
from alpcrun.queue_manager.explain import Waiting
from alpcrun.queue_manager.records import SessionRecord, WorkerPhase, WorkerRecord
from alpcrun.queue_manager.stats import session_statistics


def _timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(round(seconds * 1e9))
    return ts


def session_to_proto(record: SessionRecord) -> Session:
    """A session's public view."""
    return Session(
        id=record.id,
        attributes=record.config.to_proto(),
        state=record.state,  # type: ignore[arg-type]
        created_at=_timestamp(record.created_at),
    )


def session_info(record: SessionRecord, waiting: Waiting | None = None) -> SessionInfo:
    """A session with its live counters (and why it waits for workers), for the admin API."""
    st = session_statistics(record)
    return SessionInfo(
        session=session_to_proto(record),
        stats=SessionStats(
            pending_tasks=st.pending_tasks,
            pending_batches=st.pending_batches,
            inflight_batches=st.inflight_batches,
            inflight_tasks=st.inflight_tasks,
            buffered_results=st.buffered_results,
            dead_letters=st.dead_letters,
            retried_tasks=st.retried,
            duplicate_results=st.duplicate_results,
            duplicate_batches=st.duplicate_batches,
            delayed_tasks=st.delayed_tasks,
            submitted_tasks=st.submitted,
            completed_tasks=st.completed,
            failed_tasks=st.failed,
            bound_workers=st.bound_workers,
            wanted_workers=st.wanted_workers,
            client_attached=st.client_attached,
            waiting_code=waiting.code if waiting else "",
            waiting_reason=waiting.message if waiting else "",
            preemptions=st.preemptions,
            unbinding_workers=st.unbinding_workers,
            pending_bytes=st.pending_bytes,
            result_bytes=st.result_bytes,
            dead_letter_bytes=st.dead_letter_bytes,
        ),
        bound_worker_ids=sorted(record.workers),
    )


def worker_info(worker: WorkerRecord, now_monotonic: float, now_wall: float) -> WorkerInfo:
    """A worker's public view."""
    if worker.draining:
        state = WorkerState.WORKER_STATE_DRAINING
    elif worker.phase is WorkerPhase.IDLE:
        state = WorkerState.WORKER_STATE_IDLE
    else:
        state = WorkerState.WORKER_STATE_BOUND
    return WorkerInfo(
        id=worker.id,
        node=worker.node,
        pod=worker.pod,
        labels=worker.labels,
        state=state,
        session_id=worker.session_id or "",
        inflight_batches=len(worker.inflight),
        connected_at=_timestamp(worker.connected_at),
        last_seen=_timestamp(now_wall - (now_monotonic - worker.last_seen)),
        completed_batches=worker.completed_batches,
    )


def dead_letter(session_id: str, entry: DeadLetterEntry, *, payload: bool) -> DeadLetter:
    """A dead letter as the admin API returns it (the input payload only when asked)."""
    task = entry.task
    if not payload and (task.payload or task.refs):
        task = Task(id=task.id, error=task.error, attempt=task.attempt)
    return DeadLetter(
        session_id=session_id, batch_id=entry.batch_id, task=task, dead_at=_timestamp(entry.dead_at)
    )
