import pytest

from alpcrun.errors import (
    InvalidArgument,
    NotFound,
    SessionClosed,
    SessionNotFound,
)
from alpcrun.proto import Batch, SessionAttributes, SessionState, Task, WorkerInstruction
from alpcrun.queue_manager.records import WorkerPhase

from .conftest import ClientRecorder, Harness

BIND = WorkerInstruction.TYPE_BIND
UNBIND = WorkerInstruction.TYPE_UNBIND


def test_worker_registration_sends_its_id(h):
    """A registered worker gets REGISTERED with its id and the heartbeat interval."""
    w, control = h.worker()
    (msg,) = control.sent
    assert msg.type == WorkerInstruction.TYPE_REGISTERED
    assert msg.worker_id == w.id
    assert msg.heartbeat_interval_ms == 5000


def test_pending_work_binds_an_idle_worker_and_dispatches(h):
    """Submitting to a session binds an idle worker; its stream then receives the batch."""
    s = h.session()
    w, control = h.worker()
    h.core.submit(s, h.batch())
    h.core.schedule()
    assert [m.session_id for m in control.instructions(BIND)] == [s.id]
    data = h.connect(w)
    assert len(data.sent) == 1
    assert data.sent[0].dispatch_id > 0
    assert (s.inflight_batches, s.queue.tasks) == (1, 0)


def test_dispatch_respects_the_inflight_window(h):
    """A worker never holds more unanswered batches than max_inflight_batches_per_worker."""
    s = h.session(max_inflight_batches_per_worker=2)
    w, _ = h.worker()
    for _ in range(5):
        h.core.submit(s, h.batch())
    h.core.schedule()
    data = h.connect(w)
    assert len(data.sent) == 2
    h.core.worker_results(w, h.answer(data.sent[0]))
    assert len(data.sent) == 3
    assert len(w.inflight) == 2


def test_batches_spread_over_bound_workers(h):
    """Two bound workers share queued batches evenly."""
    s = h.session()
    w1, _ = h.worker()
    w2, _ = h.worker()
    for _ in range(4):
        h.core.submit(s, h.batch())
    h.core.schedule()
    d1, d2 = h.connect(w1), h.connect(w2)
    assert (len(d1.sent), len(d2.sent)) == (2, 2)


def test_results_reach_the_client_and_failures_the_dead_letter_queue(h):
    """Results reach the client; out of attempts, failures land in the dead-letter queue."""
    s = h.session(max_attempts=1)
    client = ClientRecorder()
    h.core.attach_client(s.id, client)
    w, _ = h.worker()
    h.core.submit(s, h.batch(ntasks=3))
    h.core.schedule()
    data = h.connect(w)
    sent = data.sent[0]
    h.core.worker_results(w, h.answer(sent, fail={sent.tasks[1].id}))
    seq, out = s.results.peek()
    assert seq == 1
    assert len(out.tasks) == 3
    assert out.id == sent.id
    assert out.session_id == s.id
    assert client.ready == 1
    assert (s.completed, s.failed, len(s.dead_letters)) == (2, 1, 1)
    (dead,) = s.dead_letters
    assert dead.task.id == sent.tasks[1].id
    assert dead.task.payload == sent.tasks[1].payload  # the input is kept for resubmission
    assert (dead.task.attempt, dead.batch_id) == (1, sent.id)


def test_result_for_unknown_dispatch_is_refused(h):
    """A result batch whose dispatch id is not in flight on that worker is refused."""
    s = h.session()
    w, _ = h.worker()
    h.core.submit(s, h.batch())
    h.core.schedule()
    data = h.connect(w)
    bogus = h.answer(data.sent[0])
    bogus.dispatch_id += 99
    with pytest.raises(NotFound):
        h.core.worker_results(w, bogus)
    short = h.answer(data.sent[0])
    del short.tasks[0]
    with pytest.raises(InvalidArgument):
        h.core.worker_results(w, short)
    assert len(w.inflight) == 1  # still in flight, nothing lost


def test_lost_worker_requeues_its_batches_at_the_head(h):
    """In-flight batches of a lost worker go back to the head of the queue, ahead of newer ones."""
    s = h.session(max_inflight_batches_per_worker=1)
    w, control = h.worker()
    first = h.batch()
    h.core.submit(s, first)
    h.core.schedule()
    h.connect(w)
    h.core.submit(s, h.batch())
    h.core.worker_lost(w.id)
    assert control.closed
    assert s.inflight_batches == 0
    assert s.queue.pop().batch.id == first.id


def test_heartbeat_timeout_declares_worker_lost(h):
    """A worker silent for worker_timeout is forgotten at the next tick."""
    w, _ = h.worker()
    h.clock.advance(30)
    h.core.heartbeat(w.id)
    h.clock.advance(59)
    h.core.tick()
    assert w.id in h.core.workers
    h.clock.advance(2)
    h.core.tick()
    assert w.id not in h.core.workers


def test_unbind_waits_for_inflight_results_then_closes_the_stream(h):
    """An unbound worker finishes in-flight batches; its stream closes after the last result."""
    s = h.session()
    w, control = h.worker()
    h.core.submit(s, h.batch())
    h.core.schedule()
    data = h.connect(w)
    h.core.close_session(s.id)
    assert control.instructions(UNBIND)
    assert w.phase is WorkerPhase.UNBINDING
    assert not data.closed
    h.core.worker_results(w, h.answer(data.sent[0]))
    assert data.closed
    h.core.worker_stream_closed(w.id, data)
    assert w.phase is WorkerPhase.IDLE
    assert w.session_id is None


def test_closed_session_refuses_batches_and_counts_discards(h):
    """Closing discards queued tasks and refuses further batches."""
    s = h.session()
    h.core.submit(s, h.batch(ntasks=4))
    _, discarded = h.core.close_session(s.id)
    assert discarded == 4
    assert s.state == SessionState.SESSION_STATE_CLOSED
    with pytest.raises(SessionClosed):
        h.core.submit(s, h.batch())
    with pytest.raises(SessionClosed):
        h.core.update_session(s.id, SessionAttributes(priority=1))


def test_closed_sessions_are_forgotten_after_retention():
    """A closed session stays visible for session_retention, then disappears."""
    h = Harness(session_retention_s=10)
    s = h.session()
    h.core.close_session(s.id)
    h.clock.advance(9)
    h.core.tick()
    assert h.core.session(s.id).closed
    h.clock.advance(2)
    h.core.tick()
    with pytest.raises(SessionNotFound):
        h.core.session(s.id)


def test_bad_batches_are_refused(h):
    """Batches without id or tasks, or for another session, are refused naming the field."""
    s = h.session()
    b = h.batch()
    b.id = ""
    for bad, field in ((b, "batch.id"), (h.batch(ntasks=0), "batch.tasks")):
        with pytest.raises(InvalidArgument) as info:
            h.core.submit(s, bad)
        assert info.value.field == field
    b = h.batch()
    b.session_id = "someone-else"
    with pytest.raises(InvalidArgument) as info:
        h.core.submit(s, b)
    assert info.value.field == "batch.session_id"
    assert s.submitted == 0


@pytest.mark.parametrize(
    ("ids", "field"),
    [
        (["t0", ""], "batch.tasks[1].id"),
        (["t" * 129], "batch.tasks[0].id"),
        (["t0", "t1", "t2", "t1"], "batch.tasks[3].id"),
    ],
    ids=["empty", "over 128 characters", "repeated"],
)
def test_bad_task_ids_are_refused_naming_the_task(h, ids, field):
    """An empty, over-long or repeated task id refuses the whole batch, naming the task; the
    batch id stays free, so the corrected batch is accepted under it."""
    s = h.session()
    bad = Batch(id="b", tasks=[Task(id=i) for i in ids])
    with pytest.raises(InvalidArgument) as info:
        h.core.submit(s, bad)
    assert info.value.field == field
    assert (s.submitted, s.queue.batches) == (0, 0)
    h.core.submit(s, Batch(id="b", tasks=[Task(id=f"ok{i}") for i in range(len(ids))]))
    assert (s.submitted, s.queue.batches) == (len(ids), 1)


def test_unknown_session_names_the_field_that_held_its_id(h):
    """SessionNotFound names ``session_id`` for a request field and ``sessionid`` for a client
    stream's metadata."""
    with pytest.raises(SessionNotFound) as by_request:
        h.core.session("nope")
    with pytest.raises(SessionNotFound) as by_stream:
        h.core.attach_client("nope", ClientRecorder())
    assert (by_request.value.field, by_stream.value.field) == ("session_id", "sessionid")


def test_backpressure_bound_and_room_signal():
    """has_room turns false at buffer_size and the client is told when room returns."""
    h = Harness(buffer_size=2)
    s = h.session(max_inflight_batches_per_worker=1)
    client = ClientRecorder()
    h.core.attach_client(s.id, client)
    h.core.submit(s, h.batch())
    h.core.submit(s, h.batch())
    assert not h.core.has_room(s)
    w, _ = h.worker()
    h.core.schedule()
    h.connect(w)
    assert h.core.has_room(s)
    assert client.room == 1


def test_newer_client_stream_supersedes_older(h):
    """Attaching a second client stream closes the first as superseded; buffered results wait."""
    s = h.session()
    first, second = ClientRecorder(), ClientRecorder()
    h.core.attach_client(s.id, first)
    h.core.attach_client(s.id, second)
    assert first.superseded
    assert not second.closed
    h.core.detach_client(s.id, first)  # the old stream ending does not detach the new one
    assert s.client is second


def test_cleanup_on_client_exit_closes_the_session(h):
    """With cleanup_on_client_exit the end of the client stream closes the session."""
    s = h.session(cleanup_on_client_exit=True)
    client = ClientRecorder()
    h.core.attach_client(s.id, client)
    h.core.detach_client(s.id, client)
    assert s.closed
    kept = h.session()
    client2 = ClientRecorder()
    h.core.attach_client(kept.id, client2)
    h.core.detach_client(kept.id, client2)
    assert not kept.closed


def test_draining_worker_gets_no_new_batches(h):
    """After a DRAINING heartbeat a worker receives no further batches and is not rebound."""
    s = h.session()
    w, _ = h.worker()
    h.core.submit(s, h.batch())
    h.core.schedule()
    data = h.connect(w)
    h.core.heartbeat(w.id, draining=True)
    h.core.submit(s, h.batch())
    assert len(data.sent) == 1


def test_slow_client_pauses_dispatch():
    """When max_buffered_results result batches wait for the client, dispatch for it pauses."""
    h = Harness(max_buffered_results=1)
    s = h.session(max_inflight_batches_per_worker=1)
    w, _ = h.worker()
    for _ in range(3):
        h.core.submit(s, h.batch())
    h.core.schedule()
    data = h.connect(w)
    h.core.worker_results(w, h.answer(data.sent[0]))
    assert len(data.sent) == 1  # one result buffered: no new dispatch
    seq, _ = s.results.peek()
    h.core.results_written(s, seq, keep=True)  # written, but kept until acknowledged
    assert len(data.sent) == 1
    h.core.ack_results(s, seq)
    assert len(data.sent) == 2
    h.core.worker_results(w, h.answer(data.sent[1]))
    h.core.results_written(s, 2, keep=False)  # a stream without acks frees it at once
    assert len(data.sent) == 3


def test_ack_beyond_what_was_sent_is_refused(h):
    s = h.session()
    with pytest.raises(InvalidArgument) as info:
        h.core.ack_results(s, 1)
    assert info.value.field == "ack.seq"


def test_update_session_changes_window_live(h):
    """UpdateSession applies a larger window to already bound workers at once."""
    s = h.session(max_inflight_batches_per_worker=1)
    w, _ = h.worker()
    for _ in range(4):
        h.core.submit(s, h.batch())
    h.core.schedule()
    data = h.connect(w)
    assert len(data.sent) == 1
    h.core.update_session(s.id, SessionAttributes(max_inflight_batches_per_worker=3))
    assert len(data.sent) == 3


def test_second_worker_is_bound_while_first_holds_all_batches():
    """Work spreads: more batches in flight than bound workers asks the scheduler for another."""
    calls = []
    h = Harness()
    h.core._on_schedule_needed = lambda: calls.append(1)
    s = h.session()
    w1, _ = h.worker()
    h.worker()
    h.core.submit(s, h.batch())
    h.core.schedule()
    h.connect(w1)
    calls.clear()
    h.core.submit(s, h.batch())  # dispatched to w1 at once; the queue is empty again
    assert calls, "a second batch in flight must trigger scheduling"
    h.core.schedule()
    assert s.active_workers() == 2
