"""Result value types of the client SDK: TaskResult, Progress and SessionStatistics."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from alpcrun.errors import TaskFailed
from alpcrun.proto import ErrorReason, PayloadRef, TaskError

logger = logging.getLogger(__name__)

_REASON_PREFIX = "ERROR_REASON_"


def reason_name(reason: int) -> str:
    """Short lower-case name of an ``ErrorReason`` value (``"worker_lost"``, ...).

    Args:
        reason: The enum value from a ``TaskError``.

    Returns:
        ``"error"``, ``"worker_lost"``, ``"timeout"`` or ``"non_retryable"``; unspecified and
        unknown values read as ``"error"``.
    """
    if reason == ErrorReason.ERROR_REASON_UNSPECIFIED:
        return "error"
    try:
        name = ErrorReason.Name(reason)  # type: ignore[arg-type]
    except ValueError:
        return "error"
    return name.removeprefix(_REASON_PREFIX).lower()


def task_failed(task_id: str, error: TaskError) -> TaskFailed:
    """Build the :class:`~alpcrun.errors.TaskFailed` that stands for a failed task.

    Args:
        task_id: The failed task's id.
        error: The ``TaskError`` carried by the task's result.

    Returns:
        The exception, not raised.
    """
    return TaskFailed(
        error.message or "task failed",
        task_id=task_id,
        reason=reason_name(error.reason),
        error_type=error.type,
    )


class TaskResult:
    """The outcome of one task: its output bytes, or the error it failed with.

    Attributes:
        index: Position of the task's payload in the input of ``map`` (``-1`` for results
            that did not come from a map, such as dead letters or unclaimed results).
        task_id: The task's id, unique within the session.
        payload: The task's output bytes (empty when the task failed).
        error: The ``TaskError`` the task failed with, or ``None`` on success.
        refs: References to payloads the task produced (``task.put`` in the worker), to open
            with ``session.open``; empty for most tasks.
    """

    __slots__ = ("error", "index", "payload", "refs", "task_id")

    def __init__(
        self,
        index: int,
        task_id: str,
        payload: bytes,
        error: TaskError | None,
        refs: tuple[PayloadRef, ...] = (),
    ) -> None:
        self.index = index
        self.task_id = task_id
        self.payload = payload
        self.error = error
        self.refs = refs

    @property
    def ok(self) -> bool:
        """Whether the task succeeded."""
        return self.error is None

    def value(self) -> bytes:
        """Return the output bytes, or raise if the task failed.

        Returns:
            The task's output payload.

        Raises:
            TaskFailed: The task was dead-lettered.
        """
        if self.error is not None:
            raise task_failed(self.task_id, self.error)
        return self.payload

    def __repr__(self) -> str:
        state = "ok" if self.error is None else f"failed: {self.error.message!r}"
        return f"TaskResult(index={self.index}, task_id={self.task_id!r}, {state})"


@dataclass(frozen=True, slots=True)
class Progress:
    """Counts of one ``map`` call, passed to its ``progress`` callback."""

    submitted: int
    """Tasks handed to the session so far."""
    completed: int
    """Tasks that succeeded so far."""
    failed: int
    """Tasks that failed (were dead-lettered) so far."""


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    """Task counters of one :class:`~alpcrun.client.AsyncSession` object."""

    submitted: int
    """Tasks submitted through this session object."""
    completed: int
    """Results received that succeeded."""
    failed: int
    """Results received that carried an error."""
    pending: int
    """Tasks submitted and not answered yet (unsent ones included)."""
    reconnects: int = 0
    """Times the session's stream was re-attached after a lost connection."""
    duplicate_messages: int = 0
    """Result messages the queue manager wrote again after a re-attach, dropped by ``seq``."""
    duplicate_tasks: int = 0
    """Task results dropped because the task's result had already been delivered."""


class Counters:
    """Mutable counters shared by a session and its streams (plain ints, no locking)."""

    __slots__ = ("completed", "duplicate_tasks", "failed", "reconnects", "submitted")

    def __init__(self) -> None:
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.reconnects = 0
        self.duplicate_tasks = 0


class Unclaimed:
    """A bounded buffer of results no handle or map of this process is waiting for.

    Results of tasks submitted by an earlier client of the session (delivered after
    ``attach_session``) land here. When the buffer is full the oldest result is dropped; a
    failed task stays in the session's dead-letter queue regardless.
    """

    __slots__ = ("_items", "arrived", "dropped")

    def __init__(self, maxlen: int) -> None:
        self._items: deque[TaskResult] = deque(maxlen=maxlen)
        self.arrived = asyncio.Event()
        self.dropped = 0

    def push(self, result: TaskResult) -> None:
        """Append a result, dropping the oldest one when full."""
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
            if self.dropped == 1:
                logger.warning(
                    "unclaimed result buffer full (%d): dropping the oldest results; "
                    "call unclaimed_results() to collect them",
                    self._items.maxlen,
                )
        self._items.append(result)
        self.arrived.set()

    def take(self) -> list[TaskResult]:
        """Remove and return every buffered result."""
        out = list(self._items)
        self._items.clear()
        self.arrived.clear()
        return out

    def __len__(self) -> int:
        return len(self._items)
