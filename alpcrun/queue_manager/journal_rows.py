"""The journal's tables: schema, rows written from the core's records, rows read back.

Every row read back is decoded and checked here, and a row that does not decode is a
:class:`BadRow` naming its table and key, so a damaged journal is reported row by row
rather than as a bare ``sqlite3`` or protobuf traceback.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from alpcrun.proto import Batch, Task
from alpcrun.queue_manager.attributes import SessionConfig
from alpcrun.queue_manager.deadletters import DeadLetterEntry
from alpcrun.queue_manager.records import SessionRecord

SCHEMA_VERSION = 1
SCHEMA = """
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
TABLES = ("sessions", "batches", "results", "letters")
"""The data tables, in the order they are read (sessions first: the others belong to them)."""
SELECT = {
    "sessions": "SELECT * FROM sessions ORDER BY rowid",
    "batches": "SELECT * FROM batches ORDER BY key",
    "results": "SELECT * FROM results ORDER BY session_id, seq",
    "letters": "SELECT * FROM letters ORDER BY rowid",
}
"""How each table is read back, in a stable order."""
INSERT = {
    "sessions": "INSERT OR REPLACE INTO sessions VALUES(?,?,?,?,?,?,?)",
    "batches": "INSERT OR REPLACE INTO batches VALUES(?,?,?,?)",
    "results": "INSERT OR REPLACE INTO results VALUES(?,?,?)",
    "letters": "INSERT OR REPLACE INTO letters VALUES(?,?,?,?,?,?,?,?)",
}
"""How a row of each table is written."""
COUNTERS = ("submitted", "completed", "failed", "discarded", "retried", "timed_out",
            "duplicate_results", "duplicate_batches", "preempted")  # fmt: skip
"""Session counters kept in ``sessions.counters``, in this order."""


class BadRow(Exception):
    """A journal row that does not decode; the message names the table and the row."""


@dataclasses.dataclass(frozen=True, slots=True)
class SessionRow:
    """A decoded ``sessions`` row."""

    id: str
    """Session id."""
    config: SessionConfig
    """Its attributes."""
    state: int
    """SessionState value."""
    created_at: float
    """Wall-clock creation time."""
    close_reason: str
    """Why it was closed (empty while open)."""
    result_seq: int
    """Number of its last result batch."""
    counters: list[int]
    """Values of :data:`COUNTERS`."""


def config_json(config: SessionConfig) -> str:
    """A session's attributes as the JSON kept in ``sessions.config``."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}
    return json.dumps(fields)


def session_row(r: SessionRecord) -> tuple[Any, ...]:
    """The ``sessions`` row of a record (its current state)."""
    return (
        r.id, config_json(r.config), r.state, r.created_at, r.close_reason, r.results.seq,
        json.dumps([getattr(r, c) for c in COUNTERS]),
    )  # fmt: skip


def letter_row(sid: str, item: DeadLetterEntry | str) -> tuple[Any, ...]:
    """A ``letters`` row to insert (an entry), or the key of one to delete (a task id)."""
    if isinstance(item, str):
        return (sid, item)
    e = item
    return (
        sid, e.task.id, e.batch_id, e.task.SerializeToString(), e.dead_at, e.priority,
        int(e.use_shared_data), e.shared_level,
    )  # fmt: skip


def _show(row: tuple[Any, ...], index: int) -> str:
    """Column ``index`` of a row that may be malformed, for a message (at most 80 chars)."""
    text = repr(row[index]) if len(row) > index else "(missing)"
    return text if len(text) <= 80 else f"{text[:77]}..."


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(what)


def _decoding(table: str, ident: Callable[[], str]) -> Callable[[Exception], BadRow]:
    def bad(exc: Exception) -> BadRow:
        return BadRow(f"{table} row {ident()}: {type(exc).__name__}: {exc}")

    return bad


def decode_session(row: tuple[Any, ...]) -> SessionRow:
    """Decode a ``sessions`` row. Raises :class:`BadRow`."""
    bad = _decoding("sessions", lambda: f"id={_show(row, 0)}")
    try:
        sid, config, state, created, reason, seq, counters = row
        _need(isinstance(sid, str) and bool(sid), "the id is not a string")
        data = json.loads(config)
        _need(isinstance(data, dict), "the config is not a JSON object")
        data["tags"] = tuple(data.get("tags", ()))
        values = json.loads(counters)
        _need(
            isinstance(values, list) and all(type(v) is int for v in values),
            "the counters are not a list of integers",
        )
        _need(type(state) is int and type(seq) is int, "state or result_seq is not an integer")
        _need(isinstance(created, int | float) and isinstance(reason, str), "bad created_at")
        return SessionRow(sid, SessionConfig(**data), state, float(created), reason, seq, values)
    except Exception as exc:  # any way a row fails to decode is the same damage
        raise bad(exc) from exc


def decode_batch(row: tuple[Any, ...]) -> tuple[int, str, Batch, int, int]:
    """Decode a ``batches`` row into key, session id, batch, attempts, bytes. Raises BadRow."""
    bad = _decoding("batches", lambda: f"key={_show(row, 0)} (session {_show(row, 1)})")
    try:
        key, sid, blob, attempts = row
        _need(type(key) is int and isinstance(sid, str), "key or session_id has the wrong type")
        _need(isinstance(blob, bytes) and type(attempts) is int, "batch or attempts: wrong type")
        return key, sid, Batch.FromString(blob), attempts, len(blob)
    except Exception as exc:  # any way a row fails to decode is the same damage
        raise bad(exc) from exc


def decode_result(row: tuple[Any, ...]) -> tuple[str, int, Batch]:
    """Decode a ``results`` row into session id, sequence number, batch. Raises BadRow."""
    bad = _decoding("results", lambda: f"seq={_show(row, 1)} (session {_show(row, 0)})")
    try:
        sid, seq, blob = row
        _need(isinstance(sid, str) and type(seq) is int, "session_id or seq has the wrong type")
        _need(isinstance(blob, bytes), "the batch is not a blob")
        return sid, seq, Batch.FromString(blob)
    except Exception as exc:  # any way a row fails to decode is the same damage
        raise bad(exc) from exc


def decode_letter(row: tuple[Any, ...]) -> tuple[str, DeadLetterEntry]:
    """Decode a ``letters`` row into session id and entry. Raises BadRow."""
    bad = _decoding("letters", lambda: f"task_id={_show(row, 1)} (session {_show(row, 0)})")
    try:
        sid, _tid, batch_id, blob, dead_at, priority, shared, level = row
        _need(isinstance(sid, str) and isinstance(batch_id, str), "ids have the wrong type")
        _need(isinstance(blob, bytes), "the task is not a blob")
        _need(isinstance(dead_at, int | float), "dead_at is not a number")
        _need(type(priority) is int and type(level) is int, "priority or level: wrong type")
        task = Task.FromString(blob)
        return sid, DeadLetterEntry(task, batch_id, float(dead_at), priority, bool(shared), level)
    except Exception as exc:  # any way a row fails to decode is the same damage
        raise bad(exc) from exc


DECODE: dict[str, Callable[[tuple[Any, ...]], object]] = {
    "sessions": decode_session,
    "batches": decode_batch,
    "results": decode_result,
    "letters": decode_letter,
}
"""The decoder of each table."""


def session_id_of(table: str, row: tuple[Any, ...]) -> str:
    """The session a row belongs to (its id for ``sessions``)."""
    return str(row[1] if table == "batches" else row[0])


__all__ = [
    "COUNTERS",
    "DECODE",
    "INSERT",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SELECT",
    "TABLES",
    "BadRow",
    "SessionRow",
    "config_json",
    "decode_batch",
    "decode_letter",
    "decode_result",
    "decode_session",
    "letter_row",
    "session_id_of",
    "session_row",
]
