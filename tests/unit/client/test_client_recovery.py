"""Reconnect bookkeeping without a network: unfinished batches, seq dedupe, backoff, errors."""

from __future__ import annotations

import itertools

import pytest

from alpcrun.client._batcher import Batcher, PackedBatch
from alpcrun.client._pending import IdSource, SeqFilter, Unfinished
from alpcrun.client._retry import (
    INITIAL_DELAY,
    MAX_DELAY,
    Backoff,
    gave_up,
    is_retryable,
    lost_if_unknown,
)
from alpcrun.errors import (
    InvalidArgument,
    PermissionDenied,
    ReconnectFailed,
    SessionClosed,
    SessionError,
    SessionLost,
    SessionNotFound,
    TransportError,
    Unauthenticated,
    Unavailable,
)


def packed(max_tasks: int, tasks: int) -> list[PackedBatch]:
    """Pack ``tasks`` tasks into batches of ``max_tasks``; return the emitted batches."""
    sent: list[PackedBatch] = []
    counter = itertools.count()
    batcher = Batcher(
        session_id="S",
        new_batch_id=lambda: f"b{next(counter)}",
        max_tasks=max_tasks,
        max_bytes=1 << 20,
        emit=sent.append,
    )
    for i in range(tasks):
        batcher.add(f"t{i}", b"x", 0)
    batcher.flush()
    return sent


# -- Unfinished -------------------------------------------------------------------------


def test_batcher_add_returns_the_batch_the_task_went_into():
    """Batcher.add returns the PackedBatch holding the task, which is what gets emitted."""
    sent: list[PackedBatch] = []
    batcher = Batcher(
        session_id="S", new_batch_id=lambda: "b", max_tasks=2, max_bytes=1 << 20, emit=sent.append
    )
    first = batcher.add("a", b"x", 0)
    second = batcher.add("b", b"x", 0)
    third = batcher.add("c", b"x", 0)
    assert first is second is sent[0]
    assert third is not first
    assert [t.id for t in first.tasks] == ["a", "b"]
    assert first.count == 2
    assert first.answered == 0


def test_unfinished_keeps_batches_in_submission_order():
    """Batches are iterated (and so resent) in the order they were registered."""
    batches = packed(max_tasks=2, tasks=6)
    unfinished = Unfinished()
    for batch in batches:
        unfinished.add(batch)
    assert list(unfinished) == batches
    assert len(unfinished) == 3


def test_a_batch_is_kept_until_every_task_is_answered():
    """A batch answered in parts (successes first, retried tasks later) stays until the last."""
    batch = packed(max_tasks=3, tasks=3)[0]
    unfinished = Unfinished()
    unfinished.add(batch)
    assert unfinished.answered(batch) is False
    assert unfinished.answered(batch) is False
    assert batch in unfinished
    assert unfinished.answered(batch) is True
    assert batch not in unfinished
    assert len(unfinished) == 0


def test_finishing_a_middle_batch_keeps_the_order_of_the_rest():
    """Completing one batch removes only it; the others keep their order."""
    batches = packed(max_tasks=1, tasks=4)
    unfinished = Unfinished()
    for batch in batches:
        unfinished.add(batch)
    unfinished.answered(batches[1])
    assert list(unfinished) == [batches[0], batches[2], batches[3]]


def test_iterating_is_a_snapshot():
    """Batches finished while iterating do not break the iteration."""
    batches = packed(max_tasks=1, tasks=3)
    unfinished = Unfinished()
    for batch in batches:
        unfinished.add(batch)
    seen = []
    for batch in unfinished:
        seen.append(batch)
        unfinished.answered(batch)
    assert seen == batches
    assert len(unfinished) == 0


def test_clear_forgets_everything():
    """clear() empties the registry."""
    unfinished = Unfinished()
    for batch in packed(max_tasks=1, tasks=3):
        unfinished.add(batch)
    unfinished.clear()
    assert list(unfinished) == []


# -- SeqFilter --------------------------------------------------------------------------


def test_seq_filter_accepts_increasing_numbers():
    """New result numbers are accepted and remembered."""
    receipts = SeqFilter()
    assert [receipts.accept(n) for n in (1, 2, 3, 5)] == [True, True, True, True]
    assert receipts.last == 5
    assert receipts.dropped == 0


def test_seq_filter_drops_repeats_after_a_reattach():
    """Numbers at or below the highest routed one are repeats written again, and dropped."""
    receipts = SeqFilter()
    for n in (1, 2, 3):
        receipts.accept(n)
    # The new stream first writes the unacknowledged 2 and 3 again, then new ones.
    assert [receipts.accept(n) for n in (2, 3, 4)] == [False, False, True]
    assert receipts.dropped == 2
    assert receipts.last == 4


def test_seq_filter_accepts_unnumbered_messages():
    """seq 0 (a server that does not number results) is always accepted."""
    receipts = SeqFilter()
    receipts.accept(7)
    assert receipts.accept(0) is True
    assert receipts.accept(0) is True
    assert receipts.dropped == 0


# -- task ids ---------------------------------------------------------------------------


def test_id_source_knows_which_ids_it_issued():
    """issued_since recognises this source's ids from a given number on, and nothing else."""
    ids = IdSource()
    early = ids.task_id()
    first = ids.issued
    later = ids.task_id()
    assert ids.issued_since(later, first)
    assert not ids.issued_since(early, first)
    assert not ids.issued_since("zzzzzz-5", 0)
    assert not ids.issued_since(ids.prefix + "b3", 0)
    assert later != early


# -- retry policy -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (Unavailable("connection refused"), True),
        (ReconnectFailed("gave up"), False),
        (Unauthenticated("no key"), False),
        (PermissionDenied("wrong key"), False),
        (InvalidArgument("bad", field="batch.id"), False),
        (SessionClosed("closed"), False),
        (SessionNotFound("unknown"), False),
        (TransportError("ABORTED: superseded by a newer client stream"), False),
    ],
)
def test_only_unavailable_is_retryable(error, retry):
    """UNAVAILABLE (refused, dropped, stopping) is retried; every other failure is final."""
    assert is_retryable(error) is retry


def test_backoff_doubles_to_the_cap_with_jitter():
    """Delays double from the initial delay up to the cap, each scaled into [50 %, 100 %]."""
    low = Backoff(1000, now=0.0, rng=lambda: 0.0)
    high = Backoff(1000, now=0.0, rng=lambda: 0.999999)
    lows = [low.delay(0.0) for _ in range(10)]
    highs = [high.delay(0.0) for _ in range(10)]
    bases = [min(MAX_DELAY, INITIAL_DELAY * 2**n) for n in range(10)]
    assert lows == pytest.approx([b / 2 for b in bases])
    assert highs == pytest.approx(bases, rel=1e-5)
    assert high.attempts == 10


def test_backoff_never_waits_past_its_deadline():
    """The last delay is cut to the deadline; after it the episode is over."""
    backoff = Backoff(1.0, now=10.0, initial=0.8, rng=lambda: 0.999999)
    assert backoff.delay(10.0) == pytest.approx(0.8, rel=1e-5)
    assert backoff.delay(10.8) == pytest.approx(0.2)
    assert backoff.remaining(10.9) == pytest.approx(0.1)
    assert backoff.delay(11.0) is None
    assert backoff.remaining(12.0) == 0.0


def test_backoff_with_zero_timeout_gives_up_at_once():
    """reconnect_timeout 0 means no attempt at all."""
    assert Backoff(0, now=5.0).delay(5.0) is None


def test_gave_up_names_the_address_the_timeout_and_the_cause():
    """The give-up error says where, how long, how often, and chains the last error."""
    backoff = Backoff(3.0, now=0.0)
    backoff.delay(0.0)
    backoff.delay(1.0)
    cause = Unavailable("Connection refused")
    error = gave_up("qm:1337", backoff, 3.2, cause)
    assert isinstance(error, ReconnectFailed)
    assert isinstance(error, Unavailable)
    assert error.__cause__ is cause
    assert error.address == "qm:1337"
    assert error.attempts == 2
    text = str(error)
    assert "qm:1337" in text
    assert "reconnect_timeout=3s" in text
    assert "Connection refused" in text


def test_gave_up_with_reconnects_disabled_says_so():
    """With reconnect_timeout 0 the message says reconnecting is disabled."""
    error = gave_up("qm:1", Backoff(0, now=0.0), 0.0, Unavailable("reset"))
    assert "disabled (reconnect_timeout=0)" in str(error)


def test_not_found_for_a_known_session_means_it_was_lost():
    """NOT_FOUND for a session the client had becomes SessionLost, naming the session."""
    cause = SessionNotFound("session 'S1' not found")
    lost = lost_if_unknown(cause, "S1")
    assert isinstance(lost, SessionLost)
    assert isinstance(lost, SessionError)
    assert lost.session_id == "S1"
    assert lost.__cause__ is cause
    assert "S1" in str(lost)
    assert "journal" in str(lost)


def test_other_errors_and_unnamed_sessions_are_left_alone():
    """Only NOT_FOUND about a named session is mapped; other errors pass unchanged."""
    closed = SessionClosed("closed")
    assert lost_if_unknown(closed, "S1") is closed
    unknown = SessionNotFound("no such session")
    assert lost_if_unknown(unknown, "") is unknown


def test_discard_forgets_a_batch_once():
    """discard() (the stream's inlined completion) removes a batch; a second call is harmless."""
    first, second = packed(max_tasks=1, tasks=2)
    unfinished = Unfinished()
    unfinished.add(first)
    unfinished.add(second)
    unfinished.discard(first)
    unfinished.discard(first)
    assert list(unfinished) == [second]
