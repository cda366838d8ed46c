"""Per-task context handed to ``Worker.handle()``, and :func:`current` to reach it anywhere.

A :class:`TaskContext` is built once per task on the hot path (tens of thousands a second),
so it is a two-slot wrapper around the protobuf ``Task`` and a :class:`BatchInfo` shared by
every task of the batch, rather than a dataclass that copies fields.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from alpcrun.proto import Task


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """What every task of one batch shares; built once per batch."""

    batch_id: str
    """The batch's id."""
    session_id: str
    """The session the batch belongs to."""
    worker_id: str
    """The server-assigned id of the worker running the batch."""
    shared: bytes | None = None
    """The session's shared data at the batch's required level (None: the batch uses none)."""
    shared_level: int = 0
    """The shared-data level of ``shared``."""


class TaskContext:
    """Read-only view of one task, passed to ``Worker.handle()``.

    Instances are immutable by contract: every field is a read-only property. Build one with
    ``TaskContext(task, info)``; user code normally only receives them.
    """

    __slots__ = ("_info", "_task")

    def __init__(self, task: Task, info: BatchInfo) -> None:
        self._task = task
        self._info = info

    @property
    def task_id(self) -> str:
        """The client-chosen task id, unique within the session."""
        return self._task.id

    @property
    def payload(self) -> bytes:
        """The task's input bytes."""
        return self._task.payload

    @property
    def attempt(self) -> int:
        """The 1-based attempt number of this run of the task."""
        return self._task.attempt or 1

    @property
    def session_id(self) -> str:
        """The session the task belongs to."""
        return self._info.session_id

    @property
    def worker_id(self) -> str:
        """The server-assigned id of the worker running the task."""
        return self._info.worker_id

    @property
    def batch_id(self) -> str:
        """The id of the batch the task arrived in."""
        return self._info.batch_id

    def shared_data(self) -> bytes:
        """The session's shared data, at the level the task's batch requires.

        Fetched once per worker process and level (through the node agent, or the central
        cache when the node agent cannot be reached) before the batch's tasks run, so this
        call never blocks.

        Raises:
            LookupError: The task's batch does not use shared data (the session set none
                before the task was submitted).
        """
        shared = self._info.shared
        if shared is None:
            raise LookupError(
                f"task {self.task_id} has no shared data: its batch was not marked "
                "use_shared_data (call session.set_shared_data before submitting)"
            )
        return shared

    @property
    def shared_data_level(self) -> int:
        """The shared-data update level the task's batch requires (0: none)."""
        return self._info.shared_level

    @property
    def deadline(self) -> float | None:
        """Absolute ``time.monotonic()`` deadline of this attempt, or None without a timeout.

        Set when the session has a ``task_timeout``: the moment ``handle()`` started plus
        the timeout. A long handler can check ``time.monotonic() < task.deadline`` to stop
        early, e.g. between iterations.
        """
        return None

    def __repr__(self) -> str:
        return (
            f"TaskContext(task_id={self.task_id!r}, session_id={self.session_id!r}, "
            f"attempt={self.attempt}, payload=<{len(self._task.payload)} bytes>)"
        )


class _TimedTaskContext(TaskContext):
    """A :class:`TaskContext` whose attempt has a deadline (the session has a task_timeout).

    A subclass, so that contexts without a timeout (the common, hot case) stay two slots.
    """

    __slots__ = ("_deadline",)

    def __init__(self, task: Task, info: BatchInfo, deadline: float) -> None:
        self._task = task
        self._info = info
        self._deadline = deadline

    @property
    def deadline(self) -> float:
        """Absolute ``time.monotonic()`` deadline of this attempt."""
        return self._deadline


_current: ContextVar[TaskContext] = ContextVar("workers_sdk_current_task")


def current() -> TaskContext:
    """Return the context of the task whose ``handle()`` is running.

    Works in async handlers and in the executor thread of sync handlers, including code they
    call, without passing the context around.

    Raises:
        RuntimeError: Called outside a running ``handle()``.
    """
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("workers_sdk.current() called outside a running handle()") from None


__all__ = ["BatchInfo", "TaskContext", "current"]
