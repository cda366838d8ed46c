"""TaskHandle: the awaitable result of one submitted task."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

from alpcrun.client._results import TaskResult
from alpcrun.errors import AlpcrunError


class TaskHandle:
    """The pending result of one task submitted with :meth:`AsyncSession.submit`.

    Await it for the task's output bytes::

        handle = await session.submit(b"payload")
        output = await handle

    No asyncio future exists until someone awaits the handle, so handles nobody awaits cost
    little and never log "exception was never retrieved".

    Raises (when awaited):
        TaskFailed: The task was dead-lettered.
        AlpcrunError: The session was closed or detached, or its stream failed, before the
            result arrived.
    """

    __slots__ = ("_error", "_result", "_task_id", "_waiters")

    def __init__(self, task_id: str = "") -> None:
        self._task_id = task_id
        self._result: TaskResult | None = None
        self._error: AlpcrunError | None = None
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def task_id(self) -> str:
        """The task's id, unique within the session."""
        return self._task_id

    def done(self) -> bool:
        """Whether the task has a result (or the handle has failed)."""
        return self._result is not None or self._error is not None

    def result(self) -> bytes:
        """Return the output without waiting.

        Returns:
            The task's output bytes.

        Raises:
            asyncio.InvalidStateError: The result has not arrived yet.
            TaskFailed: The task was dead-lettered.
            AlpcrunError: The handle failed (session closed, detached or stream error).
        """
        if self._error is not None:
            # One error instance is shared by every handle of a failed stream: drop the
            # traceback so re-raising it many times does not grow it without bound.
            raise self._error.with_traceback(None)
        if self._result is None:
            raise asyncio.InvalidStateError(f"task {self._task_id} has no result yet")
        return self._result.value()

    def task_result(self) -> TaskResult | None:
        """:class:`TaskResult` once it arrived (``None`` before, or if the handle failed)."""
        return self._result

    def __await__(self) -> Generator[Any, None, bytes]:
        if not self.done():
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                yield from waiter.__await__()
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return self.result()

    def _deliver(self, result: TaskResult) -> None:
        """Route sink: the task's result arrived."""
        self._result = result
        self._wake()

    def _fail(self, error: AlpcrunError) -> None:
        """Route sink: the result will never arrive."""
        if not self.done():
            self._error = error
            self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def __repr__(self) -> str:
        if self._result is not None:
            state = "ok" if self._result.ok else "failed"
        else:
            state = "error" if self._error is not None else "pending"
        return f"<TaskHandle {self._task_id} {state}>"
