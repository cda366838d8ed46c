"""The worker registry: registration, heartbeats, binding to sessions and losing workers.

A worker registers on its WorkerUpdate stream and is idle; the scheduler's binds and unbinds
are carried out here (BIND / UNBIND instructions on that stream). A bound worker opens a
WorkerStream for its session and receives batches on it. When the stream ends, the worker
unbinds, or the worker is lost (its control stream ended, or no heartbeat for
``worker_timeout``), what it held fails as ``worker_lost``.

A bound worker without a stream is held to the protocol: one whose heartbeat says it serves
no or another session after a heartbeat interval missed its BIND and is sent it again (at
most once per interval); one that has opened no stream ``bind_stream_timeout`` after its bind
is lost, so the session's slot goes to another worker.
"""

from __future__ import annotations

import logging

from ulid import ULID

from alpcrun._clock import Clock
from alpcrun.constants import MAX_ID_LENGTH
from alpcrun.errors import ResourceExhausted, WorkerNotFound
from alpcrun.proto import WorkerInstruction, WorkerRegistration
from alpcrun.queue_manager.attempts import Attempts
from alpcrun.queue_manager.limits import CoreLimits
from alpcrun.queue_manager.outlets import WorkerControl, WorkerData
from alpcrun.queue_manager.quotas import check_labels
from alpcrun.queue_manager.records import SessionRecord, WorkerPhase, WorkerRecord
from alpcrun.queue_manager.scheduler import UnbindReason
from alpcrun.queue_manager.stats import CoreCounters

_INSTR = WorkerInstruction
log = logging.getLogger("alpcrun.queue_manager")


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
        """Register a worker and send it REGISTERED with its id.

        Raises:
            InvalidArgument: Its labels hold more than ``max_label_bytes``.
            ResourceExhausted: ``max_registered_workers`` are registered already.
        """
        limits = self._limits
        check_labels(dict(reg.labels), limits.max_label_bytes, "register.labels")
        if len(self.workers) >= limits.max_registered_workers:
            raise ResourceExhausted(
                f"max_registered_workers reached: {len(self.workers)} workers are registered"
            )
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

    def heartbeat(self, worker_id: str, *, draining: bool, serving: str | None = None) -> bool:
        """Record a sign of life; return whether the worker has just started draining.

        ``serving`` is the session the worker reports it serves ("" for none), or None when
        it reported no state. A bound worker without a stream that reports anything else has
        missed its BIND and is sent it again (see :meth:`_resend_bind`).
        """
        worker = self.workers.get(worker_id)
        if worker is None:
            return False
        now = self._clock.monotonic()
        worker.last_seen = now
        if serving is not None and serving != worker.session_id:
            self._resend_bind(worker, now)
        if draining and not worker.draining:
            worker.draining = True
            return True
        return False

    def _resend_bind(self, worker: WorkerRecord, now: float) -> None:
        """Send BIND again to a bound worker that has no stream and says it serves no session.

        Only once a heartbeat interval has passed since BIND was last sent: a heartbeat
        written before the worker read its BIND would contradict it too.
        """
        if worker.phase is not WorkerPhase.BOUND or worker.data is not None:
            return
        if now - worker.bind_sent_at < self._limits.heartbeat_interval_s:
            return
        record = self._sessions.get(worker.session_id or "")
        if record is None or record.closed:
            return
        log.warning(
            "worker %s (pod %s) reports it does not serve session %s it is bound to: BIND "
            "sent again",
            worker.id,
            worker.pod,
            record.id,
        )
        self._send_bind(worker, record, now)

    def timed_out(self, now: float) -> list[str]:
        """Ids of workers whose last sign of life is older than ``worker_timeout``."""
        timeout = self._limits.worker_timeout_s
        return [w.id for w in self.workers.values() if now - w.last_seen > timeout]

    def without_stream(self, now: float) -> list[str]:
        """Ids of bound workers that opened no WorkerStream within ``bind_stream_timeout``.

        Each is logged: the core loses them, so their slot goes to another worker.
        """
        timeout = self._limits.bind_stream_timeout_s
        stalled = [
            w
            for w in self.workers.values()
            if w.phase is WorkerPhase.BOUND and w.data is None and now - w.bound_at > timeout
        ]
        for w in stalled:
            log.warning(
                "worker %s (pod %s) opened no WorkerStream %gs after its bind to session %s: "
                "dropped",
                w.id,
                w.pod,
                timeout,
                w.session_id,
            )
        return [w.id for w in stalled]

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
        self._send_bind(worker, record, now)

    @staticmethod
    def _send_bind(worker: WorkerRecord, record: SessionRecord, now: float) -> None:
        worker.bind_sent_at = now
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
