"""The queue manager's sans-I/O core: sessions, workers, binding and the tick.

Every method is synchronous and non-blocking; connections are reached only through the
outlets of :mod:`alpcrun.queue_manager.outlets`, durability only through a
:class:`~alpcrun.queue_manager.journal.Journal`. The gRPC shell calls in on events and on
the scheduler tick; tests drive it with a fake clock and recording outlets. The task data
path (dispatch, attempts, results, dead letters) is :mod:`alpcrun.queue_manager.delivery`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

from ulid import ULID

from alpcrun._clock import Clock, MonotonicClock
from alpcrun.constants import MAX_ID_LENGTH
from alpcrun.errors import SessionClosed, SessionNotFound, WorkerNotFound
from alpcrun.proto import (
    SessionAttributes,
    SessionState,
    WorkerInstruction,
    WorkerRegistration,
)
from alpcrun.queue_manager.attributes import SessionConfig, apply, resolve_new
from alpcrun.queue_manager.deadletters import resubmit_batches
from alpcrun.queue_manager.delivery import LOST_ERROR, Delivery
from alpcrun.queue_manager.journal import Journal, NullJournal
from alpcrun.queue_manager.limits import CoreLimits
from alpcrun.queue_manager.outlets import ClientOutlet, WorkerControl, WorkerData
from alpcrun.queue_manager.queues import TaskQueue
from alpcrun.queue_manager.records import SessionRecord, WorkerPhase, WorkerRecord
from alpcrun.queue_manager.scheduler import Action, Bind, Scheduler, Unbind, UnbindReason
from alpcrun.queue_manager.stats import CoreStatistics, collect

_INSTR = WorkerInstruction


class QueueCore(Delivery):
    """Sessions, workers and the batch data path, without I/O."""

    def __init__(
        self,
        *,
        limits: CoreLimits | None = None,
        clock: Clock | None = None,
        scheduler: Scheduler | None = None,
        journal: Journal | None = None,
        on_schedule_needed: Callable[[], None] = lambda: None,
    ) -> None:
        self.limits = limits or CoreLimits()
        self.clock = clock or MonotonicClock()
        self.scheduler = scheduler or Scheduler()
        self.journal = journal or NullJournal()
        self._on_schedule_needed = on_schedule_needed
        self.sessions: dict[str, SessionRecord] = {}
        self.workers: dict[str, WorkerRecord] = {}
        self._dispatch_ids = itertools.count(1)
        self._keys = itertools.count(1)
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
        self.retried_tasks = 0
        self.timed_out_attempts = 0
        self.duplicate_results = 0
        self.duplicate_batches = 0

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
        if self.journal.enabled:
            record.results.limit = 0  # results wait until the journal has them
        self.sessions[sid] = record
        self.journal.session_changed(record)
        return record

    def adopt_session(self, record: SessionRecord) -> None:
        """Take in a session recovered from the journal (before serving)."""
        self.sessions[record.id] = record
        record.seq = next(self._session_seq)
        self.total_submitted += record.submitted
        self.total_completed += record.completed
        self.total_failed += record.failed

    def reserve_keys(self, last_key: int) -> None:
        """Number new queued batches after ``last_key`` (recovered ones keep theirs)."""
        self._keys = itertools.count(last_key + 1)

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
        self.journal.session_changed(record)
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
        drained = record.queue.drain() + [item for _, _, item in record.delayed]
        record.delayed.clear()
        for item in drained:
            self.journal.batch_removed(item)
        discarded = sum(item.ntasks for item in drained)
        record.discarded += discarded + record.inflight_tasks
        self.journal.session_changed(record)
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

    # ------------------------------------------------------------------ dead letters
    def resubmit_dead_letters(
        self, session_id: str, task_ids: list[str] | None, *, reset_attempts: bool
    ) -> tuple[int, list[str]]:
        """Queue dead letters again (all when ``task_ids`` is None); they leave the queue.

        Without ``reset_attempts`` a task keeps its attempt count but gets at least one more
        attempt. Returns how many were resubmitted and the named ids that were not letters.
        """
        record = self.open_session(session_id)
        taken, missing = record.dead_letters.take(task_ids)
        if not taken:
            return 0, missing
        cap = record.config.max_attempts - 1
        for item in resubmit_batches(record.id, taken, reset_attempts, cap, self._keys):
            record.known[item.batch.id] = item.ntasks
            record.queue.push(item)
            self.journal.batch_added(record, item)
        record.failed -= len(taken)
        self.total_failed -= len(taken)
        self.journal.letters_removed(record, [e.task.id for e in taken])
        self._touch(record)
        self._dispatch(record)
        self._on_schedule_needed()
        return len(taken), missing

    def discard_dead_letters(
        self, session_id: str, task_ids: list[str] | None
    ) -> tuple[int, list[str]]:
        """Drop dead letters for good (all when ``task_ids`` is None)."""
        record = self.session(session_id)
        taken, missing = record.dead_letters.take(task_ids)
        if taken:
            self.journal.letters_removed(record, [e.task.id for e in taken])
        return len(taken), missing

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
                    self.journal.session_removed(sid)
                continue
            if record.delayed:
                self.release_delayed(record, now)
            if record.inflight_batches and record.config.task_timeout_s:
                self.expire_attempts(record, now)
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
            _INSTR(
                type=_INSTR.TYPE_BIND,
                session_id=record.id,
                max_inflight_batches=worker.window,
                task_timeout_ms=min(round(record.config.task_timeout_s * 1000), 2**32 - 1),
            )
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
        """Detach a worker from its session; what it held failed with ``worker_lost``.

        Its in-flight batches go back to the head of the queue (or to the dead-letter queue
        if out of attempts).
        """
        record = self.sessions.get(worker.session_id or "")
        if record is not None:
            record.workers.pop(worker.id, None)
            for item in reversed(list(worker.inflight.values())):
                record.inflight_batches -= 1
                record.inflight_tasks -= item.ntasks
                self.fail_attempt(record, item, LOST_ERROR)
            if worker.inflight and not record.closed:
                self._dispatch(record)
        worker.inflight.clear()
        worker.abandoned.clear()
        worker.phase = WorkerPhase.IDLE
        worker.session_id = None


__all__ = ["CoreLimits", "QueueCore"]
