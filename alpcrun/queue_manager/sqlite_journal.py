"""The SQLite journal: the queue manager's state on disk, written in batches, recovered on start.

Tables hold the *current* state, not a log: sessions, batches (queued, delayed or in
flight, with their attempt counts), results not yet acknowledged, and dead letters. The
core's hooks are recorded in memory and written every ``flush_interval`` by a single writer
thread, so the event loop never waits on the disk. A batch added and finished within one
interval is never written at all.

Changes are written in *bounded* transactions: once the changes recorded since the last
cut reach ``max_transaction_bytes`` they are sealed as one segment (when the core's current
event is over, so all the changes of one event stay together), and each segment is one
transaction, committed in the order recorded. A crash between two of them leaves the state of
some moment of the queue manager's life, as a crash between two flushes always did, and a
backlog (after the disk was full) is written a segment at a time instead of in one
transaction that must fit on the disk whole.

Results are held back from clients until the transaction holding them is committed
(``ResultBuffer.limit``): a result a client has seen is on disk, so a crash can neither
lose it nor hand out its number again. A batch a client sent but the journal had not yet
written is lost by a crash; the client SDK sends every batch without a result again after
reconnecting, and the queue manager recognises the ones it already has by batch id.

When a write fails (the disk is full, or it fails), the journal keeps what it has not
written, logs the error with the file and the free space, reports :attr:`failure` (the queue
manager then answers calls that need the journal with UNAVAILABLE and reports NOT_SERVING),
fails :meth:`sync` waiters with ``Unavailable``, and tries again every ``retry_interval``;
the first write that succeeds ends the failure.

Every transaction raises the journal's generation, mirrored in its epoch file, and the
journal is locked and checked when opened (:mod:`alpcrun.queue_manager.journal_open`).

WAL mode with ``synchronous=NORMAL`` survives the death of the process at any moment
(SIGKILL included); ``full`` also survives losing the machine's power.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from alpcrun.errors import Unavailable
from alpcrun.proto import Batch, SessionState
from alpcrun.queue_manager.deadletters import DeadLetterEntry
from alpcrun.queue_manager.journal_files import Epoch
from alpcrun.queue_manager.journal_open import SqliteOptions, open_journal, refusal
from alpcrun.queue_manager.journal_rows import (
    COUNTERS,
    INSERT,
    SCHEMA_VERSION,
    SELECT,
    BadRow,
    decode_batch,
    decode_letter,
    decode_result,
    decode_session,
    letter_row,
    session_row,
)
from alpcrun.queue_manager.queues import QueuedBatch, TaskQueue
from alpcrun.queue_manager.records import SessionRecord

log = logging.getLogger("alpcrun.queue_manager.journal")

_ROW_BYTES = 64
"""What a change counts towards ``max_transaction_bytes`` besides the bytes it carries."""
_RELOG_S = 60.0
"""While writes keep failing, the error is logged again at most this often."""


@dataclasses.dataclass(slots=True)
class _Ops:
    """Changes waiting to be sealed into a segment."""

    sessions: dict[str, SessionRecord] = dataclasses.field(default_factory=dict)
    dropped_sessions: list[str] = dataclasses.field(default_factory=list)
    adds: dict[int, tuple[str, QueuedBatch]] = dataclasses.field(default_factory=dict)
    changes: dict[int, QueuedBatch] = dataclasses.field(default_factory=dict)
    removes: list[int] = dataclasses.field(default_factory=list)
    results: list[tuple[SessionRecord, int, Batch]] = dataclasses.field(default_factory=list)
    freed: dict[str, int] = dataclasses.field(default_factory=dict)
    letters: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    nbytes: int = 0
    """About what the changes weigh in a transaction (payload bytes plus a per-row cost)."""

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


@dataclasses.dataclass(slots=True)
class _Segment:
    """Changes sealed together: one transaction."""

    number: int
    """Position in the order changes were sealed (1, 2, ...)."""
    rows: _Rows
    """What the transaction writes."""
    released: list[tuple[SessionRecord, int]]
    """Result batches (session, seq) that may reach clients once it is committed."""
    nbytes: int
    """About what it weighs."""


class SqliteJournal:
    """A :class:`~alpcrun.queue_manager.journal.Journal` in an SQLite file.

    Args:
        path: The database file (created if missing), locked for as long as it is open.
        flush_interval: Most seconds a change waits before it is written.
        sync: ``normal`` or ``full`` (SQLite's synchronous setting).
        salvage: Open a damaged journal with what can be read (see :attr:`salvage_report`)
            instead of refusing it.
        max_transaction_bytes: Changes written in one transaction, about (a single larger
            change is written alone).
        retry_interval: Seconds between attempts while writes fail.

    Raises:
        alpcrun.errors.ConfigError: The file is locked by another queue manager, unusable,
            or damaged (and ``salvage`` is false).
    """

    enabled = True

    def __init__(
        self,
        path: str,
        *,
        flush_interval: float = 0.001,
        sync: str = "normal",
        salvage: bool = False,
        max_transaction_bytes: int = 1 << 20,
        retry_interval: float = 0.5,
    ) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self.max_transaction_bytes = max_transaction_bytes
        self.retry_interval = retry_interval
        opened = open_journal(
            path,
            SqliteOptions(sync=sync, wal_limit_bytes=max(64 << 20, 4 * max_transaction_bytes)),
            salvage=salvage,
        )
        self._db = opened.db
        self._lock = opened.lock
        self._epoch = opened.epoch
        self._journal_id = opened.journal_id
        self.generation = opened.generation
        """Transactions committed over the journal's life (mirrored in its epoch file)."""
        self.salvage_report = opened.salvage_report
        """A salvage start's findings, one line each; None unless ``salvage`` was asked."""
        self._ops = _Ops()
        self._pending: collections.deque[_Segment] = collections.deque()
        self._sealed = 0
        self._committed = 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        self._closed = False
        self._seal_soon = False
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._failing_since = 0.0
        self._logged_at = 0.0
        self.failure: str | None = None
        """Why the journal cannot write now (None while it can)."""
        self.on_writable: Callable[[bool], None] | None = None
        """Called with False when writes start failing and with True when they succeed again."""
        self.transactions = 0
        """Transactions committed by this process."""
        self.failures = 0
        """Write attempts that failed (and were tried again)."""

    # ------------------------------------------------------------------ core hooks
    def session_changed(self, record: SessionRecord) -> None:
        """Write the session's row at the next flush."""
        self._ops.sessions[record.id] = record
        self._added(_ROW_BYTES)

    def session_removed(self, session_id: str) -> None:
        """Delete the session and everything of it at the next flush."""
        self._ops.sessions.pop(session_id, None)
        self._ops.dropped_sessions.append(session_id)
        self._added(_ROW_BYTES)

    def batch_added(self, record: SessionRecord, item: QueuedBatch) -> None:
        """Insert the batch at the next flush."""
        self._ops.adds[item.key] = (record.id, item)
        self._ops.sessions[record.id] = record
        self._added(item.nbytes + _ROW_BYTES)

    def batch_changed(self, item: QueuedBatch) -> None:
        """Update the batch's attempt count at the next flush."""
        if item.key not in self._ops.adds:
            self._ops.changes[item.key] = item
            self._added(_ROW_BYTES)

    def batch_removed(self, item: QueuedBatch) -> None:
        """Delete the batch at the next flush (or never write it if it is not written yet)."""
        ops = self._ops
        ops.changes.pop(item.key, None)
        if ops.adds.pop(item.key, None) is None:
            ops.removes.append(item.key)
            self._added(_ROW_BYTES)

    def result_added(self, record: SessionRecord, seq: int, batch: Batch) -> None:
        """Insert the result batch at the next flush; it reaches clients after that."""
        self._ops.results.append((record, seq, batch))
        self._ops.sessions[record.id] = record
        self._added(batch.ByteSize() + _ROW_BYTES)

    def results_freed(self, record: SessionRecord, seq: int) -> None:
        """Delete acknowledged result batches at the next flush."""
        self._ops.freed[record.id] = seq
        self._added(_ROW_BYTES)

    def letter_added(self, record: SessionRecord, entry: DeadLetterEntry) -> None:
        """Insert the dead letter at the next flush."""
        self._ops.letters.append((record.id, entry))
        self._ops.sessions[record.id] = record
        self._added(entry.task.ByteSize() + _ROW_BYTES)

    def letters_removed(self, record: SessionRecord, task_ids: Iterable[str]) -> None:
        """Delete the dead letters at the next flush."""
        before = len(self._ops.letters)
        self._ops.letters.extend((record.id, tid) for tid in task_ids)
        self._ops.sessions[record.id] = record
        self._added(_ROW_BYTES * (len(self._ops.letters) - before + 1))

    def _added(self, nbytes: int) -> None:
        """A change was recorded: make sure a flush comes, and a full segment gets sealed."""
        self._ops.nbytes += nbytes
        if (
            self._ops.nbytes >= self.max_transaction_bytes
            and not self._seal_soon
            and self._loop is not None
        ):
            # Sealed once the core's current event is over: every change one event makes (a
            # result and the removal of the batch it finishes) goes into the same transaction.
            self._seal_soon = True
            self._loop.call_soon(self._seal_if_full)
        self._wake()

    def _seal_if_full(self) -> None:
        self._seal_soon = False
        if self._ops.nbytes >= self.max_transaction_bytes:
            self._seal()

    # ------------------------------------------------------------------ flushing
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin flushing on ``loop`` (changes recorded before are written at the first flush)."""
        self._loop = loop
        if self._ops or self._pending:
            self._wake()

    @property
    def backlog_bytes(self) -> int:
        """About what the changes not yet committed weigh."""
        return self._ops.nbytes + sum(seg.nbytes for seg in self._pending)

    async def sync(self) -> None:
        """Wait until every change recorded so far is committed.

        Raises:
            alpcrun.errors.Unavailable: The journal cannot write (now, or the write fails
                while waiting); the changes stay recorded and are written once it can.
        """
        if self._loop is None:
            return
        if self.failure is not None:
            raise Unavailable(self.failure)
        self._seal()
        if self._sealed <= self._committed:
            return
        waiter = self._loop.create_future()
        self._waiters.append((self._sealed, waiter))
        self._wake(soon=True)
        await waiter

    async def close(self, *, give_up_s: float = 5.0) -> None:
        """Write what is pending (trying for at most ``give_up_s`` if writes fail), then close."""
        if self._loop is not None:
            deadline = self._loop.time() + give_up_s
            while self._ops or self._pending or self._busy:
                if self._loop.time() >= deadline:
                    log.error(
                        "journal %s: closed with %d bytes of changes not written (%s); they "
                        "are lost",
                        self.path,
                        self.backlog_bytes,
                        self.failure,
                    )
                    break
                try:
                    await self.sync()
                except Unavailable:
                    await asyncio.sleep(min(self.retry_interval, 0.1))
        self.abandon()

    def abandon(self) -> None:
        """Close at once, writing nothing more (start-up failed, or after :meth:`close`)."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._writer.shutdown(wait=True)
        self._db.close()
        self._epoch.close()
        self._lock.release()

    def _wake(self, *, soon: bool = False) -> None:
        if self._busy or self._loop is None or self._closed:
            return
        if soon and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._timer is None:
            delay = 0.0 if soon else self.flush_interval
            self._timer = self._loop.call_later(delay, self._flush)

    def _seal(self) -> None:
        """Close the changes recorded so far into a segment (serialized now, on the loop)."""
        ops = self._ops
        if not ops:
            return
        self._sealed += 1
        released = [(r, seq) for r, seq, _ in ops.results]
        self._pending.append(_Segment(self._sealed, _rows(ops), released, ops.nbytes))
        self._ops = _Ops()

    def _flush(self) -> None:
        self._timer = None
        if self._busy or self._loop is None or self._closed:
            return
        self._seal()
        if not self._pending:
            return
        self._busy = True
        segments = list(self._pending)
        # After a failure the log is emptied after every transaction, so that a disk with
        # little room left needs room for one transaction of the backlog, not for all of it.
        shrink = self.failure is not None
        done = self._loop.run_in_executor(self._writer, self._write_all, segments, shrink)
        done.add_done_callback(self._written)

    def _write_all(
        self, segments: list[_Segment], shrink: bool
    ) -> tuple[int, BaseException | None]:
        """Commit the segments in order, one transaction each (writer thread).

        Returns how many were committed and the error that stopped the others, if any.
        """
        committed = 0
        try:
            if shrink:
                self._checkpoint()
            for segment in segments:
                self._write(segment.rows)
                committed += 1
                if shrink:
                    self._checkpoint()
        except Exception as exc:  # any failure: keep the rest, report it, try again later
            return committed, exc
        return committed, None

    def _checkpoint(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:  # no room to copy the log into the database yet
            log.debug("journal %s: checkpoint failed: %s", self.path, exc)

    def _write(self, rows: _Rows) -> None:
        """One transaction, raising the generation (writer thread)."""
        db = self._db
        generation = self.generation + 1
        db.execute("BEGIN")
        try:
            db.executemany(INSERT["sessions"], rows.sessions)
            db.executemany(INSERT["batches"], rows.adds)
            db.executemany("UPDATE batches SET attempts=? WHERE key=?", rows.changes)
            db.executemany("DELETE FROM batches WHERE key=?", rows.removes)
            db.executemany(INSERT["results"], rows.results)
            db.executemany("DELETE FROM results WHERE session_id=? AND seq<=?", rows.freed)
            for row in rows.letters:
                if len(row) == 2:
                    db.execute("DELETE FROM letters WHERE session_id=? AND task_id=?", row)
                else:
                    db.execute(INSERT["letters"], row)
            for table in ("sessions", "batches", "results", "letters"):
                column = "id" if table == "sessions" else "session_id"
                db.executemany(f"DELETE FROM {table} WHERE {column}=?", rows.dropped_sessions)
            db.execute("UPDATE meta SET v=? WHERE k='generation'", (str(generation),))
            db.execute("COMMIT")
        except BaseException:
            # SQLite rolls a transaction back by itself on some errors (a full disk among
            # them); rolling back again would hide the real error behind "no transaction".
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.generation = generation
        try:
            self._epoch.write(Epoch(self._journal_id, generation))
        except OSError as exc:  # the database is ahead of its epoch: still detected as whole
            log.warning("journal %s: cannot update its epoch file: %s", self.path, exc)

    def _written(self, done: asyncio.Future[tuple[int, BaseException | None]]) -> None:
        self._busy = False
        if done.cancelled():
            return
        committed, error = done.result()
        for _ in range(committed):
            segment = self._pending.popleft()
            self._committed = segment.number
            self.transactions += 1
            _release(segment.released)
        still = []
        for target, waiter in self._waiters:
            if target <= self._committed:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((target, waiter))
        self._waiters = still
        if self._closed:
            return
        if error is not None:
            self._failed(error)
            return
        if self.failure is not None:
            self._recovered()
        if self._ops or self._pending:
            self._wake(soon=bool(self._waiters))

    def _failed(self, error: BaseException) -> None:
        """A write failed: report it, fail the waiters, try again after ``retry_interval``."""
        assert self._loop is not None
        self.failures += 1
        now = time.monotonic()
        message = f"journal {self.path} cannot be written: {_describe(error, self.path)}"
        if self.failure is None:
            self._failing_since = self._logged_at = now
            log.error(
                "%s; sessions and new tasks are refused (UNAVAILABLE) and health reports "
                "NOT_SERVING until a write succeeds (retrying every %gs)",
                message,
                self.retry_interval,
            )
        elif now - self._logged_at >= _RELOG_S:
            self._logged_at = now
            log.error(
                "%s; still failing after %.0fs, %d bytes of changes waiting",
                message,
                now - self._failing_since,
                self.backlog_bytes,
            )
        was_writable = self.failure is None
        self.failure = message
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            if not waiter.done():
                waiter.set_exception(Unavailable(message))
        if was_writable and self.on_writable is not None:
            self.on_writable(False)
        self._timer = self._loop.call_later(self.retry_interval, self._flush)

    def _recovered(self) -> None:
        log.warning(
            "journal %s written again after %.1fs and %d failed attempts; serving again",
            self.path,
            time.monotonic() - self._failing_since,
            self.failures,
        )
        self.failure = None
        if self.on_writable is not None:
            self.on_writable(True)

    # ------------------------------------------------------------------ recovery
    def load(self, now: float) -> tuple[list[SessionRecord], int]:
        """Read the journaled state: sessions with queues, results and letters; the last key.

        Raises:
            alpcrun.errors.ConfigError: A row does not decode or a table cannot be read (the
                message names the file, the table and the row); nothing was changed.
        """
        table = "sessions"
        try:
            records = self._load_sessions(now)
            table = "batches"
            last_key = self._load_batches(records)
            table = "results"
            self._load_results(records)
            table = "letters"
            self._load_letters(records)
        except BadRow as exc:
            raise refusal(self.path, str(exc)) from None
        except sqlite3.DatabaseError as exc:
            raise refusal(self.path, f"table {table} cannot be read: {exc}") from None
        for record in records.values():
            record.results.limit = record.results.seq
            if record.state == SessionState.SESSION_STATE_CLOSED:
                record.queue.drain()
        return list(records.values()), last_key

    def _load_sessions(self, now: float) -> dict[str, SessionRecord]:
        records: dict[str, SessionRecord] = {}
        for row in self._db.execute(SELECT["sessions"]):
            s = decode_session(row)
            record = SessionRecord(
                id=s.id, config=s.config, created_at=s.created_at, last_activity=now,
                queue=TaskQueue(fifo=s.config.fifo), state=s.state, close_reason=s.close_reason,
                closed_at=now,
            )  # fmt: skip
            for name, value in zip(COUNTERS, s.counters, strict=False):
                setattr(record, name, value)
            record.results.seq = s.result_seq
            records[s.id] = record
        return records

    def _load_batches(self, records: dict[str, SessionRecord]) -> int:
        last_key = 0
        for row in self._db.execute(SELECT["batches"]):
            key, sid, batch, attempts, nbytes = decode_batch(row)
            last_key = max(last_key, key)
            owner = records.get(sid)
            if owner is None:
                continue
            batch.dispatch_id = 0
            item = QueuedBatch(batch, len(batch.tasks), nbytes, batch.priority, key, attempts)
            owner.queue.push(item)
            owner.known[batch.id] = owner.known.get(batch.id, 0) + item.ntasks
        return last_key

    def _load_results(self, records: dict[str, SessionRecord]) -> None:
        for row in self._db.execute(SELECT["results"]):
            sid, seq, batch = decode_result(row)
            owner = records.get(sid)
            if owner is not None:
                owner.results.restore(seq, batch)
                owner.known.setdefault(batch.id, 0)

    def _load_letters(self, records: dict[str, SessionRecord]) -> None:
        for row in self._db.execute(SELECT["letters"]):
            sid, entry = decode_letter(row)
            owner = records.get(sid)
            if owner is not None:
                owner.dead_letters.add(entry)


def _rows(ops: _Ops) -> _Rows:
    """Serialize recorded changes (on the loop, where the records live)."""
    return _Rows(
        sessions=[session_row(r) for r in ops.sessions.values()],
        dropped_sessions=[(sid,) for sid in ops.dropped_sessions],
        adds=[
            (key, sid, item.batch.SerializeToString(), item.attempts)
            for key, (sid, item) in ops.adds.items()
        ],
        changes=[(item.attempts, key) for key, item in ops.changes.items()],
        removes=[(key,) for key in ops.removes],
        results=[(r.id, seq, b.SerializeToString()) for r, seq, b in ops.results],
        freed=list(ops.freed.items()),
        letters=[letter_row(sid, e) for sid, e in ops.letters],
    )


def _release(released: list[tuple[SessionRecord, int]]) -> None:
    """Committed result batches may now reach their clients."""
    for record, seq in released:
        if seq > record.results.limit:
            record.results.limit = seq
            if record.client is not None:
                record.client.results_ready()


def _describe(error: BaseException, path: str) -> str:
    """The error of a failed write, with the free space where it says the disk is full."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, sqlite3.Error) and "full" in str(error):
        try:
            st = os.statvfs(os.path.dirname(os.path.abspath(path)))
            text += f" ({st.f_bavail * st.f_frsize} bytes free on its filesystem)"
        except OSError:
            pass
    return text


__all__ = ["SCHEMA_VERSION", "SqliteJournal"]
