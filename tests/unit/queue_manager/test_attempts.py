"""Attempts, retries, dead letters, timeouts and duplicates in the core (fake clock, no I/O)."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from alpcrun.proto import Batch, ErrorReason
from tests.unit.queue_manager.conftest import ClientRecorder, Harness

R = ErrorReason


def _answer(batch: Batch, errors: dict[str, tuple[int, int]] | None = None) -> Batch:
    """Answer ``batch``: tasks in ``errors`` fail with (reason, retry_after_ms)."""
    errors = errors or {}
    out = Batch(id=batch.id, dispatch_id=batch.dispatch_id)
    for t in batch.tasks:
        if t.id in errors:
            reason, after = errors[t.id]
            err = out.tasks.add(id=t.id).error
            err.reason, err.retry_after_ms, err.message, err.type = reason, after, "boom", "E"
        else:
            out.tasks.add(id=t.id, payload=t.payload + b"!")
    return out


def _setup(h: Harness, *batches: Batch, **attrs):
    """A session with a client, ``batches`` submitted, and one bound worker's stream."""
    s = h.session(**attrs)
    client = ClientRecorder()
    h.core.attach_client(s.id, client)
    for b in batches:
        h.core.submit(s, b)
    w, _ = h.worker()
    h.core.schedule()
    return s, w, h.connect(w)


def _drain_results(s) -> list[Batch]:
    out = []
    while (head := s.results.peek()) is not None:
        out.append(head[1])
        s.results.written(head[0], keep=False)
    return out


def _final_ids(results: list[Batch]) -> list[str]:
    return [t.id for b in results for t in b.tasks]


def test_failed_tasks_are_retried_at_the_head_while_batch_mates_deliver(h):
    s, w, data = _setup(h, h.batch(ntasks=3), max_attempts=3, max_inflight_batches_per_worker=1)
    h.core.submit(s, h.batch(ntasks=1))
    first = data.sent[0]
    h.core.worker_results(w, _answer(first, {"b1-t1": (R.ERROR_REASON_ERROR, 0)}))
    results = _drain_results(s)
    assert _final_ids(results) == ["b1-t0", "b1-t2"]
    assert results[0].id == "b1"
    # the retry of b1-t1 went to the head, ahead of b2 that was already queued
    retry = data.sent[-1]
    assert [t.id for t in retry.tasks] == ["b1-t1"]
    assert retry.tasks[0].attempt == 2
    assert retry.id == "b1"
    assert s.retried == 1
    assert len(s.dead_letters) == 0
    h.core.worker_results(w, _answer(retry))
    assert _final_ids(_drain_results(s)) == ["b1-t1"]
    assert s.completed == 3


def test_out_of_attempts_goes_to_the_dead_letter_queue_with_reason_and_error(h):
    s, w, data = _setup(h, h.batch(ntasks=2), max_attempts=2)
    h.core.worker_results(w, _answer(data.sent[0], {"b1-t0": (R.ERROR_REASON_ERROR, 0)}))
    h.core.worker_results(w, _answer(data.sent[1], {"b1-t0": (R.ERROR_REASON_ERROR, 0)}))
    letter = s.dead_letters.get("b1-t0")
    assert letter is not None
    assert (letter.task.attempt, letter.task.error.reason) == (2, R.ERROR_REASON_ERROR)
    assert letter.task.error.message == "boom"
    assert letter.task.payload == b"x"
    final = _drain_results(s)
    assert _final_ids(final) == ["b1-t1", "b1-t0"]
    assert final[1].tasks[0].HasField("error")
    assert (s.completed, s.failed, s.inflight_batches) == (1, 1, 0)
    assert s.known == {"b1": 0}


def test_non_retryable_is_dead_lettered_on_the_first_attempt(h):
    s, w, data = _setup(h, h.batch(ntasks=2), max_attempts=5)
    h.core.worker_results(w, _answer(data.sent[0], {"b1-t1": (R.ERROR_REASON_NON_RETRYABLE, 0)}))
    assert len(data.sent) == 1  # nothing retried
    assert s.dead_letters.get("b1-t1").task.error.reason == R.ERROR_REASON_NON_RETRYABLE
    assert s.dead_letters.get("b1-t1").task.attempt == 1


def test_retry_after_delays_the_next_attempt(h):
    s, w, data = _setup(h, h.batch(ntasks=1), max_attempts=3)
    h.core.worker_results(w, _answer(data.sent[0], {"b1-t0": (R.ERROR_REASON_ERROR, 2500)}))
    assert len(data.sent) == 1
    assert s.delayed_tasks == 1
    assert s.has_work
    h.clock.advance(2.0)
    h.core.tick()
    assert len(data.sent) == 1
    h.clock.advance(1.0)
    h.core.tick()
    assert len(data.sent) == 2
    assert s.delayed_tasks == 0
    assert data.sent[1].tasks[0].attempt == 2


def test_lost_worker_requeues_and_dead_letters_with_worker_lost_after_max_attempts(h):
    s = h.session(max_attempts=2)
    h.core.submit(s, h.batch(ntasks=2))
    for attempt in (1, 2):
        w, _ = h.worker()
        h.core.schedule()
        data = h.connect(w)
        assert len(data.sent) == 1
        assert data.sent[0].tasks[0].attempt == (0 if attempt == 1 else 2)
        h.core.worker_lost(w.id)
    assert len(s.queue) == 0
    assert s.inflight_batches == 0
    assert {e.task.error.reason for e in s.dead_letters} == {R.ERROR_REASON_WORKER_LOST}
    assert [e.task.attempt for e in s.dead_letters] == [2, 2]
    assert _final_ids(_drain_results(s)) == ["b1-t0", "b1-t1"]


def test_task_timeout_fails_the_attempt_and_drops_its_late_result(h):
    s = h.session(max_attempts=3, task_timeout=Duration(seconds=2))
    h.core.submit(s, h.batch(ntasks=1))
    w, control = h.worker()
    h.core.schedule()
    bind = control.instructions(2)[0]
    assert bind.task_timeout_ms == 2000
    data = h.connect(w)
    first = data.sent[0]
    late = _answer(first)  # answers attempt 1 (its dispatch id), sent too late below
    h.clock.advance(1.5)
    w.last_seen = h.clock.monotonic()
    h.core.tick()
    assert s.inflight_batches == 1  # within the limit
    h.clock.advance(1.0)
    w.last_seen = h.clock.monotonic()
    h.core.tick()
    assert s.timed_out == 1
    second = data.sent[-1]
    assert second.dispatch_id != late.dispatch_id
    assert second.tasks[0].attempt == 2
    h.core.worker_results(w, late)
    assert s.duplicate_results == 1
    assert _drain_results(s) == []
    h.core.worker_results(w, _answer(second))
    assert _final_ids(_drain_results(s)) == ["b1-t0"]


def test_timeout_clock_starts_when_a_slot_frees_not_at_dispatch(h):
    s = h.session(task_timeout=Duration(seconds=1), max_inflight_batches_per_worker=4)
    h.core.submit(s, h.batch(ntasks=1))
    h.core.submit(s, h.batch(ntasks=1))
    w, _ = h.worker()  # concurrency 1
    h.core.schedule()
    data = h.connect(w)
    first, second = data.sent
    h.clock.advance(0.9)
    h.core.worker_results(w, _answer(first))
    h.clock.advance(0.9)  # 1.8 s after dispatch, 0.9 s after it could start
    w.last_seen = h.clock.monotonic()
    h.core.tick()
    assert s.timed_out == 0
    h.core.worker_results(w, _answer(second))
    assert s.completed == 2


def test_a_batch_sent_again_is_ignored_until_its_results_are_acknowledged(h):
    batch = h.batch(ntasks=2)
    s, w, data = _setup(h, batch)
    h.core.submit(s, Batch(id=batch.id, tasks=batch.tasks))
    assert (s.duplicate_batches, s.submitted, len(data.sent)) == (1, 2, 1)
    h.core.worker_results(w, _answer(data.sent[0]))
    seq, _ = s.results.peek()
    h.core.results_written(s, seq, keep=True)
    h.core.submit(s, Batch(id=batch.id, tasks=batch.tasks))
    assert s.duplicate_batches == 2  # results written but not acknowledged
    h.core.ack_results(s, seq)
    assert batch.id not in s.known
    h.core.submit(s, Batch(id=batch.id, tasks=batch.tasks))
    assert s.submitted == 4  # a new batch under a finished id is new work


def test_resubmit_and_discard_dead_letters(h):
    s, w, data = _setup(h, h.batch(ntasks=3), max_attempts=1)
    fail = {f"b1-t{i}": (R.ERROR_REASON_ERROR, 0) for i in range(3)}
    h.core.worker_results(w, _answer(data.sent[0], fail))
    assert len(s.dead_letters) == 3
    count, missing = h.core.resubmit_dead_letters(s.id, ["b1-t0", "nope"], reset_attempts=False)
    assert (count, missing) == (1, ["nope"])
    again = data.sent[-1]
    assert [t.id for t in again.tasks] == ["b1-t0"]
    assert again.id.startswith("resubmit-")
    assert not again.tasks[0].HasField("error")
    h.core.worker_results(w, _answer(again, {"b1-t0": (R.ERROR_REASON_ERROR, 0)}))
    assert s.dead_letters.get("b1-t0").task.attempt == 1  # one more attempt, then back
    count, _ = h.core.discard_dead_letters(s.id, None)
    assert count == 3
    assert len(s.dead_letters) == 0


def test_an_error_without_reason_counts_as_error_and_long_delays_are_capped(h):
    s, w, data = _setup(h, h.batch(ntasks=1), max_attempts=2)
    h.core.worker_results(
        w, _answer(data.sent[0], {"b1-t0": (R.ERROR_REASON_UNSPECIFIED, 2**32 - 1)})
    )
    (due, _, _) = s.delayed[0]
    assert due - h.clock.monotonic() == 3600.0
    h.clock.advance(3600.0)
    w.last_seen = h.clock.monotonic()
    h.core.tick()
    h.core.worker_results(w, _answer(data.sent[-1], {"b1-t0": (R.ERROR_REASON_UNSPECIFIED, 0)}))
    assert s.dead_letters.get("b1-t0").task.error.reason == R.ERROR_REASON_ERROR
