"""The queue manager's sans-I/O core: sessions, dispatch, results, dead letters, binding.

Every method is synchronous and non-blocking; connections are reached only through the
outlets of :mod:`alpcrun.queue_manager.outlets`. The gRPC shell calls in on events and on
the scheduler tick; tests drive it with a fake clock and recording outlets.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ulid import ULID

from alpcrun._clock import Clock, MonotonicClock
from alpcrun.constants import MAX_ID_LENGTH
from alpcrun.errors import InvalidArgument, SessionClosed, SessionNotFound, WorkerNotFound
from alpcrun.proto import (
    Batch,
    SessionAttributes,
    SessionState,
    WorkerInstruction,
    WorkerRegistration,
)
from alpcrun.queue_manager.attributes import SessionConfig, apply, resolve_new
from alpcrun.queue_manager.outlets import ClientOutlet, WorkerControl, WorkerData
from alpcrun.queue_manager.queues import QueuedBatch, TaskQueue
from alpcrun.queue_manager.records import SessionRecord, WorkerPhase, WorkerRecord
from alpcrun.queue_manager.scheduler import Action, Bind, Scheduler, Unbind, UnbindReason
from alpcrun.queue_manager.stats import CoreStatistics, collect

_INSTR = WorkerInstruction


@dataclass(frozen=True, slots=True)
class CoreLimits:
    """Bounds and timings the core enforces (from QueueManagerSettings)."""

    buffer_size: int = 10_000
    """Queued batches per session before its client stream is paused."""
    max_pending_bytes: int = 1 << 30
    """Queued bytes per session before its client stream is paused."""
    max_buffered_results: int = 10_000
    """Undelivered result batches per session before dispatch for it pauses."""
    worker_timeout_s: float = 60.0
    """Heartbeat age after which a worker is lost."""
    heartbeat_interval_s: float = 5.0
    """Heartbeat interval asked of workers."""
    session_retention_s: float = 300.0
    """How long closed sessions stay visible."""
    session_expiry_s: float = 3600.0
    """A session without client, work or activity for this long is closed; 0 means never."""
    default_fifo: bool = False
    """Queue type of sessions that do not choose one."""


class QueueCore:
    """Sessions, workers and the batch data path, without I/O."""

    def __init__(
        self,
        *,
        limits: CoreLimits | None = None,
        clock: Clock | None = None,
        scheduler: Scheduler | None = None,
        on_schedule_needed: Callable[[], None] = lambda: None,
    ) -> None:
        self.limits = limits or CoreLimits()
        self.clock = clock or MonotonicClock()
        self.scheduler = scheduler or Scheduler()
        self._on_schedule_needed = on_schedule_needed
        self.sessions: dict[str, SessionRecord] = {}
        self.workers: dict[str, WorkerRecord] = {}
        self._dispatch_ids = itertools.count(1)
        self._session_seq = itertools.count(1)
        self.dispatched_batches = 0
        self.binds = 0
        self.unbinds = 0
        self.unbinds_by_reason: dict[str, int] = {}
        self.sessions_expired = 0
        self.workers_lost = 0
        self.total_submitted = 0
        self.total_completed = 0
        self.total_failed = 0

    # ------------------------------------------------------------------ sessions
    def create_session(self, attrs: SessionAttributes) -> SessionRecord:
        """Validate attributes and create a session with a new ULID."""
        config = resolve_new(attrs, default_fifo=self.limits.default_fifo)
        sid = str(ULID())
        record = SessionRecord(
            id=sid,
            config=config,
            created_at=self.clock.time(),
            last_activity=self.clock.monotonic(),
            queue=TaskQueue(fifo=config.fifo),
            seq=next(self._session_seq),
        )
        self.sessions[sid] = record
        return record

    def session(self, session_id: str) -> SessionRecord:
        """The session with this id, or SessionNotFound."""
        try:
            return self.sessions[session_id]
        except KeyError:
            raise SessionNotFound(f"session {session_id[:MAX_ID_LENGTH]!r} not found") from None

    def open_session(self, session_id: str) -> SessionRecord:
        """The session with this id; SessionClosed if it is closed."""
        record = self.session(session_id)
        if record.closed:
            raise SessionClosed(f"session {session_id} is closed")
        return record

    def update_session(self, session_id: str, attrs: SessionAttributes) -> SessionRecord:
        """Apply changed attributes live."""
        record = self.open_session(session_id)
        config: SessionConfig = apply(record.config, attrs)
        record.config = config
        record.queue.set_fifo(config.fifo)
        for w in record.workers.values():
            w.window = config.max_inflight_batches_per_worker
        self._touch(record)
        self._dispatch(record)
        self._on_schedule_needed()
        return record

    def close_session(self, session_id: str, reason: str = "closed") -> tuple[SessionRecord, int]:
        """Close a session: discard queued tasks, unbind workers, end its client stream."""
        record = self.session(session_id)
        if record.closed:
            return record, 0
        record.state = SessionState.SESSION_STATE_CLOSED
        record.close_reason = reason
        record.closed_at = self.clock.monotonic()
        discarded = sum(item.ntasks for item in record.queue.drain())
        record.discarded += discarded + record.inflight_tasks
        for w in list(record.workers.values()):
            if w.phase is WorkerPhase.BOUND:
                self._unbind(w, record, UnbindReason.CLOSED)
        if record.client is not None:
            record.client.close()
        self._on_schedule_needed()
        return record, discarded + record.inflight_tasks

    def attach_client(self, session_id: str, outlet: ClientOutlet) -> SessionRecord:
        """Attach a client stream; a previously attached one is superseded.

        Result batches written to earlier streams and not acknowledged are queued again.
        """
        record = self.open_session(session_id)
        old, record.client = record.client, outlet
        if old is not None:
            old.close(superseded=True)
        self._touch(record)
        record.results.rewind()
        if record.results.undelivered:
            outlet.results_ready()
        return record

    def detach_client(self, session_id: str, outlet: ClientOutlet) -> None:
        """The client stream ended; close the session if it asked for cleanup on exit."""
        record = self.sessions.get(session_id)
        if record is None or record.client is not outlet:
            return
        record.client = None
        self._touch(record)
        if record.config.cleanup_on_client_exit and not record.closed:
            self.close_session(session_id, "client_exit")

    def submit(self, record: SessionRecord, batch: Batch) -> None:
        """Queue a client batch (validated; the tasks are not unpacked)."""
        if record.closed:
            raise SessionClosed(f"session {record.id} is closed")
        if not batch.id or len(batch.id) > MAX_ID_LENGTH:
            raise InvalidArgument(f"required, 1..{MAX_ID_LENGTH} chars", field="batch.id")
        if batch.session_id and batch.session_id != record.id:
            raise InvalidArgument("does not match the stream's sessionid", field="batch.session_id")
        ntasks = len(batch.tasks)
        if ntasks == 0:
            raise InvalidArgument("a batch needs at least one task", field="batch.tasks")
        batch.session_id = record.id
        record.queue.push(QueuedBatch(batch, ntasks, batch.ByteSize(), batch.priority))
        record.submitted += ntasks
        self.total_submitted += ntasks
        self._touch(record)
        self._dispatch(record)
        if record.active_workers() < record.wanted_workers():
            self._on_schedule_needed()

    def has_room(self, record: SessionRecord) -> bool:
        """Whether the session's queue accepts more batches without exceeding its bounds."""
        q = record.queue
        return len(q) < self.limits.buffer_size and q.bytes < self.limits.max_pending_bytes

    def results_written(self, record: SessionRecord, seq: int, *, keep: bool) -> None:
        """The result batch ``seq`` was written to the client; ``keep`` it until acked."""
        full = len(record.results) >= self.limits.max_buffered_results
        if record.results.written(seq, keep=keep) and full and not keep:
            self._dispatch(record)

    def ack_results(self, record: SessionRecord, seq: int) -> None:
        """The client confirmed every result batch up to ``seq``."""
        if seq > record.results.seq:
            raise InvalidArgument(
                f"acknowledges {seq}, but only {record.results.seq} were sent", field="ack.seq"
            )
        full = len(record.results) >= self.limits.max_buffered_results
        if record.results.ack(seq) and full:
            self._dispatch(record)

    # ------------------------------------------------------------------ workers
    def register_worker(self, reg: WorkerRegistration, control: WorkerControl) -> WorkerRecord:
        """Register a worker and send it REGISTERED with its id."""
        wid = str(ULID())
        worker = WorkerRecord(
            id=wid,
            node=reg.node[:MAX_ID_LENGTH],
            pod=reg.pod[:MAX_ID_LENGTH],
            labels=dict(reg.labels),
            concurrency=max(1, reg.concurrency),
            control=control,
            connected_at=self.clock.time(),
            last_seen=self.clock.monotonic(),
        )
        self.workers[wid] = worker
        control.send(
            _INSTR(
                type=_INSTR.TYPE_REGISTERED,
                worker_id=wid,
                heartbeat_interval_ms=round(self.limits.heartbeat_interval_s * 1000),
            )
        )
        self._on_schedule_needed()
        return worker

    def worker(self, worker_id: str) -> WorkerRecord:
        """The registered worker with this id, or WorkerNotFound."""
        try:
            return self.workers[worker_id]
        except KeyError:
            raise WorkerNotFound(
                f"worker {worker_id[:MAX_ID_LENGTH]!r} is not registered"
            ) from None

    def heartbeat(self, worker_id: str, *, draining: bool = False) -> None:
        """Record a sign of life; a draining worker gets no new batches."""
        worker = self.workers.get(worker_id)
        if worker is None:
            return
        worker.last_seen = self.clock.monotonic()
        if draining and not worker.draining:
            worker.draining = True
            self._on_schedule_needed()

    def worker_lost(self, worker_id: str) -> None:
        """Forget a worker whose control stream ended or timed out; requeue its batches."""
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return
        self.workers_lost += 1
        if worker.data is not None:
            data, worker.data = worker.data, None
            data.close()
        self._release(worker)
        worker.control.close()
        self._on_schedule_needed()

    def open_worker_stream(self, worker_id: str, session_id: str, data: WorkerData) -> WorkerRecord:
        """A bound worker opened its WorkerStream for the session it is bound to."""
        worker = self.worker(worker_id)
        if worker.session_id != session_id or worker.phase is not WorkerPhase.BOUND:
            raise WorkerNotFound(f"worker {worker_id} is not bound to session {session_id}")
        if worker.data is not None:
            worker.data.close()
        worker.data = data
        worker.last_seen = self.clock.monotonic()
        self._dispatch(self.sessions[session_id])
        return worker

    def worker_stream_closed(self, worker_id: str, data: WorkerData) -> None:
        """A WorkerStream ended: requeue what it held; the worker is idle again."""
        worker = self.workers.get(worker_id)
        if worker is None or worker.data is not data:
            return
        worker.data = None
        self._release(worker)
        self._on_schedule_needed()

    def worker_results(self, worker: WorkerRecord, batch: Batch) -> None:
        """Accept one result batch: deliver results, dead-letter failed tasks, dispatch more."""
        item = worker.inflight.pop(batch.dispatch_id, None)
        if item is None:
            raise WorkerNotFound(f"dispatch_id {batch.dispatch_id} is not in flight on this worker")
        if len(batch.tasks) != item.ntasks:
            worker.inflight[batch.dispatch_id] = item
            raise InvalidArgument(
                f"expected {item.ntasks} results, got {len(batch.tasks)}", field="batch.tasks"
            )
        worker.last_seen = self.clock.monotonic()
        worker.completed_batches += 1
        record = self.sessions.get(worker.session_id or "")
        if record is not None:
            record.inflight_batches -= 1
            record.inflight_tasks -= item.ntasks
            if not record.closed:
                self._deliver(record, item, batch)
        if worker.phase is WorkerPhase.UNBINDING:
            if not worker.inflight and worker.data is not None:
                worker.data.close()
        elif record is not None and not record.closed:
            self._dispatch(record)
            if not record.has_work:
                self._on_schedule_needed()

    def _deliver(self, record: SessionRecord, item: QueuedBatch, batch: Batch) -> None:
        failed = [t for t in batch.tasks if t.HasField("error")]
        if failed:
            record.dead_letters.append(Batch(id=item.batch.id, session_id=record.id, tasks=failed))
            record.dead_letter_tasks += len(failed)
            record.failed += len(failed)
            self.total_failed += len(failed)
        record.completed += item.ntasks - len(failed)
        self.total_completed += item.ntasks - len(failed)
        batch.id = item.batch.id
        batch.session_id = record.id
        batch.dispatch_id = 0
        record.results.push(batch)
        record.last_activity = self.clock.monotonic()
        if record.client is not None:
            record.client.results_ready()

    # ------------------------------------------------------------------ scheduling
    def schedule(self) -> None:
        """Run the binding policy once and carry out its decisions."""
        now = self.clock.monotonic()
        self.apply_plan(self.scheduler.plan(self.sessions.values(), self.workers.values(), now))

    def apply_plan(self, actions: Iterable[Action]) -> None:
        """Carry out binds and unbinds (stale ones, for gone workers or sessions, are skipped)."""
        now = self.clock.monotonic()
        for action in actions:
            worker = self.workers.get(action.worker_id)
            record = self.sessions.get(action.session_id)
            if worker is None or record is None:
                continue
            if isinstance(action, Bind):
                self._bind(worker, record, now)
            elif isinstance(action, Unbind):
                self._unbind(worker, record, action.reason)

    def tick(self) -> None:
        """Periodic duties: lost workers, idle sessions, retention, then scheduling."""
        now = self.clock.monotonic()
        timeout = self.limits.worker_timeout_s
        for wid in [w.id for w in self.workers.values() if now - w.last_seen > timeout]:
            self.worker_lost(wid)
        expiry = self.limits.session_expiry_s
        for sid, record in list(self.sessions.items()):
            if record.closed:
                if now - record.closed_at >= self.limits.session_retention_s:
                    del self.sessions[sid]
                continue
            if record.has_work:
                continue
            idle_for = now - record.last_activity
            if expiry and record.client is None and idle_for >= expiry:
                self.sessions_expired += 1
                self.close_session(sid, "expired")
            elif idle_for >= record.config.idle_timeout_s:
                record.state = SessionState.SESSION_STATE_IDLE
        self.schedule()

    def statistics(self) -> CoreStatistics:
        """Counts for metrics and the admin API."""
        return collect(self)

    # ------------------------------------------------------------------ internals
    def _touch(self, record: SessionRecord) -> None:
        record.last_activity = self.clock.monotonic()
        if record.state == SessionState.SESSION_STATE_IDLE:
            record.state = SessionState.SESSION_STATE_ACTIVE

    def _bind(self, worker: WorkerRecord, record: SessionRecord, now: float) -> None:
        if worker.phase is not WorkerPhase.IDLE or record.closed or worker.draining:
            return
        worker.phase = WorkerPhase.BOUND
        worker.session_id = record.id
        worker.window = record.config.max_inflight_batches_per_worker
        worker.bound_at = now
        record.workers[worker.id] = worker
        self.binds += 1
        worker.control.send(
            _INSTR(type=_INSTR.TYPE_BIND, session_id=record.id, max_inflight_batches=worker.window)
        )

    def _unbind(self, worker: WorkerRecord, record: SessionRecord, reason: UnbindReason) -> None:
        if worker.phase is not WorkerPhase.BOUND or worker.session_id != record.id:
            return
        worker.phase = WorkerPhase.UNBINDING
        self.unbinds += 1
        self.unbinds_by_reason[reason.value] = self.unbinds_by_reason.get(reason.value, 0) + 1
        if reason is UnbindReason.PREEMPTED:
            record.preempted += 1
        worker.control.send(_INSTR(type=_INSTR.TYPE_UNBIND, session_id=record.id))
        if not worker.inflight:
            if worker.data is not None:
                worker.data.close()
            else:
                self._release(worker)

    def _release(self, worker: WorkerRecord) -> None:
        """Detach a worker from its session, requeueing its in-flight batches at the head."""
        record = self.sessions.get(worker.session_id or "")
        if record is not None:
            record.workers.pop(worker.id, None)
            for item in reversed(list(worker.inflight.values())):
                record.inflight_batches -= 1
                record.inflight_tasks -= item.ntasks
                if not record.closed:
                    item.batch.dispatch_id = 0
                    record.queue.push_front(item)
            if worker.inflight and not record.closed:
                self._dispatch(record)
        worker.inflight.clear()
        worker.phase = WorkerPhase.IDLE
        worker.session_id = None

    def _dispatch(self, record: SessionRecord) -> None:
        """Send queued batches to the session's bound workers within their windows."""
        queue = record.queue
        if not queue or len(record.results) >= self.limits.max_buffered_results:
            return
        serving = [
            w for w in record.workers.values() if w.phase is WorkerPhase.BOUND and not w.draining
        ]
        if not serving:
            return
        # Fair share: no worker holds more than its part of the outstanding batches, so
        # workers whose streams open a moment later still get work from a small job.
        share = -(-(len(queue) + record.inflight_batches) // len(serving))
        ready = [
            w for w in serving if w.data is not None and len(w.inflight) < min(w.window, share)
        ]
        had_room = self.has_room(record)
        while queue and ready:
            worker = min(ready, key=lambda w: len(w.inflight))
            item = queue.pop()
            assert item is not None
            assert worker.data is not None
            dispatch_id = next(self._dispatch_ids)
            item.batch.dispatch_id = dispatch_id
            worker.inflight[dispatch_id] = item
            record.inflight_batches += 1
            record.inflight_tasks += item.ntasks
            self.dispatched_batches += 1
            worker.data.send(item.batch)
            if len(worker.inflight) >= min(worker.window, share):
                ready.remove(worker)
        if not had_room and self.has_room(record) and record.client is not None:
            record.client.room_available()
