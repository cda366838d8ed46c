"""A damaged journal, or one in use, stops ``alpcrun queue-manager`` at once with a clear error.

A real queue manager journals 50 sessions and 2,000 queued tasks (the first 25 sessions
checkpointed into the database, the rest only in the write-ahead log) and is SIGKILLed; each
test damages a copy of those files as an accident would, and starts a real queue manager on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from alpcrun import proto
from alpcrun.client import AsyncClient

from .conftest import KEY, ROOT, Grid, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
SESSIONS, TASKS = 50, 40
FILES = ("qm.db", "qm.db-wal", "qm.db-shm", "qm.db.epoch")


def _tasks_journaled(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return sum(
            len(proto.Batch.FromString(blob).tasks)
            for (blob,) in db.execute("SELECT batch FROM batches")
        )


def _checkpoint(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


async def _sessions(address: str, first: int, count: int) -> None:
    async with AsyncClient(address, api_key=KEY) as client:
        for s in range(first, first + count):
            session = await client.create_session(app_id=f"app-{s}")
            for t in range(TASKS):
                await session.submit(f"{s}-{t}".encode())
            await session.flush()


async def _until(condition, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files a SIGKILLed queue manager left: 50 sessions, 2,000 tasks, half in the WAL."""
    directory = tmp_path_factory.mktemp("killed")
    grid = Grid(port=free_port(), logdir=directory)
    path = directory / "qm.db"
    try:
        qm = grid.start_queue_manager("--journal", str(path))
        half = SESSIONS // 2
        asyncio.run(_sessions(grid.address, 0, half))
        asyncio.run(_until(lambda: _tasks_journaled(path) == half * TASKS))
        _checkpoint(path)  # the first half is in the database file itself
        asyncio.run(_sessions(grid.address, half, half))
        asyncio.run(_until(lambda: _tasks_journaled(path) == SESSIONS * TASKS))
        qm.send_signal(signal.SIGKILL)
        qm.wait(10)
    finally:
        grid.stop_all()
    assert os.path.getsize(f"{path}-wal") > 0
    return directory


@pytest.fixture
def journal(killed: Path, tmp_path: Path) -> Path:
    """A fresh copy of the killed queue manager's journal files."""
    for name in FILES:
        if (killed / name).exists():
            shutil.copy(killed / name, tmp_path / name)
    return tmp_path / "qm.db"


def _run_queue_manager(path: Path, *extra: str, within: float = 30) -> tuple[int, str, float]:
    """Start ``alpcrun queue-manager`` on ``path``; it must exit by itself ``within`` seconds."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), ALPCRUNCH_API_KEY=KEY)
    cmd = [
        *(sys.executable, "-m", "alpcrun.cli.main", "queue-manager", "--host", "127.0.0.1"),
        *("--port", str(free_port()), "--metrics-port", "0", "--journal", str(path), *extra),
    ]
    started = time.monotonic()
    try:
        done = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=within, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the queue manager still ran after {within}s: it started on {path}")
    return done.returncode, done.stderr, time.monotonic() - started


def _refused(path: Path, *damage: str) -> str:
    code, stderr, _ = _run_queue_manager(path)
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert f"journal {str(path)!r} is damaged" in stderr
    for words in damage:
        assert words in stderr, stderr
    assert "--journal-salvage" in stderr
    return stderr


def test_a_zero_length_database_is_refused(journal: Path):
    """The database emptied (its log still there): refused, not started empty."""
    os.truncate(journal, 0)
    _refused(journal, "the database file is empty", "committed")


def test_a_removed_write_ahead_log_is_refused(journal: Path):
    """The log removed after a SIGKILL: the transactions only it held are reported lost."""
    os.remove(f"{journal}-wal")
    _refused(journal, "committed transactions", f"{journal}-wal")


def test_a_truncated_write_ahead_log_is_refused(journal: Path):
    """The log cut in half: the transactions past the cut are reported lost."""
    os.truncate(f"{journal}-wal", os.path.getsize(f"{journal}-wal") // 2)
    _refused(journal, "committed transactions")


def test_garbage_in_the_write_ahead_log_is_refused(journal: Path):
    """4 KiB of garbage written over the log: what follows it is lost, and that is said."""
    with open(f"{journal}-wal", "r+b") as f:
        f.seek(8192)
        f.write(os.urandom(4096))
    _refused(journal, "committed transactions")


def test_garbage_in_the_database_is_refused(journal: Path):
    """4 KiB of garbage over a page of the database: the integrity check names the damage."""
    _checkpoint(journal)  # everything in the database file
    with open(journal, "r+b") as f:
        f.seek(3 * 4096)
        f.write(os.urandom(4096))
    _refused(journal)


def test_a_malformed_batch_row_is_refused_naming_it(journal: Path):
    """A batch that does not decode: the table, the row's key and its session are named."""
    with contextlib.closing(sqlite3.connect(journal, isolation_level=None)) as db:
        key, sid = db.execute("SELECT key, session_id FROM batches ORDER BY key LIMIT 1").fetchone()
        db.execute("UPDATE batches SET batch=? WHERE key=?", (b"\xff\xff\xff\xff", key))
    _refused(journal, f"batches row key={key}", sid)


def test_a_second_queue_manager_on_the_same_journal_exits_at_once(journal: Path, tmp_path: Path):
    """While one queue manager runs on a journal, a second one exits at once naming it."""
    grid = Grid(port=free_port(), logdir=tmp_path)
    try:
        first = grid.start_queue_manager("--journal", str(journal))
        code, stderr, _ = _run_queue_manager(journal)
        assert code == 2, stderr
        assert f"journal {str(journal)!r} is in use by process {first.pid}" in stderr
        assert "Traceback" not in stderr
        assert first.poll() is None  # the first one is untouched
    finally:
        grid.stop_all()


def _salvage_start(path: Path, tmp_path: Path) -> tuple[str, proto.Stats]:
    """Start with --journal-salvage; return its log and the statistics it serves."""
    tmp_path.mkdir(exist_ok=True)
    grid = Grid(port=free_port(), logdir=tmp_path)
    try:
        qm = grid.start_queue_manager("--journal", str(path), "--journal-salvage")
        with grpc.insecure_channel(grid.address) as channel:
            stats = proto.AdminStub(channel).GetStats(
                proto.GetStatsRequest(), metadata=(("api_key", KEY),), timeout=10
            )
    finally:
        grid.stop_all()
    return grid.output(qm), stats


def test_a_salvage_start_after_the_log_was_removed_says_what_it_lost(journal: Path, tmp_path):
    """Salvage: the sessions in the database are served, the lost transactions are reported."""
    os.remove(f"{journal}-wal")
    with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
        (sessions,) = db.execute("SELECT COUNT(*) FROM sessions").fetchone()
    tasks = _tasks_journaled(journal)
    assert SESSIONS // 2 <= sessions < SESSIONS  # the first half at least was checkpointed
    log, stats = _salvage_start(journal, tmp_path)
    assert "salvage start: damage found: it lost its last" in log
    assert "salvage start: kept: the damaged files, moved to" in log
    assert (stats.sessions, stats.pending_tasks) == (sessions, tasks)
    _run_again_is_whole(journal, tmp_path)


def test_a_salvage_start_with_a_malformed_row_drops_only_that_row(journal: Path, tmp_path):
    """Salvage: the bad batch is named as lost, every other session and task is served."""
    with contextlib.closing(sqlite3.connect(journal, isolation_level=None)) as db:
        key, blob = db.execute("SELECT key, batch FROM batches ORDER BY key LIMIT 1").fetchone()
        db.execute("UPDATE batches SET batch=? WHERE key=?", (b"\xff\xff\xff\xff", key))
    lost = len(proto.Batch.FromString(blob).tasks)
    log, stats = _salvage_start(journal, tmp_path)
    assert f"salvage start: lost: batches row key={key}" in log
    assert stats.sessions == SESSIONS
    assert stats.pending_tasks == SESSIONS * TASKS - lost


def _run_again_is_whole(journal: Path, tmp_path: Path) -> None:
    """After a salvage start the journal is whole: another salvage start finds nothing."""
    log, _ = _salvage_start(journal, tmp_path / "again")
    assert "salvage start: the journal is whole; nothing was changed" in log
    assert "damage found" not in log
