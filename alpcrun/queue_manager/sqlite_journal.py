"""The SQLite journal: the queue manager's state on disk, written in batches, recovered on start.

Tables hold the *current* state, not a log: sessions, batches (queued, delayed or in
flight, with their attempt counts), results not yet acknowledged, and dead letters. The
core's hooks are recorded in memory and written every ``flush_interval`` in one
transaction by a single writer thread, so the event loop never waits on the disk. A batch
added and finished within one interval is never written at all.

Results are held back from clients until the transaction holding them is committed
(``ResultBuffer.limit``): a result a client has seen is on disk, so a crash can neither
lose it nor hand out its number again. A batch a client sent but the journal had not yet
written is lost by a crash; the client SDK sends every batch without a result again after
reconnecting, and the queue manager recognises the ones it already has by batch id.

WAL mode with ``synchronous=NORMAL`` survives the death of the process at any moment
(SIGKILL included); ``full`` also survives losing the machine's power.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from alpcrun.errors import ConfigError
from alpcrun.proto import Batch, SessionState, Task
from alpcrun.queue_manager.attributes import SessionConfig
from alpcrun.queue_manager.deadletters import DeadLetterEntry
from alpcrun.queue_manager.queues import QueuedBatch, TaskQueue
from alpcrun.queue_manager.records import SessionRecord

log = logging.getLogger("alpcrun.queue_manager.journal")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions(
  id TEXT PRIMARY KEY, config TEXT NOT NULL, state INTEGER NOT NULL, created_at REAL NOT NULL,
  close_reason TEXT NOT NULL, result_seq INTEGER NOT NULL, counters TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches(
  key INTEGER PRIMARY KEY, session_id TEXT NOT NULL, batch BLOB NOT NULL,
  attempts INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS batches_by_session ON batches(session_id);
CREATE TABLE IF NOT EXISTS results(
  session_id TEXT NOT NULL, seq INTEGER NOT NULL, batch BLOB NOT NULL,
  PRIMARY KEY(session_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS letters(
  session_id TEXT NOT NULL, task_id TEXT NOT NULL, batch_id TEXT NOT NULL, task BLOB NOT NULL,
  dead_at REAL NOT NULL, priority INTEGER NOT NULL, shared INTEGER NOT NULL,
  level INTEGER NOT NULL, UNIQUE(session_id, task_id));
"""
_COUNTERS = ("submitted", "completed", "failed", "discarded", "retried", "timed_out",
             "duplicate_results", "duplicate_batches", "preempted")  # fmt: skip


@dataclasses.dataclass(slots=True)
class _Ops:
    """Changes waiting for the next transaction."""

    sessions: dict[str, SessionRecord] = dataclasses.field(default_factory=dict)
    dropped_sessions: list[str] = dataclasses.field(default_factory=list)
    adds: dict[int, tuple[str, QueuedBatch]] = dataclasses.field(default_factory=dict)
    changes: dict[int, QueuedBatch] = dataclasses.field(default_factory=dict)
    removes: list[int] = dataclasses.field(default_factory=list)
    results: list[tuple[SessionRecord, int, Batch]] = dataclasses.field(default_factory=list)
    freed: dict[str, int] = dataclasses.field(default_factory=dict)
    letters: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.sessions or self.dropped_sessions or self.adds or self.changes or self.removes
            or self.results or self.freed or self.letters
        )  # fmt: skip


@dataclasses.dataclass(slots=True)
class _Rows:
    """One transaction's rows, serialized on the loop, written by the writer thread."""

    sessions: list[tuple[Any, ...]]
    dropped_sessions: list[tuple[str]]
    adds: list[tuple[Any, ...]]
    changes: list[tuple[int, int]]
    removes: list[tuple[int]]
    results: list[tuple[str, int, bytes]]
    freed: list[tuple[str, int]]
    letters: list[tuple[Any, ...]]


def _config_json(config: SessionConfig) -> str:
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}
    return json.dumps(fields)


def _config_from_json(text: str) -> SessionConfig:
    data = json.loads(text)
    data["tags"] = tuple(data.get("tags", ()))
    return SessionConfig(**data)


class SqliteJournal:
    """A :class:`~alpcrun.queue_manager.journal.Journal` in an SQLite file.

    Args:
        path: The database file (created if missing).
        flush_interval: Most seconds a change waits before it is written.
        sync: ``normal`` or ``full`` (SQLite's synchronous setting).
    """

    enabled = True

    def __init__(self, path: str, *, flush_interval: float = 0.001, sync: str = "normal") -> None:
        self.path = path
        self.flush_interval = flush_interval
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
            found = self._db.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
            if found is None:
                self._db.execute("INSERT INTO meta VALUES('schema', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot use {path!r} as the journal: {exc}") from exc
        if found is not None and found[0] != str(SCHEMA_VERSION):
            raise ConfigError(
                f"journal {path!r} has schema {found[0]}, this version reads {SCHEMA_VERSION}"
            )
        self._ops = _Ops()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        self._waiters: list[asyncio.Future[None]] = []
        self._retry: tuple[_Rows, list[tuple[SessionRecord, int]]] | None = None
        self.transactions = 0
        """Transactions committed."""
        self.failures = 0
        """Transactions that failed (and were tried again)."""

    # ------------------------------------------------------------------ core hooks
    def session_changed(self, record: SessionRecord) -> None:
        """Write the session's row at the next flush."""
        self._ops.sessions[record.id] = record
        self._wake()

    def session_removed(self, session_id: str) -> None:
        """Delete the session and everything of it at the next flush."""
        self._ops.sessions.pop(session_id, None)
        self._ops.dropped_sessions.append(session_id)
        self._wake()

    def batch_added(self, record: SessionRecord, item: QueuedBatch) -> None:
        """Insert the batch at the next flush."""
        self._ops.adds[item.key] = (record.id, item)
        self._ops.sessions[record.id] = record
        self._wake()

    def batch_changed(self, item: QueuedBatch) -> None:
        """Update the batch's attempt count at the next flush."""
        if item.key not in self._ops.adds:
            self._ops.changes[item.key] = item
            self._wake()

    def batch_removed(self, item: QueuedBatch) -> None:
        """Delete the batch at the next flush (or never write it if it is not written yet)."""
        ops = self._ops
        ops.changes.pop(item.key, None)
        if ops.adds.pop(item.key, None) is None:
            ops.removes.append(item.key)
            self._wake()

    def result_added(self, record: SessionRecord, seq: int, batch: Batch) -> None:
        """Insert the result batch at the next flush; it reaches clients after that."""
        self._ops.results.append((record, seq, batch))
        self._ops.sessions[record.id] = record
        self._wake()

    def results_freed(self, record: SessionRecord, seq: int) -> None:
        """Delete acknowledged result batches at the next flush."""
        self._ops.freed[record.id] = seq
        self._wake()

    def letter_added(self, record: SessionRecord, entry: DeadLetterEntry) -> None:
        """Insert the dead letter at the next flush."""
        self._ops.letters.append((record.id, entry))
        self._ops.sessions[record.id] = record
        self._wake()

    def letters_removed(self, record: SessionRecord, task_ids: Iterable[str]) -> None:
        """Delete the dead letters at the next flush."""
        self._ops.letters.extend((record.id, tid) for tid in task_ids)
        self._ops.sessions[record.id] = record
        self._wake()

    # ------------------------------------------------------------------ flushing
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin flushing on ``loop`` (changes recorded before are written at the first flush)."""
        self._loop = loop
        if self._ops:
            self._wake()

    async def sync(self) -> None:
        """Wait until every change recorded so far is committed."""
        if self._loop is None:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        self._wake(soon=True)
        await waiter

    async def close(self) -> None:
        """Write what is pending, then close the database."""
        if self._loop is not None:
            while self._ops or self._busy or self._retry is not None:
                await self.sync()
        if self._timer is not None:
            self._timer.cancel()
        self._writer.shutdown(wait=True)
        self._db.close()

    def _wake(self, *, soon: bool = False) -> None:
        if self._busy or self._loop is None:
            return
        if soon and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._timer is None:
            delay = 0.0 if soon else self.flush_interval
            self._timer = self._loop.call_later(delay, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self._busy or self._loop is None:
            return
        rows = self._rows()
        released = [(r, seq) for r, seq, _ in self._ops.results]
        if self._retry is not None:
            rows = _merge(self._retry[0], rows)
            released = self._retry[1] + released
            self._retry = None
        self._ops = _Ops()
        waiters, self._waiters = self._waiters, []
        self._busy = True
        done = self._loop.run_in_executor(self._writer, self._write, rows)
        done.add_done_callback(lambda f: self._written(f, rows, released, waiters))

    def _rows(self) -> _Rows:
        """Serialize pending changes (on the loop, where the records live)."""
        ops = self._ops
        return _Rows(
            sessions=[
                (
                    r.id,
                    _config_json(r.config),
                    r.state,
                    r.created_at,
                    r.close_reason,
                    r.results.seq,
                    json.dumps([getattr(r, c) for c in _COUNTERS]),
                )
                for r in ops.sessions.values()
            ],
            dropped_sessions=[(sid,) for sid in ops.dropped_sessions],
            adds=[
                (key, sid, item.batch.SerializeToString(), item.attempts)
                for key, (sid, item) in ops.adds.items()
            ],
            changes=[(item.attempts, key) for key, item in ops.changes.items()],
            removes=[(key,) for key in ops.removes],
            results=[(r.id, seq, b.SerializeToString()) for r, seq, b in ops.results],
            freed=list(ops.freed.items()),
            letters=[_letter_row(sid, e) for sid, e in ops.letters],
        )

    def _write(self, rows: _Rows) -> None:
        """One transaction (writer thread)."""
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT OR REPLACE INTO sessions VALUES(?,?,?,?,?,?,?)", rows.sessions)
            db.executemany("INSERT OR REPLACE INTO batches VALUES(?,?,?,?)", rows.adds)
            db.executemany("UPDATE batches SET attempts=? WHERE key=?", rows.changes)
            db.executemany("DELETE FROM batches WHERE key=?", rows.removes)
            db.executemany("INSERT OR REPLACE INTO results VALUES(?,?,?)", rows.results)
            db.executemany("DELETE FROM results WHERE session_id=? AND seq<=?", rows.freed)
            for row in rows.letters:
                if len(row) == 2:
                    db.execute("DELETE FROM letters WHERE session_id=? AND task_id=?", row)
                else:
                    db.execute("INSERT OR REPLACE INTO letters VALUES(?,?,?,?,?,?,?,?)", row)
            for table in ("sessions", "batches", "results", "letters"):
                column = "id" if table == "sessions" else "session_id"
                db.executemany(f"DELETE FROM {table} WHERE {column}=?", rows.dropped_sessions)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _written(
        self,
        done: asyncio.Future[None],
        rows: _Rows,
        released: list[tuple[SessionRecord, int]],
        waiters: list[asyncio.Future[None]],
    ) -> None:
        self._busy = False
        error = done.exception()
        if error is not None:
            self.failures += 1
            log.error("journal write failed (will retry): %s", error)
            self._retry = (rows, released)
            self._waiters = waiters + self._waiters
            assert self._loop is not None
            self._timer = self._loop.call_later(max(self.flush_interval, 0.5), self._flush)
            return
        self.transactions += 1
        for record, seq in released:
            if seq > record.results.limit:
                record.results.limit = seq
                if record.client is not None:
                    record.client.results_ready()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._ops or self._waiters:
            self._wake(soon=bool(self._waiters))

    # ------------------------------------------------------------------ recovery
    def load(self, now: float) -> tuple[list[SessionRecord], int]:
        """Read the journaled state: sessions with queues, results and letters; the last key."""
        db = self._db
        records: dict[str, SessionRecord] = {}
        for sid, config, state, created, reason, seq, counters in db.execute(
            "SELECT * FROM sessions ORDER BY rowid"
        ):
            cfg = _config_from_json(config)
            record = SessionRecord(
                id=sid, config=cfg, created_at=created, last_activity=now,
                queue=TaskQueue(fifo=cfg.fifo), state=state, close_reason=reason,
                closed_at=now,
            )  # fmt: skip
            for name, value in zip(_COUNTERS, json.loads(counters), strict=False):
                setattr(record, name, value)
            record.results.seq = seq
            records[sid] = record
        last_key = 0
        for key, sid, blob, attempts in db.execute("SELECT * FROM batches ORDER BY key"):
            last_key = max(last_key, key)
            owner = records.get(sid)
            if owner is None:
                continue
            batch = Batch.FromString(blob)
            batch.dispatch_id = 0
            item = QueuedBatch(batch, len(batch.tasks), len(blob), batch.priority, key, attempts)
            owner.queue.push(item)
            owner.known[batch.id] = owner.known.get(batch.id, 0) + item.ntasks
        self._load_results_and_letters(records)
        for record in records.values():
            record.results.limit = record.results.seq
            if record.state == SessionState.SESSION_STATE_CLOSED:
                record.queue.drain()
        return list(records.values()), last_key

    def _load_results_and_letters(self, records: dict[str, SessionRecord]) -> None:
        db = self._db
        for sid, seq, blob in db.execute("SELECT * FROM results ORDER BY session_id, seq"):
            owner = records.get(sid)
            if owner is not None:
                batch = Batch.FromString(blob)
                owner.results.restore(seq, batch)
                owner.known.setdefault(batch.id, 0)
        for row in db.execute("SELECT * FROM letters ORDER BY rowid"):
            sid, _tid, batch_id, blob, dead_at, priority, shared, level = row
            owner = records.get(sid)
            if owner is not None:
                entry = DeadLetterEntry(
                    Task.FromString(blob), batch_id, dead_at, priority, bool(shared), level
                )
                owner.dead_letters.add(entry)


def _letter_row(sid: str, item: DeadLetterEntry | str) -> tuple[Any, ...]:
    if isinstance(item, str):
        return (sid, item)
    e = item
    return (
        sid, e.task.id, e.batch_id, e.task.SerializeToString(), e.dead_at, e.priority,
        int(e.use_shared_data), e.shared_level,
    )  # fmt: skip


def _merge(first: _Rows, second: _Rows) -> _Rows:
    """Rows of a failed transaction followed by rows recorded since (written together)."""
    return _Rows(
        *(getattr(first, f.name) + getattr(second, f.name) for f in dataclasses.fields(_Rows))
    )


__all__ = ["SCHEMA_VERSION", "SqliteJournal"]
