"""Memory bounds, quotas and the cost of the tick in the queue-manager core (fake clock, no I/O)."""

from __future__ import annotations

import pytest

from alpcrun.config import QueueManagerSettings, load_settings
from alpcrun.errors import InvalidArgument, ResourceExhausted
from alpcrun.proto import Batch, SessionAttributes, SessionState, WorkerRegistration
from alpcrun.queue_manager.app import _limits
from alpcrun.queue_manager.limits import TASK_OVERHEAD_BYTES, CoreLimits, charged
from alpcrun.queue_manager.scheduler import Scheduler
from alpcrun.queue_manager.timers import MAX_DUE_PER_TICK
from tests.unit.queue_manager.conftest import ClientRecorder, Harness, Recorder

KIB = 1024
MIB = 1 << 20


def big_batch(bid: str, ntasks: int = 4, payload: int = 64 * KIB) -> Batch:
    b = Batch(id=bid)
    for i in range(ntasks):
        b.tasks.add(id=f"{bid}-t{i}", payload=b"x" * payload)
    return b


def attached(h: Harness, **attrs):
    """A session with a recording client stream attached."""
    s = h.session(**attrs)
    client = ClientRecorder()
    h.core.attach_client(s.id, client)
    return s, client


def bound(h: Harness, s, **labels):
    """A worker bound to ``s`` with its WorkerStream open."""
    w, _ = h.worker(**labels)
    h.core.schedule()
    assert w.session_id == s.id
    return w, h.connect(w)


def answer_all(h: Harness, w, data: Recorder, *, fail: bool = False) -> None:
    """Answer every batch the worker holds (echoing payloads, or failing every task)."""
    held = data.sent[:]
    data.sent.clear()  # what answering dispatches next arrives here
    for b in held:
        if b.dispatch_id in w.inflight:
            ids = {t.id for t in b.tasks} if fail else set()
            h.core.worker_results(w, h.answer(b, fail=ids))


def gauges(h: Harness) -> tuple[int, int, int]:
    c = h.core.counters
    return c.task_bytes, c.result_bytes, c.letter_bytes


# ---------------------------------------------------------------------- queued task bytes
def test_queued_bytes_count_a_per_task_overhead_so_tiny_tasks_are_bounded_too():
    """A batch of 1,000 one-byte tasks is charged 128 bytes a task: it fills a 128 KiB queue."""
    h = Harness(max_pending_bytes=128 * KIB)
    s = h.session()
    tiny = Batch(id="tiny", tasks=[{"id": f"{i}", "payload": b"x"} for i in range(1000)])
    assert tiny.ByteSize() < 16 * KIB  # far below the bound on the wire
    h.core.submit(s, tiny)
    assert not h.core.has_room(s)
    assert h.core.counters.task_bytes == charged(tiny.ByteSize(), 1000)
    assert h.core.counters.task_bytes >= 1000 * TASK_OVERHEAD_BYTES


def test_total_bytes_pause_every_client_stream_and_wake_them_when_work_drains():
    """Past max_total_bytes no session has room; finishing work wakes the paused streams."""
    h = Harness(max_total_bytes=1 * MIB)
    a, _ = attached(h, max_inflight_batches_per_worker=10)
    b, b_client = attached(h)
    for i in range(4):
        h.core.submit(a, big_batch(f"a{i}"))  # 4 x 256 KiB: the total is reached
    assert h.core.has_room(a) is False
    assert h.core.has_room(b) is False  # b has nothing queued, and still waits
    assert b_client.room == 0
    w, data = bound(h, a)
    answer_all(h, w, data)  # results go to a's client, which reads them
    for seq in range(1, a.results.seq + 1):
        h.core.results_written(a, seq, keep=False)
    assert gauges(h) == (0, 0, 0)
    assert b_client.room >= 1
    assert h.core.has_room(b)


def test_results_a_client_does_not_read_count_against_the_total():
    """Unread results hold the total: other sessions wait until the client reads them."""
    h = Harness(max_total_bytes=1 * MIB, max_result_bytes=64 * MIB)
    a, _ = attached(h)
    b, b_client = attached(h)
    h.core.submit(a, big_batch("a0"))
    w, data = bound(h, a)
    answer_all(h, w, data)
    for i in range(1, 4):
        h.core.submit(a, big_batch(f"a{i}"))
        answer_all(h, w, data)
    task_bytes, result_bytes, _ = gauges(h)
    assert task_bytes == 0
    assert result_bytes >= 1 * MIB
    assert not h.core.has_room(b)
    h.core.results_written(a, 1, keep=True)
    h.core.results_written(a, 2, keep=True)
    h.core.ack_results(a, 2)  # half the results acknowledged: below the total again
    assert b_client.room >= 1
    assert h.core.has_room(b)


# ---------------------------------------------------------------------- result bytes
def test_result_bytes_of_a_session_pause_its_dispatch_until_the_client_reads():
    """Past max_result_bytes a session's batches wait in its queue; reading resumes dispatch."""
    h = Harness(max_result_bytes=1 * MIB)
    s, _ = attached(h, max_inflight_batches_per_worker=1)
    for i in range(6):
        h.core.submit(s, big_batch(f"b{i}"))
    w, data = bound(h, s)
    for _ in range(6):
        answer_all(h, w, data)
    assert s.results.bytes >= 1 * MIB
    assert len(s.results) == 4  # 4 x 256 KiB: full; the other two batches are queued
    assert (len(s.queue), len(w.inflight)) == (2, 0)
    h.core.results_written(s, 1, keep=False)  # the client reads one
    assert len(w.inflight) == 1  # dispatch resumed


# ---------------------------------------------------------------------- dead letters
def test_a_session_at_its_dead_letter_bound_refuses_new_batches_but_keeps_every_letter():
    """Letters past max_dead_letter_bytes are kept; new batches get RESOURCE_EXHAUSTED."""
    h = Harness(max_dead_letter_bytes=512 * KIB)
    s, _ = attached(h, max_attempts=1, max_inflight_batches_per_worker=10)
    for i in range(3):
        h.core.submit(s, big_batch(f"b{i}"))  # 3 x 256 KiB accepted before any failed
    w, data = bound(h, s)
    answer_all(h, w, data, fail=True)
    assert len(s.dead_letters) == 12  # none dropped, though past the bound
    assert s.dead_letters.bytes > 512 * KIB
    with pytest.raises(ResourceExhausted, match="max_dead_letter_bytes"):
        h.core.submit(s, big_batch("refused"))
    assert h.core.discard_dead_letters(s.id, None)[0] == 12
    assert h.core.counters.letter_bytes == 0
    h.core.submit(s, big_batch("again"))  # room again
    assert s.queue.batches + s.inflight_batches == 1


def test_dead_letters_of_all_sessions_together_refuse_new_batches_everywhere():
    """Past max_total_dead_letter_bytes every session refuses new batches, naming the bound."""
    h = Harness(max_total_dead_letter_bytes=512 * KIB)
    a, _ = attached(h, max_attempts=1, max_inflight_batches_per_worker=10)
    b, _ = attached(h)
    h.core.submit(a, big_batch("a1", ntasks=8))
    w, data = bound(h, a)
    answer_all(h, w, data, fail=True)
    with pytest.raises(ResourceExhausted, match="max_total_dead_letter_bytes"):
        h.core.submit(b, big_batch("b1"))


def test_byte_gauges_return_to_zero_and_a_forgotten_session_takes_its_bytes_along():
    """Retries, letters, resubmits, acks and forgetting leave no bytes counted behind."""
    h = Harness(session_retention_s=10)
    s, _ = attached(h, max_attempts=2)
    h.core.submit(s, big_batch("b1"))
    w, data = bound(h, s)
    answer_all(h, w, data, fail=True)  # retried
    answer_all(h, w, data, fail=True)  # dead-lettered
    assert gauges(h)[0] == 0
    assert h.core.resubmit_dead_letters(s.id, None, reset_attempts=True)[0] == 4
    assert gauges(h)[2] == 0
    answer_all(h, w, data)
    for seq in range(1, s.results.seq + 1):
        h.core.results_written(s, seq, keep=True)
    h.core.ack_results(s, s.results.seq)
    assert gauges(h) == (0, 0, 0)
    t, _ = attached(h, max_attempts=1)
    h.core.submit(t, big_batch("t1"))
    w2, data2 = bound(h, t)
    answer_all(h, w2, data2, fail=True)  # letters and unread results stay with the session
    assert gauges(h)[1] > 0
    assert gauges(h)[2] > 0
    h.core.close_session(t.id)
    h.core.worker_stream_closed(w2.id, data2)  # its unbound worker leaves
    h.clock.advance(11)
    h.core.tick()
    h.core.tick()
    assert t.id not in h.core.sessions
    assert gauges(h) == (0, 0, 0)


def test_a_closed_session_with_batches_in_flight_is_kept_until_they_come_back():
    """Retention does not forget a closed session whose batches a worker still holds."""
    h = Harness(session_retention_s=10)
    s, _ = attached(h)
    h.core.submit(s, big_batch("b1"))
    w, data = bound(h, s)
    h.core.close_session(s.id)
    h.clock.advance(60)
    h.core.tick()
    h.core.tick()
    assert s.id in h.core.sessions
    answer_all(h, w, data)  # the late results are dropped with the batch
    assert data.closed  # the unbinding worker's stream ends, and with it its binding
    h.core.worker_stream_closed(w.id, data)
    h.core.tick()
    h.core.tick()
    assert s.id not in h.core.sessions
    assert gauges(h) == (0, 0, 0)


# ---------------------------------------------------------------------- sessions and workers
def test_sessions_are_capped_in_all_counting_closed_ones_until_forgotten():
    """max_sessions counts closed sessions until retention forgets them."""
    h = Harness(max_sessions=3, session_retention_s=5)
    sessions = [h.session() for _ in range(3)]
    with pytest.raises(ResourceExhausted, match="max_sessions reached"):
        h.session()
    h.core.close_session(sessions[0].id)
    with pytest.raises(ResourceExhausted):
        h.session()
    h.clock.advance(5)
    h.core.tick()
    h.session()


def test_sessions_are_capped_per_api_key():
    """max_sessions_per_key stops one key; another key may still create sessions."""
    h = Harness(max_sessions_per_key=2)
    attrs = SessionAttributes(app_id="app")
    h.core.create_session(attrs, "key-a")
    h.core.create_session(attrs, "key-a")
    with pytest.raises(ResourceExhausted, match="max_sessions_per_key"):
        h.core.create_session(attrs, "key-a")
    h.core.create_session(attrs, "key-b")


def test_registered_workers_are_capped():
    """Past max_registered_workers a registration is RESOURCE_EXHAUSTED; a lost one frees room."""
    h = Harness(max_registered_workers=2)
    first, _ = h.worker()
    h.worker()
    with pytest.raises(ResourceExhausted, match="max_registered_workers"):
        h.worker()
    h.core.worker_lost(first.id)
    h.worker()


def test_label_and_tag_bytes_are_bounded_naming_the_field():
    """Tags, a worker selector or worker labels over max_label_bytes are INVALID_ARGUMENT."""
    h = Harness(max_label_bytes=256)
    with pytest.raises(InvalidArgument) as err:
        h.session(tags=["t" * 100, "u" * 100, "v" * 100])
    assert err.value.field == "attributes.tags"
    with pytest.raises(InvalidArgument) as err:
        h.session(worker_selector={"k" * 100: "v" * 100, "l" * 100: "w"})
    assert err.value.field == "attributes.worker_selector"
    s = h.session(tags=["small"])
    with pytest.raises(InvalidArgument) as err:
        h.core.update_session(s.id, SessionAttributes(tags=["é" * 100, "x" * 60]))  # 260 bytes
    assert err.value.field == "attributes.tags"
    with pytest.raises(InvalidArgument) as err:
        h.core.register_worker(
            WorkerRegistration(node="n", pod="p", labels={"a" * 128: "b" * 128, "c": "d"}),
            Recorder(),
        )
    assert err.value.field == "register.labels"
    assert not h.core.workers


def test_a_session_never_given_a_task_expires_after_unused_session_expiry():
    """An unused session without a client closes after unused_session_expiry; a used one lives."""
    h = Harness(unused_session_expiry_s=300, session_expiry_s=3600)
    unused, used = h.session(), h.session()
    h.core.submit(used, h.batch())
    w, data = bound(h, used)
    answer_all(h, w, data)
    h.clock.advance(299)
    h.core.tick()
    assert not unused.closed
    h.clock.advance(1)
    h.core.tick()
    assert unused.closed
    assert unused.close_reason == "expired"
    assert not used.closed
    h.clock.advance(3600)
    h.core.tick()
    assert used.closed


# ---------------------------------------------------------------------- the tick
class CountingScheduler(Scheduler):
    """A scheduler that remembers how many sessions each plan was given."""

    def __init__(self) -> None:
        super().__init__()
        self.given: list[int] = []

    def plan(self, sessions, workers, now):
        sessions = list(sessions)
        self.given.append(len(sessions))
        return super().plan(sessions, workers, now)


def test_a_tick_looks_only_at_busy_sessions_and_quiet_ones_that_are_due():
    """20,000 sessions nobody uses cost a tick nothing until their deadlines come."""
    scheduler = CountingScheduler()
    h = Harness(max_sessions=30_000, max_sessions_per_key=30_000)
    h.core.scheduler = scheduler
    quiet = [h.session() for _ in range(20_000)]
    busy = h.session()
    h.core.submit(busy, h.batch())
    h.clock.advance(1)
    h.core.tick()
    assert scheduler.given[-1] == 1  # only the session with work is planned for
    assert h.core.table.sweep(h.clock.monotonic()) == [busy]
    h.clock.advance(60)  # idle_timeout: the quiet ones come due, a bounded number per tick
    h.core.tick()
    idle = SessionState.SESSION_STATE_IDLE
    assert sum(s.state == idle for s in quiet) == MAX_DUE_PER_TICK
    for _ in range(-(-len(quiet) // MAX_DUE_PER_TICK) - 1):
        h.core.tick()
    assert all(s.state == idle for s in quiet)
    assert scheduler.given[-1] == 1


def test_limits_default_so_one_queue_manager_fits_a_4_gib_pod():
    """The defaults hold tasks, results and letters to 1.25 GiB charged (about that in RSS)."""
    limits = CoreLimits()
    assert limits.max_total_bytes + limits.max_total_dead_letter_bytes <= 1.25 * 1024 * MIB
    assert limits.max_pending_bytes <= limits.max_total_bytes
    assert limits.max_result_bytes <= limits.max_total_bytes


def test_bound_settings_reach_the_core_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    """Every bound is a queue-manager setting (sizes as "64MB", durations as "2m")."""
    env = {
        "MAX_PENDING_BYTES": "64MB",
        "MAX_TOTAL_BYTES": "512MB",
        "MAX_RESULT_BYTES": "32MB",
        "MAX_DEAD_LETTER_BYTES": "8MB",
        "MAX_TOTAL_DEAD_LETTER_BYTES": "16MB",
        "MAX_SESSIONS": "500",
        "MAX_SESSIONS_PER_KEY": "50",
        "MAX_REGISTERED_WORKERS": "200",
        "MAX_LABEL_BYTES": "1KB",
        "UNUSED_SESSION_EXPIRY": "2m",
    }
    for name, value in env.items():
        monkeypatch.setenv(f"ALPCRUNCH_QM_{name}", value)
    limits = _limits(load_settings(QueueManagerSettings, api_key="k"))
    expected = {
        "max_pending_bytes": 64 * MIB,
        "max_total_bytes": 512 * MIB,
        "max_result_bytes": 32 * MIB,
        "max_dead_letter_bytes": 8 * MIB,
        "max_total_dead_letter_bytes": 16 * MIB,
        "max_sessions": 500,
        "max_sessions_per_key": 50,
        "max_registered_workers": 200,
        "max_label_bytes": 1024,
        "unused_session_expiry_s": 120.0,
    }
    assert {name: getattr(limits, name) for name in expected} == expected
