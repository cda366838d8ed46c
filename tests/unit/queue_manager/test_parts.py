"""Each collaborator of the queue-manager core on its own: no QueueCore, a fake clock, no I/O."""

from __future__ import annotations

import pytest

from alpcrun.errors import InvalidArgument, SessionClosed
from alpcrun.proto import Batch, ErrorReason, SessionAttributes, TaskError, WorkerRegistration
from alpcrun.queue_manager.attempts import LOST_ERROR, Attempts
from alpcrun.queue_manager.dispatch import Dispatcher
from alpcrun.queue_manager.ledger import Ledger
from alpcrun.queue_manager.letters import DeadLetterOffice
from alpcrun.queue_manager.limits import CoreLimits
from alpcrun.queue_manager.queues import QueuedBatch
from alpcrun.queue_manager.records import SessionRecord, WorkerPhase, WorkerRecord
from alpcrun.queue_manager.result_delivery import ResultDelivery
from alpcrun.queue_manager.scheduler import UnbindReason
from alpcrun.queue_manager.sessions import SessionTable
from alpcrun.queue_manager.workers import WorkerRegistry
from alpcrun.testing import FakeClock
from tests.unit.queue_manager.conftest import ClientRecorder, Recorder


class RecordingJournal:
    """A durable journal that remembers the order of the hooks it was called with."""

    enabled = True

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, hook: str):
        return lambda *args: self.calls.append(hook)


class Parts:
    """The collaborators wired as QueueCore wires them, each reachable on its own."""

    def __init__(self, **limits) -> None:
        self.clock = FakeClock()
        self.limits = CoreLimits(**limits)
        self.journal = RecordingJournal()
        self.ledger = Ledger(self.journal)
        self.table = SessionTable(limits=self.limits, clock=self.clock, ledger=self.ledger)
        c = self.ledger.counters
        self.dispatcher = Dispatcher(limits=self.limits, clock=self.clock, counters=c)
        self.results = ResultDelivery(
            clock=self.clock, ledger=self.ledger, dispatcher=self.dispatcher
        )
        self.letters = DeadLetterOffice(clock=self.clock, ledger=self.ledger)
        self.attempts = Attempts(
            clock=self.clock,
            sessions=self.table.sessions,
            ledger=self.ledger,
            dispatcher=self.dispatcher,
            results=self.results,
            letters=self.letters,
        )
        self.registry = WorkerRegistry(
            limits=self.limits,
            clock=self.clock,
            sessions=self.table.sessions,
            attempts=self.attempts,
            counters=c,
        )

    def session(self, **attrs) -> SessionRecord:
        attrs.setdefault("app_id", "app")
        record = self.table.create(SessionAttributes(**attrs))
        record.results.limit = 1 << 62  # nothing holds results back in these tests
        return record

    def bound_worker(self, record: SessionRecord) -> tuple[WorkerRecord, Recorder]:
        worker = self.registry.register(WorkerRegistration(node="n", pod="p"), Recorder())
        self.registry.bind(worker, record, self.clock.monotonic())
        data = Recorder()
        self.registry.open_stream(worker.id, record.id, data)
        return worker, data


def _batch(bid: str, ntasks: int = 2, priority: int = 0) -> Batch:
    b = Batch(id=bid, priority=priority)
    for i in range(ntasks):
        b.tasks.add(id=f"{bid}-{i}", payload=b"x")
    return b


def _answer(batch: Batch, failed: dict[str, int] | None = None) -> Batch:
    failed = failed or {}
    out = Batch(id=batch.id, dispatch_id=batch.dispatch_id)
    for t in batch.tasks:
        if t.id in failed:
            out.tasks.add(id=t.id).error.reason = failed[t.id]
        else:
            out.tasks.add(id=t.id, payload=b"ok")
    return out


def test_session_table_rejects_a_batch_without_tasks_and_ignores_a_resend():
    """The table validates a client batch, queues it once, and counts a resend of its id."""
    p = Parts()
    s = p.session()
    with pytest.raises(InvalidArgument) as err:
        p.table.accept(s, Batch(id="b"), -1)
    assert err.value.field == "batch.tasks"
    assert p.table.accept(s, _batch("b1"), -1)
    assert not p.table.accept(s, _batch("b1"), -1)
    assert (len(s.queue), s.submitted, s.duplicate_batches) == (1, 2, 1)


def test_session_table_close_discards_the_queue_and_refuses_new_batches():
    """Closing drains the queue (journaled as finished batches) and later batches fail."""
    p = Parts()
    s = p.session()
    p.table.accept(s, _batch("b1", 3), -1)
    assert p.table.close(s, "closed") == 3
    assert "batch_removed" in p.journal.calls
    with pytest.raises(SessionClosed):
        p.table.accept(s, _batch("b2"), -1)


def test_session_table_forgets_closed_sessions_after_retention_only():
    """The sweep keeps a closed session for its retention and returns only open ones."""
    p = Parts(session_retention_s=10)
    a, b = p.session(), p.session()
    p.table.accept(b, _batch("b1"), -1)  # work makes it busy: every sweep returns it
    p.table.close(a, "closed")
    assert p.table.sweep(p.clock.monotonic()) == [b]
    assert a.id in p.table.sessions
    p.clock.advance(10)
    p.table.sweep(p.clock.monotonic())
    assert a.id not in p.table.sessions


def test_dispatcher_spreads_batches_by_fair_share():
    """Two workers and four batches: each worker gets two, within its window."""
    p = Parts()
    s = p.session()
    (_w1, d1), (_w2, d2) = p.bound_worker(s), p.bound_worker(s)
    for i in range(4):
        p.table.accept(s, _batch(f"b{i}"), -1)
    p.dispatcher.dispatch(s)
    assert (len(d1.sent), len(d2.sent)) == (2, 2)
    assert s.inflight_batches == 4
    assert not s.queue
    assert p.ledger.counters.dispatched_batches == 4


def test_dispatcher_pauses_while_the_result_buffer_is_full():
    """With the result buffer at its bound nothing is dispatched."""
    p = Parts(max_buffered_results=1)
    s = p.session()
    _, data = p.bound_worker(s)
    s.results.push(Batch(id="r"))
    p.table.accept(s, _batch("b1"), -1)
    p.dispatcher.dispatch(s)
    assert data.sent == []
    assert p.dispatcher.results_full(s)


def test_dispatcher_tells_the_client_when_a_full_queue_has_room():
    """Dispatch that takes a full queue under its bound wakes the paused client stream."""
    p = Parts(buffer_size=1)
    s = p.session()
    client = ClientRecorder()
    s.client = client
    p.table.accept(s, _batch("b1"), -1)
    assert not p.dispatcher.has_room(s)
    p.bound_worker(s)
    p.dispatcher.dispatch(s)
    assert client.room == 1


def test_attempts_retry_a_retryable_failure_and_deliver_the_rest():
    """One task fails retryably: it is queued again alone; its batch-mate's result is delivered."""
    p = Parts()
    s = p.session(max_attempts=3)
    worker, data = p.bound_worker(s)
    p.table.accept(s, _batch("b1"), -1)
    p.dispatcher.dispatch(s)
    (sent,) = data.sent
    p.attempts.worker_results(worker, _answer(sent, {"b1-0": ErrorReason.ERROR_REASON_ERROR}))
    assert [t.id for t in data.sent[-1].tasks] == ["b1-0"]  # the retry, dispatched at once
    assert s.retried == 1
    assert s.completed == 1
    _, results = s.results.peek()
    assert [t.id for t in results.tasks] == ["b1-1"]


def test_attempts_dead_letter_a_non_retryable_failure():
    """A non-retryable failure is dead-lettered at once, whatever attempts are left."""
    p = Parts()
    s = p.session(max_attempts=5)
    worker, data = p.bound_worker(s)
    p.table.accept(s, _batch("b1"), -1)
    p.dispatcher.dispatch(s)
    reason = ErrorReason.ERROR_REASON_NON_RETRYABLE
    p.attempts.worker_results(worker, _answer(data.sent[0], {"b1-1": reason}))
    assert s.dead_letters.get("b1-1") is not None
    assert (s.completed, s.failed, s.retried) == (1, 1, 0)


def test_attempts_fail_all_requeues_a_lost_workers_batches_at_the_head():
    """A lost worker's batches go back to the head of the queue, counted as retried."""
    p = Parts()
    s = p.session()
    worker, _ = p.bound_worker(s)
    p.table.accept(s, _batch("b1"), -1)
    p.dispatcher.dispatch(s)
    p.table.accept(s, _batch("b2"), -1)
    worker.phase = WorkerPhase.IDLE  # nothing to dispatch to afterwards
    p.attempts.fail_all(worker, s)
    head = s.queue.pop()
    assert head is not None
    assert head.batch.id == "b1"
    assert s.retried == 2
    assert s.inflight_batches == 0


def test_attempts_out_of_attempts_dead_letters_the_whole_batch_with_its_error():
    """A whole-attempt failure on the last attempt dead-letters every task with that error."""
    p = Parts()
    s = p.session(max_attempts=1)
    item = QueuedBatch(_batch("b1"), 2, 10, 0, p.ledger.next_key(), attempts=1)
    p.attempts.fail(s, item, LOST_ERROR)
    assert len(s.dead_letters) == 2
    letter = s.dead_letters.get("b1-0")
    assert letter is not None
    assert letter.task.error.type == "WorkerLost"


def test_result_delivery_frees_acknowledged_batches_and_rejects_acks_from_the_future():
    """Results stay until acknowledged; an ack past the last sequence is INVALID_ARGUMENT."""
    p = Parts()
    s = p.session()
    s.known["b1"] = 1
    out = Batch(tasks=[_batch("b1", 1).tasks[0]])
    p.results.push(s, "b1", out, 1, 1)
    p.results.written(s, 1, keep=True)
    assert s.results.unacked == 1
    with pytest.raises(InvalidArgument) as err:
        p.results.ack(s, 2)
    assert err.value.field == "ack.seq"
    p.results.ack(s, 1)
    assert len(s.results) == 0
    assert "b1" not in s.known


def test_dead_letter_office_resubmits_letters_as_new_batches():
    """Resubmitted letters leave the dead-letter queue and join the task queue."""
    p = Parts()
    s = p.session(max_attempts=2)
    item = QueuedBatch(_batch("b1"), 2, 10, 0, p.ledger.next_key(), attempts=2)
    error = TaskError(reason=ErrorReason.ERROR_REASON_ERROR, message="boom")
    p.letters.add(s, item, 0, error)
    p.letters.add(s, item, 1, error)
    assert s.failed == 2
    count, missing = p.letters.resubmit(s, ["b1-0", "nope"], reset_attempts=True)
    assert (count, missing) == (1, ["nope"])
    assert s.failed == 1
    assert s.queue.tasks == 1
    assert len(s.dead_letters) == 1


def test_registry_unbind_of_an_idle_stream_releases_the_worker():
    """Unbinding a worker that holds nothing ends its stream; its phase is UNBINDING."""
    p = Parts()
    s = p.session()
    worker, data = p.bound_worker(s)
    p.registry.unbind(worker, s, UnbindReason.CLOSED)
    assert worker.phase is WorkerPhase.UNBINDING
    assert data.closed
    assert p.ledger.counters.unbinds_by_reason == {"session_closed": 1}


def test_registry_lose_counts_and_requeues():
    """Losing a bound worker closes its streams and puts its batch back in the queue."""
    p = Parts()
    s = p.session()
    worker, data = p.bound_worker(s)
    p.table.accept(s, _batch("b1"), -1)
    p.dispatcher.dispatch(s)
    assert p.registry.lose(worker.id)
    assert not p.registry.lose(worker.id)
    assert data.closed
    assert worker.control.closed
    assert len(s.queue) == 1
    assert p.ledger.counters.workers_lost == 1


def test_ledger_journals_a_batch_in_the_documented_order():
    """A task failing for good: its letter, then the results carrying it, then the batch goes."""
    p = Parts()
    s = p.session(max_attempts=1)
    worker, data = p.bound_worker(s)
    p.table.accept(s, _batch("b1"), -1)
    p.dispatcher.dispatch(s)
    p.journal.calls.clear()
    p.attempts.worker_results(
        worker, _answer(data.sent[0], {"b1-0": ErrorReason.ERROR_REASON_ERROR})
    )
    assert p.journal.calls == ["letter_added", "result_added", "batch_removed"]
