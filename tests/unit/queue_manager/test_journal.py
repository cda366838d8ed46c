"""The SQLite journal: what it writes, when results are released, and what a restart recovers."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

import pytest

from alpcrun.errors import ConfigError
from alpcrun.proto import Batch, SessionAttributes, WorkerRegistration
from alpcrun.queue_manager import sqlite_journal
from alpcrun.queue_manager.core import QueueCore
from alpcrun.queue_manager.sqlite_journal import SqliteJournal
from alpcrun.testing import FakeClock
from tests.unit.queue_manager.conftest import ClientRecorder, Recorder
from tests.unit.queue_manager.test_attempts import _answer


def _core(path, clock=None) -> tuple[QueueCore, SqliteJournal]:
    journal = SqliteJournal(str(path), flush_interval=0.001)
    return QueueCore(clock=clock or FakeClock(), journal=journal), journal


def _batch(bid: str, n: int) -> Batch:
    b = Batch(id=bid)
    for i in range(n):
        b.tasks.add(id=f"{bid}-{i}", payload=f"{bid}:{i}".encode())
    return b


def _bound(core: QueueCore, sid: str):
    w = core.register_worker(WorkerRegistration(node="n", pod="p"), Recorder())
    core.schedule()
    data = Recorder()
    core.open_worker_stream(w.id, sid, data)
    return w, data


def _rows(path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


async def test_results_reach_clients_only_once_journaled(tmp_path):
    core, journal = _core(tmp_path / "j.db")
    journal.start(asyncio.get_running_loop())
    s = core.create_session(SessionAttributes(app_id="a"))
    client = ClientRecorder()
    core.attach_client(s.id, client)
    core.submit(s, _batch("b1", 2))
    w, data = _bound(core, s.id)
    core.worker_results(w, _answer(data.sent[0]))
    assert s.results.undelivered == 1
    assert s.results.peek() is None  # held back until the journal has it
    await journal.sync()
    assert s.results.peek() is not None
    assert _rows(tmp_path / "j.db", "results") == 1
    assert client.ready >= 2  # woken again when released
    await journal.close()


async def test_a_batch_finished_within_one_flush_is_never_written(tmp_path):
    core, journal = _core(tmp_path / "j.db")
    journal.flush_interval = 60.0  # nothing flushes on its own
    journal.start(asyncio.get_running_loop())
    s = core.create_session(SessionAttributes(app_id="a"))
    core.submit(s, _batch("b1", 2))
    w, data = _bound(core, s.id)
    core.worker_results(w, _answer(data.sent[0]))
    rows = sqlite_journal._rows(journal._ops)  # what the next transaction would write
    assert rows.adds == []
    assert rows.removes == []
    assert len(rows.results) == 1
    assert len(rows.sessions) == 1
    await journal.close()


async def test_restart_recovers_sessions_queues_results_and_letters(tmp_path):
    path = tmp_path / "j.db"
    core, journal = _core(path)
    journal.start(asyncio.get_running_loop())
    s = core.create_session(SessionAttributes(app_id="a", max_attempts=1, priority=7))
    for i in range(4):
        core.submit(s, _batch(f"b{i}", 3))
    w, data = _bound(core, s.id)
    sent = list(data.sent)
    assert len(sent) == 4
    core.worker_results(w, _answer(sent[0]))  # delivered, will be acked
    core.worker_results(w, _answer(sent[1], {"b1-0": (1, 0)}))  # one dead letter
    await journal.sync()
    for seq in (1, 2):
        assert s.results.peek()[0] == seq
        core.results_written(s, seq, keep=True)
    core.ack_results(s, 1)
    core.submit(s, _batch("b9", 1))  # queued only
    await journal.sync()
    await journal.close()  # ... or a crash: everything above was committed

    core2, journal2 = _core(path)
    records, last_key = journal2.load(core2.clock.monotonic())
    (r,) = records
    core2.adopt_session(r)
    core2.reserve_keys(last_key)
    assert r.id == s.id
    assert r.config.priority == 7
    assert r.config.max_attempts == 1
    # b2 and b3 were in flight: they are queued again, with b9
    assert sorted(item.batch.id for item in r.queue.drain()) == ["b2", "b3", "b9"]
    assert r.results.seq == 2
    assert r.results.peek()[0] == 2  # seq 1 was acknowledged
    assert [t.id for t in r.results.peek()[1].tasks] == ["b1-0", "b1-1", "b1-2"]
    letter = r.dead_letters.get("b1-0")
    assert letter is not None
    assert letter.task.payload == b"b1:0"
    assert letter.task.attempt == 1
    assert set(r.known) == {"b1", "b2", "b3", "b9"}  # b0 is finished and acknowledged
    assert (r.submitted, r.completed, r.failed) == (13, 5, 1)
    assert core2.total_submitted == 13
    await journal2.close()


async def test_a_closed_session_is_forgotten_after_retention(tmp_path):
    clock = FakeClock()
    core, journal = _core(tmp_path / "j.db", clock)
    journal.start(asyncio.get_running_loop())
    s = core.create_session(SessionAttributes(app_id="a"))
    core.submit(s, _batch("b1", 1))
    await journal.sync()
    core.close_session(s.id)
    clock.advance(core.limits.session_retention_s + 1)
    core.tick()
    await journal.sync()
    for table in ("sessions", "batches", "results", "letters"):
        assert _rows(tmp_path / "j.db", table) == 0
    await journal.close()


def test_a_journal_that_cannot_be_used_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot use"):
        SqliteJournal(str(tmp_path / "missing-dir" / "j.db"))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, not even close" * 100)
    with pytest.raises(ConfigError, match="not a database"):
        SqliteJournal(str(junk))
