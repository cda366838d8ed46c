"""A session's dead-letter queue over the Admin API: list, inspect, resubmit and discard.

A dead letter is a task that failed for good: it used up the session's ``max_attempts``, or
its handler raised ``NonRetryableError``. The queue manager keeps the *input* task (payload
included) with the last attempt's error, so it can be looked at and queued again.
:class:`AsyncDeadLetters` is the asyncio API (its blocking twin, ``DeadLetters``, lives with
the other blocking classes in :mod:`alpcrun.client.sync`); get one from a session
(``session.dead_letter_queue``) or, without the session object, from a client and a session
id (:meth:`AsyncDeadLetters.for_session`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from alpcrun.client._results import reason_name
from alpcrun.proto import (
    AdminStub,
    DeadLetter,
    DiscardDeadLettersRequest,
    GetDeadLetterRequest,
    ListDeadLettersRequest,
    ResubmitDeadLettersRequest,
)

if TYPE_CHECKING:
    from alpcrun.client._rpc import Connection

DEFAULT_PAGE = 100
"""Letters per page when no limit is given (the server's default)."""
MAX_PAGE = 10_000
"""Most letters the server returns in one page."""


@dataclass(frozen=True, slots=True)
class DeadLetterInfo:
    """One dead-lettered task: why it failed, how often it was tried, and its input."""

    session_id: str
    """The session it belongs to."""
    task_id: str
    """The task's id (unique within the session; it keeps it when resubmitted)."""
    batch_id: str
    """The client batch it came in."""
    reason: str
    """Why the last attempt failed: ``"error"`` (the handler raised), ``"worker_lost"`` (the
    worker disconnected or stopped heartbeating), ``"timeout"`` (the attempt ran past the
    session's ``task_timeout``) or ``"non_retryable"`` (the handler raised
    ``NonRetryableError``; never retried)."""
    error_type: str
    """Type name of the last error (for Python workers, the exception class), or ``""``."""
    message: str
    """The last error's text."""
    attempts: int
    """Attempts made."""
    dead_at: datetime
    """When it was dead-lettered (UTC)."""
    payload: bytes | None
    """The task's input bytes; ``None`` when they were not asked for (``include_payload``)."""

    @classmethod
    def from_proto(cls, letter: DeadLetter, *, with_payload: bool) -> DeadLetterInfo:
        """Build the value from an Admin API ``DeadLetter`` message.

        Args:
            letter: The message.
            with_payload: Whether the message carries the payload (``None`` otherwise).

        Returns:
            The dead letter.
        """
        task = letter.task
        error = task.error
        return cls(
            session_id=letter.session_id,
            task_id=task.id,
            batch_id=letter.batch_id,
            reason=reason_name(error.reason),
            error_type=error.type,
            message=error.message,
            attempts=task.attempt,
            dead_at=letter.dead_at.ToDatetime(tzinfo=UTC),
            payload=task.payload if with_payload else None,
        )


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    """One page of a session's dead letters, oldest first."""

    letters: tuple[DeadLetterInfo, ...]
    """The letters of this page."""
    total: int
    """Dead letters the session holds in all (not only on this page)."""
    next_after: str
    """Pass as ``after`` to read the next page; ``""`` when this page is the last."""


@dataclass(frozen=True, slots=True)
class DeadLetterOutcome:
    """What a resubmit or discard did."""

    count: int
    """Dead letters resubmitted or discarded."""
    not_found: tuple[str, ...]
    """Named task ids that were not dead letters of the session (already resubmitted,
    discarded, never failed, or unknown)."""


class ConnectionSource(Protocol):
    """What :meth:`AsyncDeadLetters.for_session` needs of a client: its connection."""

    def _connection(self) -> Connection:
        """The client's connection."""
        ...


def named_task_ids(task_ids: Iterable[str] | None) -> tuple[str, ...] | None:
    """The ids to send (``None``: every letter), refusing a lone string."""
    if task_ids is None:
        return None
    if isinstance(task_ids, str | bytes):
        raise TypeError("task_ids must be an iterable of task ids, not a single string")
    return tuple(task_ids)


class AsyncDeadLetters:
    """The dead-letter queue of one session (asyncio).

    ::

        dlq = session.dead_letter_queue
        page = await dlq.list(limit=50)
        letter = await dlq.get(page.letters[0].task_id)
        await dlq.resubmit([letter.task_id], reset_attempts=True)

    Every call is one Admin API request; nothing is cached. Calls wait up to the client's
    ``reconnect_timeout`` for the queue manager to be reachable; reads are sent again after
    a dropped connection, resubmit and discard are not. Results of resubmitted tasks come back
    on the session's client stream: a client that attaches to the session later gets them
    from ``unclaimed_results()``.

    Args:
        conn: The client's connection.
        session_id: The session whose letters these are.
    """

    def __init__(self, conn: Connection, session_id: str) -> None:
        self._conn = conn
        self._stub = AdminStub(conn.channel)
        self.session_id = session_id

    @classmethod
    def for_session(cls, client: ConnectionSource, session_id: str) -> AsyncDeadLetters:
        """The dead-letter queue of a session known by id, without attaching to it.

        Args:
            client: An open :class:`~alpcrun.client.AsyncClient` (its connection is used).
            session_id: The session's id; an unknown id fails on the first call.

        Returns:
            The session's dead-letter queue.
        """
        return cls(client._connection(), session_id)

    async def list(
        self, *, limit: int = DEFAULT_PAGE, after: str = "", include_payload: bool = False
    ) -> DeadLetterPage:
        """Read one page of dead letters, oldest first.

        Args:
            limit: Most letters to return, 1 to 10,000.
            after: Start after this task id (the previous page's ``next_after``).
            include_payload: Also return the input payloads.

        Returns:
            The page; its ``next_after`` is ``""`` on the last page.

        Raises:
            ValueError: ``limit`` is below 1.
            SessionNotFound: The session is unknown (or was reaped).
            InvalidArgument: ``limit`` is over 10,000.
            AlpcrunError: The call failed (the subclass matches the status code).
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        request = ListDeadLettersRequest(
            session_id=self.session_id, limit=limit, after=after, include_payload=include_payload
        )
        reply = await self._conn.unary(self._stub.ListDeadLetters, request)
        return DeadLetterPage(
            letters=tuple(
                DeadLetterInfo.from_proto(letter, with_payload=include_payload)
                for letter in reply.letters
            ),
            total=reply.total,
            next_after=reply.next_after,
        )

    async def pages(
        self, *, page_size: int = DEFAULT_PAGE, include_payload: bool = False
    ) -> AsyncIterator[DeadLetterPage]:
        """Iterate over every page of dead letters, oldest first.

        Letters resubmitted or discarded meanwhile may be skipped; letters added meanwhile
        come on later pages.

        Args:
            page_size: Letters per page, 1 to 10,000.
            include_payload: Also return the input payloads.

        Yields:
            Each page in turn (an empty queue gives one empty page).
        """
        after = ""
        while True:
            page = await self.list(limit=page_size, after=after, include_payload=include_payload)
            yield page
            if not page.next_after:
                return
            after = page.next_after

    async def get(self, task_id: str) -> DeadLetterInfo:
        """Read one dead letter, with its payload.

        Args:
            task_id: The dead-lettered task's id.

        Returns:
            The letter.

        Raises:
            NotFound: The task is not a dead letter of the session (``field == "task_id"``).
            SessionNotFound: The session is unknown.
        """
        request = GetDeadLetterRequest(session_id=self.session_id, task_id=task_id)
        letter = await self._conn.unary(self._stub.GetDeadLetter, request)
        return DeadLetterInfo.from_proto(letter, with_payload=True)

    async def resubmit(
        self, task_ids: Iterable[str] | None = None, *, reset_attempts: bool = False
    ) -> DeadLetterOutcome:
        """Queue dead letters again; they leave the dead-letter queue.

        The tasks keep their ids and go back into the session's queue in new batches.
        Without ``reset_attempts`` a task keeps its attempt count but gets at least one more
        attempt (exactly one if it had used up ``max_attempts``); with it, it gets the
        session's full ``max_attempts`` again.

        Args:
            task_ids: The tasks to resubmit; ``None`` resubmits every dead letter. An empty
                iterable resubmits nothing (no call is made).
            reset_attempts: Start each task's attempt count again from zero.

        Returns:
            How many were resubmitted, and the named ids that were not dead letters.

        Raises:
            TypeError: ``task_ids`` is a single string.
            SessionClosed: The session is closed.
            SessionNotFound: The session is unknown.
        """
        ids = named_task_ids(task_ids)
        if ids == ():
            return DeadLetterOutcome(0, ())
        request = ResubmitDeadLettersRequest(
            session_id=self.session_id, task_ids=ids or (), reset_attempts=reset_attempts
        )
        reply = await self._conn.unary(self._stub.ResubmitDeadLetters, request, resend=False)
        return DeadLetterOutcome(reply.count, tuple(reply.not_found))

    async def discard(self, task_ids: Iterable[str] | None = None) -> DeadLetterOutcome:
        """Drop dead letters for good.

        Args:
            task_ids: The tasks to discard; ``None`` discards every dead letter. An empty
                iterable discards nothing (no call is made).

        Returns:
            How many were discarded, and the named ids that were not dead letters.

        Raises:
            TypeError: ``task_ids`` is a single string.
            SessionNotFound: The session is unknown.
        """
        ids = named_task_ids(task_ids)
        if ids == ():
            return DeadLetterOutcome(0, ())
        request = DiscardDeadLettersRequest(session_id=self.session_id, task_ids=ids or ())
        reply = await self._conn.unary(self._stub.DiscardDeadLetters, request, resend=False)
        return DeadLetterOutcome(reply.count, tuple(reply.not_found))

    def __repr__(self) -> str:
        return f"<AsyncDeadLetters of session {self.session_id}>"


__all__ = [
    "AsyncDeadLetters",
    "DeadLetterInfo",
    "DeadLetterOutcome",
    "DeadLetterPage",
]
