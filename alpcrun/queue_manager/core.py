"""The queue manager's sans-I/O core: the events the gRPC shell reports, routed to their owners.

Every method is synchronous and non-blocking; connections are reached only through the
outlets of :mod:`alpcrun.queue_manager.outlets`, durability only through the
:class:`~alpcrun.queue_manager.ledger.Ledger`. The gRPC shell calls in on events and on the
scheduler tick; tests drive it with a fake clock and recording outlets.

:class:`QueueCore` owns no policy. It composes the collaborators, each of which owns one:

========================================================  =========================================
:class:`~alpcrun.queue_manager.sessions.SessionTable`      sessions, their lifecycle and queues
:class:`~alpcrun.queue_manager.workers.WorkerRegistry`     workers, heartbeats, bind and unbind
:class:`~alpcrun.queue_manager.scheduler.Scheduler`        which worker is bound to which session
:class:`~alpcrun.queue_manager.dispatch.Dispatcher`        which batch goes to which bound worker
:class:`~alpcrun.queue_manager.attempts.Attempts`          outcomes of attempts: retries, timeouts
:class:`~alpcrun.queue_manager.result_delivery.ResultDelivery`  results to the client, acks
:class:`~alpcrun.queue_manager.letters.DeadLetterOffice`   dead letters, resubmit and discard
:class:`~alpcrun.queue_manager.ledger.Ledger`              running totals and the journal
========================================================  =========================================

and decides when the scheduler should run again (``on_schedule_needed``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from alpcrun._clock import Clock, MonotonicClock
from alpcrun.proto import Batch, SessionAttributes, WorkerRegistration
from alpcrun.queue_manager.attempts import Attempts
from alpcrun.queue_manager.dispatch import Dispatcher
from alpcrun.queue_manager.journal import Journal
from alpcrun.queue_manager.ledger import Ledger
from alpcrun.queue_manager.letters import DeadLetterOffice
from alpcrun.queue_manager.limits import CoreLimits
from alpcrun.queue_manager.outlets import ClientOutlet, WorkerControl, WorkerData
from alpcrun.queue_manager.records import SessionRecord, WorkerPhase, WorkerRecord
from alpcrun.queue_manager.result_delivery import ResultDelivery
from alpcrun.queue_manager.scheduler import Action, Bind, Scheduler, Unbind, UnbindReason
from alpcrun.queue_manager.sessions import SessionTable
from alpcrun.queue_manager.stats import CoreCounters, CoreStatistics, collect
from alpcrun.queue_manager.workers import WorkerRegistry


class QueueCore:
    """Sessions, workers and the batch data path, without I/O.

    Args:
        limits: Bounds and timings.
        clock: Time (a fake one in tests).
        scheduler: The binding policy.
        journal: Where durable changes go (none: state lives in memory only).
        on_schedule_needed: Called when the scheduler should run soon (the shell coalesces).
    """

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
        self._on_schedule_needed = on_schedule_needed
        self.ledger = Ledger(journal)
        counters = self.ledger.counters
        self.table = SessionTable(limits=self.limits, clock=self.clock, ledger=self.ledger)
        self.sessions = self.table.sessions
        self.dispatcher = Dispatcher(limits=self.limits, clock=self.clock, counters=counters)
        self.results = ResultDelivery(
            clock=self.clock, ledger=self.ledger, dispatcher=self.dispatcher
        )
        self.letters = DeadLetterOffice(clock=self.clock, ledger=self.ledger)
        self.attempts = Attempts(
            clock=self.clock,
            sessions=self.sessions,
            ledger=self.ledger,
            dispatcher=self.dispatcher,
            results=self.results,
            letters=self.letters,
        )
        self.registry = WorkerRegistry(
            limits=self.limits,
            clock=self.clock,
            sessions=self.sessions,
            attempts=self.attempts,
            counters=counters,
        )
        self.workers = self.registry.workers

    # ------------------------------------------------------------------ totals
    @property
    def journal(self) -> Journal:
        """The journal durable changes go to."""
        return self.ledger.journal

    @property
    def counters(self) -> CoreCounters:
        """Running totals (sessions come and go; these do not)."""
        return self.ledger.counters

    @property
    def total_submitted(self) -> int:
        """Tasks accepted since start (recovered sessions included)."""
        return self.counters.submitted

    @property
    def workers_lost(self) -> int:
        """Workers lost since start."""
        return self.counters.workers_lost

    @property
    def sessions_expired(self) -> int:
        """Sessions closed by expiry since start."""
        return self.counters.sessions_expired

    @property
    def binds(self) -> int:
        """Binds since start."""
        return self.counters.binds

    @property
    def unbinds_by_reason(self) -> dict[str, int]:
        """Unbinds since start, by reason."""
        return self.counters.unbinds_by_reason

    def statistics(self) -> CoreStatistics:
        """Counts for metrics and the admin API."""
        return collect(self.sessions.values(), self.workers.values(), self.counters)

    # ------------------------------------------------------------------ sessions
    def create_session(self, attrs: SessionAttributes, api_key: str = "") -> SessionRecord:
        """Validate attributes and create a session with a new ULID.

        ``api_key`` is the key the call presented: sessions are capped per key as well.
        """
        return self.table.create(attrs, api_key)

    def adopt_session(self, record: SessionRecord) -> None:
        """Take in a session recovered from the journal (before serving)."""
        self.table.adopt(record)

    def reserve_keys(self, last_key: int) -> None:
        """Number new queued batches after ``last_key`` (recovered ones keep theirs)."""
        self.ledger.reserve_keys(last_key)

    def session(self, session_id: str) -> SessionRecord:
        """The session with this id, or SessionNotFound."""
        return self.table.get(session_id)

    def open_session(self, session_id: str) -> SessionRecord:
        """The session with this id; SessionClosed if it is closed."""
        return self.table.open(session_id)

    def update_session(self, session_id: str, attrs: SessionAttributes) -> SessionRecord:
        """Apply changed attributes live."""
        record = self.table.update(session_id, attrs)
        self.dispatcher.dispatch(record)
        self._on_schedule_needed()
        return record

    def close_session(self, session_id: str, reason: str = "closed") -> tuple[SessionRecord, int]:
        """Close a session: discard queued tasks, unbind workers, end its client stream."""
        record = self.table.get(session_id)
        if record.closed:
            return record, 0
        discarded = self.table.close(record, reason)
        for w in list(record.workers.values()):
            if w.phase is WorkerPhase.BOUND:
                self.registry.unbind(w, record, UnbindReason.CLOSED)
        if record.client is not None:
            record.client.close()
        self.dispatcher.wake()  # its queued tasks no longer count against max_total_bytes
        self._on_schedule_needed()
        return record, discarded

    def attach_client(self, session_id: str, outlet: ClientOutlet) -> SessionRecord:
        """Attach a client stream; a previously attached one is superseded.

        Result batches written to earlier streams and not acknowledged are queued again.
        """
        return self.table.attach(session_id, outlet)

    def detach_client(self, session_id: str, outlet: ClientOutlet) -> None:
        """The client stream ended; close the session if it asked for cleanup on exit."""
        record = self.table.detach(session_id, outlet)
        if record is not None:
            self.close_session(record.id, "client_exit")

    # ------------------------------------------------------------------ client data path
    def submit(self, record: SessionRecord, batch: Batch, nbytes: int = -1) -> None:
        """Queue a client batch (validated; the tasks are not unpacked) and dispatch.

        A batch whose id the session still knows is a resend after a reconnect: ignored and
        counted. ``nbytes`` is its serialized size when the caller has it already.
        """
        if not self.table.accept(record, batch, nbytes):
            return
        self.dispatcher.dispatch(record)
        if record.active_workers() < record.wanted_workers():
            self._on_schedule_needed()

    def has_room(self, record: SessionRecord) -> bool:
        """Whether the session's queue accepts more batches without exceeding its bounds."""
        return self.dispatcher.has_room(record)

    def results_written(self, record: SessionRecord, seq: int, *, keep: bool) -> None:
        """The result batch ``seq`` was written to the client; ``keep`` it until acked."""
        self.results.written(record, seq, keep=keep)

    def ack_results(self, record: SessionRecord, seq: int) -> None:
        """The client confirmed every result batch up to ``seq``."""
        self.results.ack(record, seq)

    # ------------------------------------------------------------------ dead letters
    def resubmit_dead_letters(
        self, session_id: str, task_ids: list[str] | None, *, reset_attempts: bool
    ) -> tuple[int, list[str]]:
        """Queue dead letters again (all when ``task_ids`` is None); they leave the queue.

        Without ``reset_attempts`` a task keeps its attempt count but gets at least one more
        attempt. Returns how many were resubmitted and the named ids that were not letters.
        """
        record = self.table.open(session_id)
        count, missing = self.letters.resubmit(record, task_ids, reset_attempts=reset_attempts)
        if count:
            self.table.timers.wake(record)
            record.touch(self.clock.monotonic())
            self.dispatcher.dispatch(record)
            self._on_schedule_needed()
        return count, missing

    def discard_dead_letters(
        self, session_id: str, task_ids: list[str] | None
    ) -> tuple[int, list[str]]:
        """Drop dead letters for good (all when ``task_ids`` is None)."""
        return self.letters.discard(self.table.get(session_id), task_ids)

    # ------------------------------------------------------------------ workers
    def register_worker(self, reg: WorkerRegistration, control: WorkerControl) -> WorkerRecord:
        """Register a worker and send it REGISTERED with its id."""
        worker = self.registry.register(reg, control)
        self._on_schedule_needed()
        return worker

    def worker(self, worker_id: str) -> WorkerRecord:
        """The registered worker with this id, or WorkerNotFound."""
        return self.registry.get(worker_id)

    def heartbeat(
        self, worker_id: str, *, draining: bool = False, serving: str | None = None
    ) -> None:
        """Record a sign of life; a draining worker gets no new batches.

        ``serving``: the session the worker reports it serves ("" none; None: not reported).
        A bound worker without a stream that reports otherwise is sent its BIND again.
        """
        if self.registry.heartbeat(worker_id, draining=draining, serving=serving):
            self._on_schedule_needed()

    def worker_lost(self, worker_id: str) -> None:
        """Forget a worker whose control stream ended or timed out; requeue its batches."""
        if self.registry.lose(worker_id):
            self._on_schedule_needed()

    def open_worker_stream(self, worker_id: str, session_id: str, data: WorkerData) -> WorkerRecord:
        """A bound worker opened its WorkerStream for the session it is bound to."""
        worker = self.registry.open_stream(worker_id, session_id, data)
        self.dispatcher.dispatch(self.sessions[session_id])
        return worker

    def worker_stream_closed(self, worker_id: str, data: WorkerData) -> None:
        """A WorkerStream ended: requeue what it held; the worker is idle again."""
        if self.registry.stream_closed(worker_id, data):
            self._on_schedule_needed()

    def worker_results(self, worker: WorkerRecord, batch: Batch, nbytes: int = -1) -> None:
        """Accept one result batch (``nbytes``: its serialized size, if known): settle, dispatch."""
        record = self.attempts.worker_results(worker, batch, nbytes)
        if record is not None and not record.has_work:
            self._on_schedule_needed()

    # ------------------------------------------------------------------ scheduling
    def schedule(self) -> None:
        """Run the binding policy once and carry out its decisions.

        Only busy sessions (with work or bound workers) are planned for: the others neither
        want nor hold workers.
        """
        now = self.clock.monotonic()
        sessions = self.table.busy()
        self.apply_plan(self.scheduler.plan(sessions, self.workers.values(), now))

    def apply_plan(self, actions: Iterable[Action]) -> None:
        """Carry out binds and unbinds (stale ones, for gone workers or sessions, are skipped)."""
        now = self.clock.monotonic()
        for action in actions:
            worker = self.workers.get(action.worker_id)
            record = self.sessions.get(action.session_id)
            if worker is None or record is None:
                continue
            if isinstance(action, Bind):
                self.registry.bind(worker, record, now)
            elif isinstance(action, Unbind):
                self.registry.unbind(worker, record, action.reason)

    def tick(self) -> None:
        """Periodic duties: lost workers, retention, retry delays, timeouts, idle, scheduling.

        Lost are workers silent for ``worker_timeout`` and bound workers that opened no
        stream within ``bind_stream_timeout`` (their slot goes to another worker).
        """
        now = self.clock.monotonic()
        for wid in self.registry.timed_out(now):
            self.worker_lost(wid)
        for wid in self.registry.without_stream(now):
            self.worker_lost(wid)
        for record in self.table.sweep(now):
            if record.delayed:
                self.attempts.release_delayed(record, now)
            if record.inflight_batches and record.config.task_timeout_s:
                self.attempts.expire(record, now)
            if not record.has_work and self.table.idle_check(record, now):
                self.counters.sessions_expired += 1
                self.close_session(record.id, "expired")
        self.dispatcher.wake()  # forgotten sessions took their results and letters along
        self.schedule()


__all__ = ["CoreLimits", "QueueCore"]
