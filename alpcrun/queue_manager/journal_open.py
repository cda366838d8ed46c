"""Opening a journal: lock it, check it is whole, and refuse or salvage one that is not.

A journal is refused (``ConfigError`` naming the file and the damage; nothing is changed) when:

- another process holds its lock (:class:`~alpcrun.queue_manager.journal_files.JournalLock`);
- SQLite cannot read it, or ``PRAGMA quick_check`` finds damaged pages;
- its generation is behind its epoch file's (committed transactions were lost: the
  write-ahead log was removed, truncated or overwritten), the database is empty or missing
  while the epoch says it held transactions, it belongs to another journal, or the epoch
  file is missing or damaged;
- a row does not decode (found while loading, ``SqliteJournal.load``).

A *salvage* start (``journal_salvage``) moves the damaged files aside (kept for inspection),
creates a new journal holding every row that can still be read and decoded, and returns a
report of exactly what was lost, which the queue manager logs before serving. A salvage
start on a whole journal changes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import uuid
from typing import Any
from urllib.parse import quote

from alpcrun.errors import ConfigError
from alpcrun.queue_manager.journal_files import Epoch, EpochFile, JournalLock, put_aside, read_epoch
from alpcrun.queue_manager.journal_rows import (
    DECODE,
    INSERT,
    SCHEMA,
    SCHEMA_VERSION,
    SELECT,
    TABLES,
    BadRow,
    session_id_of,
)

_COPY_ROWS = 1000
"""Rows per transaction when a salvage copies the readable rows into the new journal."""


class Damaged(Exception):
    """What is wrong with a journal (the message says it, for the operator)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SqliteOptions:
    """How the journal's database is opened."""

    sync: str = "normal"
    """SQLite's synchronous setting: ``normal`` or ``full``."""
    wal_pages: int = 1000
    """Pages in the write-ahead log that start a checkpoint (``wal_autocheckpoint``)."""
    wal_limit_bytes: int = 64 << 20
    """Size the write-ahead log is cut back to after a checkpoint (``journal_size_limit``)."""


@dataclasses.dataclass(slots=True)
class Opened:
    """An open, checked journal database with its lock and epoch file."""

    db: sqlite3.Connection
    """The connection (autocommit; the journal issues BEGIN/COMMIT itself)."""
    lock: JournalLock
    """Held until the journal is closed."""
    epoch: EpochFile
    """Rewritten after each commit."""
    journal_id: str
    """The journal's random id."""
    generation: int
    """Transactions committed so far."""
    salvage_report: list[str] | None = None
    """Salvage starts only: what was found, kept and lost, one line each (empty: nothing)."""


def connect(path: str, options: SqliteOptions) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with the journal's settings."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if options.sync == 'full' else 'NORMAL'}")
        # Some builds zero every deleted page (secure_delete on): acknowledged results and
        # finished batches would be written a second time, as zeros, and a delete would need
        # as much room on the disk as what it deletes. FAST zeroes what is written anyway.
        db.execute("PRAGMA secure_delete=FAST")
        db.execute(f"PRAGMA wal_autocheckpoint={int(options.wal_pages)}")
        db.execute(f"PRAGMA journal_size_limit={int(options.wal_limit_bytes)}")
    except BaseException:
        db.close()
        raise
    return db


def open_journal(path: str, options: SqliteOptions, *, salvage: bool = False) -> Opened:
    """Lock, open and check the journal at ``path`` (created if missing).

    Raises:
        alpcrun.errors.ConfigError: Locked by another process, unusable, or damaged (and
            ``salvage`` is false); the message names the file and what is wrong.
    """
    lock = JournalLock(path)
    try:
        try:
            db, journal_id, generation = _open_whole(path, options, salvage=salvage)
        except Damaged as damage:
            if not salvage:
                raise refusal(path, str(damage)) from None
            return _salvage(path, str(damage), lock, options)
        return Opened(
            db,
            lock,
            EpochFile(path, Epoch(journal_id, generation)),
            journal_id,
            generation,
            [] if salvage else None,
        )
    except BaseException:
        lock.release()
        raise


def refusal(path: str, why: str) -> ConfigError:
    """The error that refuses the damaged journal at ``path`` (``why`` says what is wrong)."""
    return ConfigError(
        f"journal {path!r} is damaged: {why}. Nothing was changed. To start with what can "
        "still be read, restart once with --journal-salvage (ALPCRUNCH_QM_JOURNAL_SALVAGE=true): "
        "the damaged files are kept aside and every loss is logged"
    )


def _open_whole(
    path: str, options: SqliteOptions, *, salvage: bool
) -> tuple[sqlite3.Connection, str, int]:
    """Open the journal; raise :class:`Damaged` unless it is whole (every row, if ``salvage``).

    The checks read through a read-only connection, which never checkpoints the log into the
    database on closing: a refused journal is left as it was found.
    """
    try:
        epoch = read_epoch(path)
    except ValueError as exc:
        raise Damaged(str(exc)) from None
    if _size(path) == 0:
        if epoch is not None:
            raise Damaged(
                f"the database file is {'empty' if os.path.exists(path) else 'missing'}, but "
                f"its epoch file says journal {epoch.journal_id} had committed "
                f"{epoch.generation} transactions"
            )
        return _created(path, options, uuid.uuid4().hex, 0)
    try:
        with contextlib.closing(_read_only(path)) as ro:
            journal_id, generation, create = _check(path, ro, epoch)
            if salvage:
                _find_bad_row(ro)
    except sqlite3.DatabaseError as exc:
        raise Damaged(f"SQLite cannot read it: {_one_line(str(exc))}") from None
    if create:
        return _created(path, options, journal_id, generation)
    return _connect(path, options), journal_id, generation


def _read_only(path: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, check_same_thread=False)


def _created(
    path: str, options: SqliteOptions, journal_id: str, generation: int
) -> tuple[sqlite3.Connection, str, int]:
    """Open (creating it if missing) and give the journal its tables and identity."""
    db = _connect(path, options)
    try:
        _create(db, journal_id, generation)
    except BaseException:
        db.close()
        raise
    return db, journal_id, generation


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def _connect(path: str, options: SqliteOptions) -> sqlite3.Connection:
    try:
        return connect(path, options)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot use {path!r} as the journal: {exc}") from exc


def _check(path: str, db: sqlite3.Connection, epoch: Epoch | None) -> tuple[str, int, bool]:
    """Raise :class:`Damaged` unless the database is whole.

    Returns its id and generation, and whether it still needs its tables or identity (new,
    or written before epochs existed).
    """
    problems = [_one_line(str(r[0])) for r in db.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise Damaged(f"SQLite's integrity check failed: {'; '.join(problems)}")
    names = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not names:
        if epoch is not None:
            raise Damaged(
                f"the database is empty, but its epoch file says journal {epoch.journal_id} "
                f"had committed {epoch.generation} transactions"
            )
        return uuid.uuid4().hex, 0, True
    missing = [t for t in ("meta", *TABLES) if t not in names]
    if missing:
        raise Damaged(f"it has no {', '.join(missing)} table (is it an alpcrun journal?)")
    meta = {str(k): str(v) for k, v in db.execute("SELECT k, v FROM meta")}
    if meta.get("schema") != str(SCHEMA_VERSION):
        raise ConfigError(
            f"journal {path!r} has schema {meta.get('schema')}, this version reads {SCHEMA_VERSION}"
        )
    journal_id, generation = _check_epoch(path, meta, epoch)
    return journal_id, generation, "journal_id" not in meta


def _check_epoch(path: str, meta: dict[str, str], epoch: Epoch | None) -> tuple[str, int]:
    """Compare the database's identity and generation with the epoch file's; return them."""
    journal_id, generation = meta.get("journal_id"), meta.get("generation")
    if epoch is None:
        if journal_id is None:  # written before epochs existed: nothing to compare with
            return uuid.uuid4().hex, 0
        raise Damaged(
            f"its epoch file {path}.epoch is missing, so it cannot be checked for lost transactions"
        )
    if journal_id is None or generation is None or not generation.isdigit():
        raise Damaged(
            "the database holds no journal id or generation, but its epoch file says it is "
            f"journal {epoch.journal_id} with {epoch.generation} transactions committed"
        )
    if journal_id != epoch.journal_id:
        raise Damaged(
            f"the database is journal {journal_id} but the epoch file is journal "
            f"{epoch.journal_id}'s (files of two journals mixed up?)"
        )
    if int(generation) < epoch.generation:
        raise Damaged(
            f"it lost its last {epoch.generation - int(generation)} committed transactions "
            f"(the database is at generation {generation}, its epoch file at "
            f"{epoch.generation}): the write-ahead log {path}-wal was removed, truncated or "
            "overwritten after they were committed"
        )
    return journal_id, int(generation)


def _create(db: sqlite3.Connection, journal_id: str, generation: int) -> None:
    db.executescript(SCHEMA)
    db.execute("BEGIN")
    db.execute("INSERT OR IGNORE INTO meta VALUES('schema', ?)", (str(SCHEMA_VERSION),))
    db.execute("INSERT OR REPLACE INTO meta VALUES('journal_id', ?)", (journal_id,))
    db.execute("INSERT OR REPLACE INTO meta VALUES('generation', ?)", (str(generation),))
    db.execute("COMMIT")


def _find_bad_row(db: sqlite3.Connection) -> None:
    """Raise :class:`Damaged` at the first row that does not decode."""
    for table in TABLES:
        for row in db.execute(SELECT[table]):
            try:
                DECODE[table](row)
            except BadRow as exc:
                raise Damaged(str(exc)) from None


def _salvage(path: str, damage: str, lock: JournalLock, options: SqliteOptions) -> Opened:
    """Move the damaged journal aside; a new one holds every row that is still readable."""
    report = [f"damage found: {damage}"]
    aside = put_aside(path)
    journal_id = uuid.uuid4().hex
    db = connect(path, options)
    try:
        _create(db, journal_id, 0)
        if _size(aside) == 0:
            report.append("lost: everything (the database file was empty or missing)")
        else:
            report.append(f"kept: the damaged files, moved to {aside} (and its -wal, -shm)")
            report.extend(_copy_rows(aside, db))
    except BaseException:
        db.close()
        raise
    return Opened(db, lock, EpochFile(path, Epoch(journal_id, 0)), journal_id, 0, report)


def _copy_rows(source: str, db: sqlite3.Connection) -> list[str]:
    """Copy every row of ``source`` that reads and decodes into ``db``; say what did not."""
    try:
        old = _read_only(source)
    except sqlite3.Error as exc:
        return [f"lost: everything ({source} cannot be opened: {exc})"]
    lost: list[str] = []
    sessions: set[str] = set()
    try:
        for table in TABLES:
            lost.extend(_copy_table(old, db, table, sessions))
    finally:
        old.close()
    return lost


def _copy_table(
    old: sqlite3.Connection, db: sqlite3.Connection, table: str, sessions: set[str]
) -> list[str]:
    lost: list[str] = []
    rows: list[tuple[Any, ...]] = []
    orphans = copied = 0
    try:
        for row in old.execute(SELECT[table]):
            try:
                DECODE[table](row)
            except BadRow as exc:
                lost.append(f"lost: {exc}")
                continue
            if table == "sessions":
                sessions.add(str(row[0]))
            elif session_id_of(table, row) not in sessions:
                orphans += 1
                continue
            rows.append(row)
            copied += 1
            if len(rows) >= _COPY_ROWS:
                _insert(db, table, rows)
    except sqlite3.DatabaseError as exc:
        lost.append(
            f"lost: table {table} after the first {copied} rows read ({exc}): the rest of the "
            "table is unreadable"
        )
    _insert(db, table, rows)
    if orphans:
        lost.append(f"lost: {orphans} {table} rows of sessions that were lost")
    return lost


def _insert(db: sqlite3.Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        db.execute("BEGIN")
        db.executemany(INSERT[table], rows)
        db.execute("COMMIT")
        rows.clear()


__all__ = ["Damaged", "Opened", "SqliteOptions", "connect", "open_journal", "refusal"]
