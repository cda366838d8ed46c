"""The session table: sessions by id, their lifecycle, their client stream and their queues.

A session is created active, turns idle after ``idle_timeout`` without client activity or
work, and is closed by CloseSession, by its client's exit (``cleanup_on_client_exit``) or by
expiry (no client, no work, no activity for ``session_expiry``, or ``unused_session_expiry``
for a session that was never given a task). A closed session stays visible for
``session_retention`` (longer while batches of it are still in flight), then is forgotten.
Client batches enter a session's queue here; sending them on to workers is
:mod:`alpcrun.queue_manager.dispatch`. The table enforces the session quotas
(:mod:`alpcrun.queue_manager.quotas`) and keeps the ids in order for paged listings; the
tick sees busy sessions and quiet ones that are due (:mod:`alpcrun.queue_manager.timers`).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator

from ulid import ULID

from alpcrun._clock import Clock
from alpcrun.constants import MAX_ID_LENGTH, MD_SESSION_ID
from alpcrun.errors import InvalidArgument, SessionClosed, SessionNotFound
from alpcrun.proto import Batch, SessionAttributes, SessionState
from alpcrun.queue_manager.attributes import apply, resolve_new
from alpcrun.queue_manager.ledger import Ledger
from alpcrun.queue_manager.limits import CoreLimits
from alpcrun.queue_manager.outlets import ClientOutlet
from alpcrun.queue_manager.queues import QueuedBatch, TaskQueue
from alpcrun.queue_manager.quotas import (
    SessionOwners,
    check_label_bytes,
    check_letter_room,
    key_digest,
)
from alpcrun.queue_manager.records import SessionRecord
from alpcrun.queue_manager.timers import SessionTimers

_IDLE = SessionState.SESSION_STATE_IDLE


class SessionTable:
    """Sessions by id, from creation to being forgotten.

    Args:
        limits: Default queue type, expiry and retention.
        clock: Creation and activity times.
        ledger: Journals session changes and accepted batches.
    """

    __slots__ = ("_clock", "_ids", "_ledger", "_limits", "_owners", "_seq", "sessions", "timers")

    def __init__(self, *, limits: CoreLimits, clock: Clock, ledger: Ledger) -> None:
        self._limits = limits
        self._clock = clock
        self._ledger = ledger
        self._seq = itertools.count(1)
        self._ids: list[str] = []
        self._owners = SessionOwners()
        self.sessions: dict[str, SessionRecord] = {}
        """Every session, open or closed and not yet forgotten, by id."""
        self.timers = SessionTimers()
        """Busy sessions, and when to look at each quiet one again."""

    def create(self, attrs: SessionAttributes, api_key: str = "") -> SessionRecord:
        """Validate attributes and create a session with a new ULID.

        Raises:
            InvalidArgument: An attribute is invalid (the field is named).
            ResourceExhausted: ``max_sessions``, or ``max_sessions_per_key`` for ``api_key``
                (the key the call presented), is reached.
        """
        config = resolve_new(attrs, default_fifo=self._limits.default_fifo)
        check_label_bytes(config, self._limits.max_label_bytes)
        owner = key_digest(api_key)
        self._owners.admit(owner, len(self.sessions), self._limits)
        sid = str(ULID())
        record = SessionRecord(
            id=sid,
            config=config,
            created_at=self._clock.time(),
            last_activity=self._clock.monotonic(),
            queue=TaskQueue(fifo=config.fifo),
            seq=next(self._seq),
        )
        if self._ledger.durable:
            record.results.limit = 0  # results wait until the journal has them
        self.sessions[sid] = record
        self._owners.add(sid, owner)
        bisect.insort(self._ids, sid)
        self.timers.arm(record, self._next_due(record))
        self._ledger.session_changed(record)
        return record

    def adopt(self, record: SessionRecord) -> None:
        """Take in a session recovered from the journal (before serving)."""
        self.sessions[record.id] = record
        record.seq = next(self._seq)
        bisect.insort(self._ids, record.id)
        self.timers.wake(record)  # the first tick sorts it out
        self._ledger.session_adopted(record)

    def busy(self) -> list[SessionRecord]:
        """Sessions with work or bound workers, in creation order (what the scheduler plans)."""
        return sorted(self.timers.busy.values(), key=_creation_order)

    def after(self, session_id: str) -> Iterator[SessionRecord]:
        """Sessions in id order (creation order, to the millisecond), from after ``session_id``.

        The table must not change while the iterator is in use.
        """
        ids, sessions = self._ids, self.sessions
        for i in range(bisect.bisect_right(ids, session_id), len(ids)):
            yield sessions[ids[i]]

    def get(self, session_id: str, *, field: str = "session_id") -> SessionRecord:
        """The session with this id, or SessionNotFound naming ``field``, where the id was."""
        try:
            return self.sessions[session_id]
        except KeyError:
            raise SessionNotFound(
                f"session {session_id[:MAX_ID_LENGTH]!r} not found", field=field
            ) from None

    def open(self, session_id: str, *, field: str = "session_id") -> SessionRecord:
        """The session with this id; SessionClosed if it is closed, SessionNotFound if unknown."""
        record = self.get(session_id, field=field)
        if record.closed:
            raise SessionClosed(f"session {session_id} is closed")
        return record

    def update(self, session_id: str, attrs: SessionAttributes) -> SessionRecord:
        """Apply changed attributes live (the queue type and workers' windows included)."""
        record = self.open(session_id)
        config = apply(record.config, attrs)
        check_label_bytes(config, self._limits.max_label_bytes)
        record.config = config
        self._ledger.session_changed(record)
        record.queue.set_fifo(config.fifo)
        for w in record.workers.values():
            w.window = config.max_inflight_batches_per_worker
        record.touch(self._clock.monotonic())
        self.timers.arm(record, self._next_due(record))
        return record

    def close(self, record: SessionRecord, reason: str) -> int:
        """Close an open session and discard its queued tasks; return the tasks discarded.

        Its workers and client stream are the caller's to end.
        """
        record.state = SessionState.SESSION_STATE_CLOSED
        record.close_reason = reason
        record.closed_at = self._clock.monotonic()
        drained = record.queue.drain() + [item for _, _, item in record.delayed]
        record.delayed.clear()
        for item in drained:
            self._ledger.finished(item)
        discarded = sum(item.ntasks for item in drained) + record.inflight_tasks
        record.discarded += discarded
        self.timers.arm(record, self._next_due(record))
        self._ledger.session_changed(record)
        return discarded

    def attach(self, session_id: str, outlet: ClientOutlet) -> SessionRecord:
        """Attach a client stream; a previously attached one is superseded.

        Result batches written to earlier streams and not acknowledged are queued again.
        """
        record = self.open(session_id, field=MD_SESSION_ID)  # the stream's metadata named it
        old, record.client = record.client, outlet
        if old is not None:
            old.close(superseded=True)
        record.touch(self._clock.monotonic())
        self.timers.arm(record, self._next_due(record))
        record.results.rewind()
        if record.results.undelivered:
            outlet.results_ready()
        return record

    def detach(self, session_id: str, outlet: ClientOutlet) -> SessionRecord | None:
        """The client stream ended; return the session if it asked to close on client exit."""
        record = self.sessions.get(session_id)
        if record is None or record.client is not outlet:
            return None
        record.client = None
        record.touch(self._clock.monotonic())
        self.timers.arm(record, self._next_due(record))
        if record.config.cleanup_on_client_exit and not record.closed:
            return record
        return None

    def accept(self, record: SessionRecord, batch: Batch, nbytes: int) -> bool:
        """Queue a client batch (validated; the tasks are not unpacked); False for a resend.

        A batch whose id the session still knows (not finished, or its last results not yet
        acknowledged) is a resend after a reconnect: it is ignored and counted. ``nbytes`` is
        its serialized size, or -1 to measure it.
        """
        if record.closed:
            raise SessionClosed(f"session {record.id} is closed")
        bid = batch.id
        if not bid or len(bid) > MAX_ID_LENGTH:
            raise InvalidArgument(f"required, 1..{MAX_ID_LENGTH} chars", field="batch.id")
        if batch.session_id and batch.session_id != record.id:
            raise InvalidArgument("does not match the stream's sessionid", field="batch.session_id")
        ntasks = len(batch.tasks)
        if ntasks == 0:
            raise InvalidArgument("a batch needs at least one task", field="batch.tasks")
        if bid in record.known:
            record.duplicate_batches += 1
            self._ledger.counters.duplicate_batches += 1
            return False
        check_letter_room(record, self._ledger.counters, self._limits)
        ids = [task.id for task in batch.tasks]
        if len(set(ids)) != ntasks or not all(ids) or max(map(len, ids)) > MAX_ID_LENGTH:
            raise _bad_task_id(ids)
        if batch.dispatch_id:
            batch.dispatch_id = 0
        batch.session_id = record.id
        if nbytes < 0:
            nbytes = batch.ByteSize()
        item = QueuedBatch(batch, ntasks, nbytes, batch.priority, self._ledger.next_key())
        record.known[bid] = ntasks
        record.queue.push(item)
        self.timers.wake(record)
        self._ledger.accepted(record, item)
        record.touch(self._clock.monotonic())
        return True

    def sweep(self, now: float) -> list[SessionRecord]:
        """The open sessions the tick must look at: busy ones, and quiet ones now due.

        Busy sessions left without work and workers turn quiet (returned this once more);
        closed sessions past their retention, with nothing in flight, are forgotten.
        """
        timers = self.timers
        out = []
        for record in list(timers.busy.values()):
            if record.has_work or record.workers:  # a closed one too: kept while in flight
                if not record.closed:
                    out.append(record)
                continue
            timers.quiet(record, self._next_due(record))
            if not record.closed:
                out.append(record)
        retention = self._limits.session_retention_s
        for record in timers.due(now):
            if not record.closed:
                out.append(record)
            elif now - record.closed_at >= retention:
                self._forget(record)
            else:
                timers.arm(record, self._next_due(record))
        return out

    def _forget(self, record: SessionRecord) -> None:
        sid = record.id
        del self.sessions[sid]
        del self._ids[bisect.bisect_left(self._ids, sid)]
        self._owners.remove(sid)
        self.timers.forget(sid)
        self._ledger.session_removed(record)

    def idle_check(self, record: SessionRecord, now: float) -> bool:
        """For a session without work: mark it idle once idle; True once it has expired."""
        idle_for = now - record.last_activity
        expiry = self._expiry(record)
        if expiry and record.client is None and idle_for >= expiry:
            return True
        if idle_for >= record.config.idle_timeout_s:
            record.state = SessionState.SESSION_STATE_IDLE
        if record.id not in self.timers.busy:
            self.timers.arm(record, self._next_due(record))
        return False

    def _expiry(self, record: SessionRecord) -> float:
        """Seconds without client, work or activity after which the session expires (0: never)."""
        limits = self._limits
        expiry, unused = limits.session_expiry_s, limits.unused_session_expiry_s
        if record.submitted == 0 and 0 < unused < expiry:
            return unused
        return expiry

    def _next_due(self, record: SessionRecord) -> float | None:
        """When a quiet session next needs the tick: to turn idle, expire, or be forgotten."""
        if record.closed:
            return record.closed_at + self._limits.session_retention_s
        due = None
        if record.state != _IDLE:
            due = record.last_activity + record.config.idle_timeout_s
        expiry = self._expiry(record)
        if expiry and record.client is None:
            at = record.last_activity + expiry
            due = at if due is None else min(due, at)
        return due


def _creation_order(record: SessionRecord) -> int:
    return record.seq


def _bad_task_id(ids: list[str]) -> InvalidArgument:
    """The error naming the first empty, over-long or repeated task id of a batch."""
    seen: dict[str, int] = {}
    for index, tid in enumerate(ids):
        field = f"batch.tasks[{index}].id"
        if not tid:
            return InvalidArgument(f"required, 1..{MAX_ID_LENGTH} chars", field=field)
        if len(tid) > MAX_ID_LENGTH:
            return InvalidArgument(
                f"{len(tid)} characters long; at most {MAX_ID_LENGTH}", field=field
            )
        first = seen.setdefault(tid, index)
        if first != index:
            return InvalidArgument(
                f"{tid!r} repeats batch.tasks[{first}].id; task ids are unique within a batch",
                field=field,
            )
    raise AssertionError("no bad task id")  # pragma: no cover - the caller found one


__all__ = ["SessionTable"]
