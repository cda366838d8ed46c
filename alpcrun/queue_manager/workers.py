"""The worker registry: registration, heartbeats, binding to sessions and losing workers.

A worker registers on its WorkerUpdate stream and is idle; the scheduler's binds and unbinds
are carried out here (BIND / UNBIND instructions on that stream). A bound worker opens a
WorkerStream for its session and receives batches on it. When the stream ends, the worker
unbinds, or the worker is lost (its control stream ended, or no heartbeat for
``worker_timeout``), what it held fails as ``worker_lost``.
"""

from __future__ import annotations

from ulid import ULID

from alpcrun._clock import Clock
from alpcrun.constants import MAX_ID_LENGTH
from alpcrun.errors import WorkerNotFound
from alpcrun.proto import WorkerInstruction, WorkerRegistration
from alpcrun.queue_manager.attempts import Attempts
from alpcrun.queue_manager.limits import CoreLimits
from alpcrun.queue_manager.outlets import WorkerControl, WorkerData
from alpcrun.queue_manager.records import SessionRecord, WorkerPhase, WorkerRecord
from alpcrun.queue_manager.scheduler import UnbindReason
from alpcrun.queue_manager.stats import CoreCounters

_INSTR = WorkerInstruction


class WorkerRegistry:
    """Registered workers by id, and the binding of each to at most one session.

    Args:
        limits: Heartbeat interval and worker timeout.
        clock: Registration and heartbeat times.
        sessions: The sessions by id (shared with the session table).
        attempts: Fails the attempts of a worker that goes away.
        counters: Where binds, unbinds and lost workers are counted.
    """

    __slots__ = ("_attempts", "_clock", "_counters", "_limits", "_sessions", "workers")

    def __init__(
        self,
        *,
        limits: CoreLimits,
        clock: Clock,
        sessions: dict[str, SessionRecord],
        attempts: Attempts,
        counters: CoreCounters,
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._sessions = sessions
        self._attempts = attempts
        self._counters = counters
        self.workers: dict[str, WorkerRecord] = {}
        """Registered workers by id."""

    def register(self, reg: WorkerRegistration, control: WorkerControl) -> WorkerRecord:
        """Register a worker and send it REGISTERED with its id."""
        wid = str(ULID())
        worker = WorkerRecord(
            id=wid,
            node=reg.node[:MAX_ID_LENGTH],
            pod=reg.pod[:MAX_ID_LENGTH],
            labels=dict(reg.labels),
            concurrency=max(1, reg.concurrency),
            control=control,
            connected_at=self._clock.time(),
            last_seen=self._clock.monotonic(),
        )
        self.workers[wid] = worker
        control.send(
            _INSTR(
                type=_INSTR.TYPE_REGISTERED,
                worker_id=wid,
                heartbeat_interval_ms=round(self._limits.heartbeat_interval_s * 1000),
            )
        )
        return worker

    def get(self, worker_id: str) -> WorkerRecord:
        """The registered worker with this id, or WorkerNotFound."""
        try:
            return self.workers[worker_id]
        except KeyError:
            raise WorkerNotFound(
                f"worker {worker_id[:MAX_ID_LENGTH]!r} is not registered"
            ) from None

    def heartbeat(self, worker_id: str, *, draining: bool) -> bool:
        """Record a sign of life; return whether the worker has just started draining."""
        worker = self.workers.get(worker_id)
        if worker is None:
            return False
        worker.last_seen = self._clock.monotonic()
        if draining and not worker.draining:
            worker.draining = True
            return True
        return False

    def timed_out(self, now: float) -> list[str]:
        """Ids of workers whose last sign of life is older than ``worker_timeout``."""
        timeout = self._limits.worker_timeout_s
        return [w.id for w in self.workers.values() if now - w.last_seen > timeout]

    def lose(self, worker_id: str) -> bool:
        """Forget a worker whose control stream ended or timed out; requeue its batches.

        Returns whether it was registered.
        """
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return False
        self._counters.workers_lost += 1
        if worker.data is not None:
            data, worker.data = worker.data, None
            data.close()
        self.release(worker)
        worker.control.close()
        return True

    def open_stream(self, worker_id: str, session_id: str, data: WorkerData) -> WorkerRecord:
        """A bound worker opened its WorkerStream for the session it is bound to."""
        worker = self.get(worker_id)
        if worker.session_id != session_id or worker.phase is not WorkerPhase.BOUND:
            raise WorkerNotFound(f"worker {worker_id} is not bound to session {session_id}")
        if worker.data is not None:
            worker.data.close()
        worker.data = data
        worker.last_seen = self._clock.monotonic()
        return worker

    def stream_closed(self, worker_id: str, data: WorkerData) -> bool:
        """A WorkerStream ended: requeue what it held; return whether the worker is idle again."""
        worker = self.workers.get(worker_id)
        if worker is None or worker.data is not data:
            return False
        worker.data = None
        self.release(worker)
        return True

    def bind(self, worker: WorkerRecord, record: SessionRecord, now: float) -> None:
        """Bind an idle worker to a session and send it BIND (no-op if either moved on)."""
        if worker.phase is not WorkerPhase.IDLE or record.closed or worker.draining:
            return
        worker.phase = WorkerPhase.BOUND
        worker.session_id = record.id
        worker.window = record.config.max_inflight_batches_per_worker
        worker.bound_at = now
        record.workers[worker.id] = worker
        self._counters.binds += 1
        worker.control.send(
            _INSTR(
                type=_INSTR.TYPE_BIND,
                session_id=record.id,
                max_inflight_batches=worker.window,
                task_timeout_ms=min(round(record.config.task_timeout_s * 1000), 2**32 - 1),
            )
        )

    def unbind(self, worker: WorkerRecord, record: SessionRecord, reason: UnbindReason) -> None:
        """Tell a bound worker to unbind; it finishes what it holds, then ends its stream."""
        if worker.phase is not WorkerPhase.BOUND or worker.session_id != record.id:
            return
        worker.phase = WorkerPhase.UNBINDING
        counters = self._counters
        counters.unbinds += 1
        by_reason = counters.unbinds_by_reason
        by_reason[reason.value] = by_reason.get(reason.value, 0) + 1
        if reason is UnbindReason.PREEMPTED:
            record.preempted += 1
        worker.control.send(_INSTR(type=_INSTR.TYPE_UNBIND, session_id=record.id))
        if not worker.inflight:
            if worker.data is not None:
                worker.data.close()
            else:
                self.release(worker)

    def release(self, worker: WorkerRecord) -> None:
        """Detach a worker from its session; what it held failed with ``worker_lost``.

        Its in-flight batches go back to the head of the queue (or to the dead-letter queue
        if out of attempts).
        """
        record = self._sessions.get(worker.session_id or "")
        if record is not None:
            record.workers.pop(worker.id, None)
            self._attempts.fail_all(worker, record)
        worker.inflight.clear()
        worker.abandoned.clear()
        worker.phase = WorkerPhase.IDLE
        worker.session_id = None


__all__ = ["WorkerRegistry"]
