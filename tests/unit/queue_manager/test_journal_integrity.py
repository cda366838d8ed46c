"""The journal's files: one owner at a time, damage refused or salvaged, nothing left open."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3

import pytest

from alpcrun.errors import ConfigError
from alpcrun.proto import Batch, SessionAttributes
from alpcrun.queue_manager.core import QueueCore
from alpcrun.queue_manager.sqlite_journal import SqliteJournal
from alpcrun.testing import FakeClock


def _batch(bid: str, n: int) -> Batch:
    b = Batch(id=bid)
    for i in range(n):
        b.tasks.add(id=f"{bid}-{i}", payload=f"{bid}:{i}".encode())
    return b


async def _write(path, sessions: int = 2, batches: int = 3) -> list[str]:
    """A journal holding ``sessions`` sessions of ``batches`` 4-task batches, closed cleanly."""
    journal = SqliteJournal(str(path))
    core = QueueCore(clock=FakeClock(), journal=journal)
    journal.start(asyncio.get_running_loop())
    ids = []
    for s in range(sessions):
        record = core.create_session(SessionAttributes(app_id=f"app{s}"))
        ids.append(record.id)
        for b in range(batches):
            core.submit(record, _batch(f"s{s}b{b}", 4))
        await journal.sync()
    await journal.close()
    return ids


def _load(path, **options) -> tuple[SqliteJournal, list]:
    journal = SqliteJournal(str(path), **options)
    try:
        records, _ = journal.load(0.0)
    except BaseException:
        journal.abandon()
        raise
    return journal, records


def _sql(path, statement: str, *args) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute(statement, args)


def test_a_second_journal_on_the_same_file_is_refused_naming_the_file_and_the_holder(tmp_path):
    """While one journal holds the file, opening it again fails at once with the holder's pid."""
    path = str(tmp_path / "j.db")
    first = SqliteJournal(path)
    try:
        with pytest.raises(ConfigError) as refused:
            SqliteJournal(path)
        assert path in str(refused.value)
        assert f"process {os.getpid()}" in str(refused.value)
    finally:
        first.abandon()
    SqliteJournal(path).abandon()  # released: it opens again


def test_a_journal_that_cannot_be_opened_leaves_no_connection_open(tmp_path, monkeypatch):
    """A refused journal closes the SQLite connection it opened and releases its lock."""
    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def tracking_connect(*args, **kwargs):
        db = real_connect(*args, **kwargs)
        opened.append(db)
        return db

    monkeypatch.setattr(sqlite3, "connect", tracking_connect)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, not even close" * 100)
    with pytest.raises(ConfigError, match="not a database"):
        SqliteJournal(str(junk))
    assert opened
    for db in opened:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            db.execute("SELECT 1")
    with pytest.raises(ConfigError, match="not a database"):  # not "in use": the lock is free
        SqliteJournal(str(junk))


async def test_a_malformed_batch_row_is_refused_naming_the_table_and_the_row(tmp_path):
    """A batch row that does not decode stops the load with its table, key and session named."""
    path = tmp_path / "j.db"
    ids = await _write(path)
    _sql(path, "UPDATE batches SET batch=? WHERE key=2", b"\xff\xff\xff\xff")
    with pytest.raises(ConfigError) as refused:
        _load(path)
    message = str(refused.value)
    assert str(path) in message
    assert "batches row key=2" in message
    assert ids[0] in message
    assert "--journal-salvage" in message


async def test_a_journal_whose_epoch_file_is_gone_is_refused(tmp_path):
    """Without its epoch file a journal cannot be checked for lost transactions: refused."""
    path = tmp_path / "j.db"
    await _write(path)
    os.remove(f"{path}.epoch")
    with pytest.raises(ConfigError, match=r"epoch file .* is missing"):
        SqliteJournal(str(path))


async def test_a_journal_behind_its_epoch_is_refused_with_the_transactions_lost(tmp_path):
    """A database whose generation is behind its epoch file's lost committed transactions."""
    path = tmp_path / "j.db"
    await _write(path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        (generation,) = db.execute("SELECT v FROM meta WHERE k='generation'").fetchone()
    assert int(generation) >= 2
    _sql(path, "UPDATE meta SET v='1' WHERE k='generation'")
    lost = int(generation) - 1
    with pytest.raises(ConfigError, match=f"lost its last {lost} committed transactions"):
        SqliteJournal(str(path))


async def test_a_journal_from_before_epochs_opens_and_gets_one(tmp_path):
    """A journal written before epochs existed opens as it is, and is checked from then on."""
    path = tmp_path / "j.db"
    await _write(path)
    os.remove(f"{path}.epoch")
    _sql(path, "DELETE FROM meta WHERE k IN ('journal_id', 'generation')")
    journal, records = _load(path)
    journal.abandon()
    assert len(records) == 2
    assert path.with_name("j.db.epoch").exists()
    SqliteJournal(str(path)).abandon()


async def test_a_salvage_start_keeps_what_decodes_and_reports_each_loss(tmp_path):
    """Salvage: the bad row is named as lost, the rest is recovered, the old file kept aside."""
    path = tmp_path / "j.db"
    ids = await _write(path)
    _sql(path, "UPDATE batches SET batch=? WHERE key=2", b"\xff\xff\xff\xff")
    journal, records = _load(path, salvage=True)
    report = journal.salvage_report
    await journal.close()
    assert report is not None
    assert any(line.startswith("damage found: batches row key=2") for line in report)
    assert any(line.startswith("lost: batches row key=2") for line in report)
    kept = [line for line in report if line.startswith("kept:")]
    assert len(kept) == 1
    names = os.listdir(tmp_path)
    (aside,) = [
        p for p in names if p.startswith("j.db.damaged-") and not p.endswith(("-wal", "-shm"))
    ]
    assert aside in kept[0]
    by_id = {r.id: r for r in records}
    assert set(by_id) == set(ids)
    assert by_id[ids[0]].queue.tasks == 8  # one of its three batches was lost
    assert by_id[ids[1]].queue.tasks == 12
    journal, records = _load(path)  # the new journal is whole: no salvage needed any more
    journal.abandon()
    assert sum(r.queue.tasks for r in records) == 20


async def test_a_salvage_start_on_a_whole_journal_changes_nothing(tmp_path):
    """Asking for salvage when nothing is damaged loses nothing and moves nothing aside."""
    path = tmp_path / "j.db"
    await _write(path)
    journal, records = _load(path, salvage=True)
    assert journal.salvage_report == []
    journal.abandon()
    assert sum(r.queue.tasks for r in records) == 24
    assert not [p for p in os.listdir(tmp_path) if ".damaged-" in p]
