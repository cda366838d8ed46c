"""The sans-I/O batcher: size limits, per-priority batches, flush order."""

from __future__ import annotations

import itertools

from alpcrun.client._batcher import Batcher
from alpcrun.proto import ClientStreamRequest


def make(max_tasks=3, max_bytes=1 << 20):
    sent: list[ClientStreamRequest] = []
    counter = itertools.count()
    batcher = Batcher(
        session_id="S1",
        new_batch_id=lambda: f"b{next(counter)}",
        max_tasks=max_tasks,
        max_bytes=max_bytes,
        emit=lambda batch: sent.append(batch.request),
    )
    return batcher, sent


def test_full_batches_are_emitted_at_once():
    """A batch is emitted as soon as it holds max_tasks tasks; the rest waits for flush."""
    batcher, sent = make(max_tasks=3)
    for i in range(7):
        batcher.add(f"t{i}", b"x", 0)
    assert [len(r.batch.tasks) for r in sent] == [3, 3]
    assert batcher.open_tasks == 1
    assert batcher.flush() == 1
    assert [len(r.batch.tasks) for r in sent] == [3, 3, 1]
    assert [r.batch.id for r in sent] == ["b0", "b1", "b2"]
    assert all(r.batch.session_id == "S1" for r in sent)


def test_byte_limit_starts_a_new_batch():
    """A task that would push a non-empty batch past max_bytes goes into a new batch."""
    batcher, sent = make(max_tasks=100, max_bytes=1024)
    batcher.add("a", b"x" * 600, 0)
    batcher.add("b", b"x" * 600, 0)
    assert [len(r.batch.tasks) for r in sent] == [1]
    batcher.add("c", b"x" * 2000, 0)  # larger than the limit on its own: sent alone
    assert [[t.id for t in r.batch.tasks] for r in sent] == [["a"], ["b"], ["c"]]


def test_priorities_get_separate_batches_flushed_highest_first():
    """Each priority has its own open batch; flush emits the highest priority first."""
    batcher, sent = make(max_tasks=10)
    batcher.add("low", b"x", 1)
    batcher.add("high", b"x", 9)
    batcher.add("low2", b"x", 1)
    batcher.flush()
    assert [(r.batch.priority, len(r.batch.tasks)) for r in sent] == [(9, 1), (1, 2)]
