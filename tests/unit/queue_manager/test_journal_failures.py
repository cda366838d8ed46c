"""Journal writes that fail: bounded transactions, UNAVAILABLE instead of waiting, recovery."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time

import pytest

from alpcrun.errors import Unavailable
from alpcrun.proto import Batch, SessionAttributes, WorkerRegistration
from alpcrun.queue_manager.core import QueueCore
from alpcrun.queue_manager.sqlite_journal import SqliteJournal
from alpcrun.testing import FakeClock
from tests.unit.queue_manager.conftest import ClientRecorder, Recorder
from tests.unit.queue_manager.test_attempts import _answer

KIB = 1024


def _batch(bid: str, n: int, size: int) -> Batch:
    b = Batch(id=bid)
    for i in range(n):
        b.tasks.add(id=f"{bid}-{i}", payload=bytes([i % 251]) * size)
    return b


def _grid(path, **options):
    journal = SqliteJournal(str(path), **options)
    core = QueueCore(clock=FakeClock(), journal=journal)
    journal.start(asyncio.get_running_loop())
    s = core.create_session(SessionAttributes(app_id="a", max_inflight_batches_per_worker=1000))
    client = ClientRecorder()
    core.attach_client(s.id, client)
    return core, journal, s


def _worker(core: QueueCore, sid: str) -> tuple:
    w = core.register_worker(WorkerRegistration(node="n", pod="p"), Recorder())
    core.schedule()
    data = Recorder()
    core.open_worker_stream(w.id, sid, data)
    return w, data


def _count(path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


async def _until(condition, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_full_disk_is_reported_refused_and_recovered_from(tmp_path, caplog):
    """Disk full: the real error is logged, sync raises Unavailable, results wait, then resume."""
    path = tmp_path / "j.db"
    core, journal, s = _grid(path, retry_interval=0.02)
    changes: list[bool] = []
    journal.on_writable = changes.append
    core.submit(s, _batch("b1", 4, 16))
    await journal.sync()
    journal._db.execute("PRAGMA max_page_count=1")  # no page more: as if the disk were full
    w, data = _worker(core, s.id)
    answer = _answer(data.sent[0])
    for task in answer.tasks:
        task.payload = b"r" * (16 * KIB)  # results need pages the journal does not have
    core.worker_results(w, answer)
    with caplog.at_level(logging.ERROR, logger="alpcrun.queue_manager.journal"):
        started = time.monotonic()
        with pytest.raises(Unavailable) as refused:
            await journal.sync()
    assert time.monotonic() - started < 5  # answered, not waited on
    assert str(path) in str(refused.value)
    assert "full" in str(refused.value)
    assert journal.failure == str(refused.value)
    assert changes == [False]
    assert s.results.peek() is None  # the result is not journaled: no client may see it
    logged = caplog.text
    assert "database or disk is full" in logged
    assert "cannot rollback" not in logged
    with pytest.raises(Unavailable):  # at once, while it still fails
        await journal.sync()
    journal._db.execute("PRAGMA max_page_count=1000000")  # room again
    await _until(lambda: journal.failure is None)
    assert changes == [False, True]
    assert s.results.peek() is not None
    await journal.sync()
    assert _count(path, "results") == 1
    assert _count(path, "batches") == 0
    await journal.close()


async def test_a_backlog_is_written_in_bounded_transactions(tmp_path):
    """Changes past max_transaction_bytes are cut into several transactions, none much larger."""
    path = tmp_path / "j.db"
    cap = 64 * KIB
    core, journal, s = _grid(path, max_transaction_bytes=cap, flush_interval=60.0)
    await journal.sync()
    before = journal.transactions
    for i in range(40):
        core.submit(s, _batch(f"b{i}", 2, 4 * KIB))  # 320 KiB in all
        await asyncio.sleep(0)  # each batch arrives in its own turn of the loop
    sizes = [segment.nbytes for segment in journal._pending]
    assert len(sizes) >= 4
    assert max(sizes) < cap + 9 * KIB  # a segment closes at the first change past the cap
    await journal.sync()
    assert journal.transactions - before >= 5
    assert _count(path, "batches") == 40
    await journal.close()


async def test_results_reach_clients_only_once_their_own_transaction_is_committed(tmp_path):
    """When a backlog's third transaction fails, results of the first two are released only."""
    path = tmp_path / "j.db"
    core, journal, s = _grid(path, max_transaction_bytes=64 * KIB, flush_interval=60.0)
    for i in range(12):
        core.submit(s, _batch(f"b{i}", 1, 20 * KIB))
    await journal.sync()
    w, data = _worker(core, s.id)
    assert len(data.sent) == 12
    for sent in data.sent:
        core.worker_results(w, _answer(sent))  # 12 results of 20 KiB: a few transactions
        await asyncio.sleep(0)
    journal._seal()
    segments = list(journal._pending)
    assert len(segments) >= 3
    write, calls = journal._write, []

    def failing_third(rows) -> None:
        calls.append(rows)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        write(rows)

    journal._write = failing_third  # type: ignore[method-assign]
    with pytest.raises(Unavailable, match="No space left"):
        await journal.sync()
    released = max(seq for segment in segments[:2] for _, seq in segment.released)
    assert s.results.limit == released
    assert s.results.undelivered == 12
    journal._write = write  # type: ignore[method-assign]
    await _until(lambda: journal.failure is None)
    assert s.results.limit == 12
    await journal.close()
    assert _count(path, "results") == 12


async def test_the_changes_of_one_event_share_a_transaction(tmp_path):
    """A result past the size cap and the removal of the batch it finishes commit together."""
    path = tmp_path / "j.db"
    core, journal, s = _grid(path, max_transaction_bytes=64 * KIB, flush_interval=60.0)
    core.submit(s, _batch("b1", 1, 16))
    await journal.sync()
    w, data = _worker(core, s.id)
    answer = _answer(data.sent[0])
    answer.tasks[0].payload = b"r" * (100 * KIB)
    core.worker_results(w, answer)  # result_added (over the cap), then batch_removed
    await asyncio.sleep(0)
    journal._seal()
    (segment,) = journal._pending
    assert len(segment.rows.results) == 1
    assert len(segment.rows.removes) == 1
    await journal.close()
