"""Per-task context handed to ``Worker.handle()``, and :func:`current` to reach it anywhere.

A :class:`TaskContext` is built once per task on the hot path (tens of thousands a second),
so it is a two-slot wrapper around the protobuf ``Task`` and a :class:`BatchInfo` shared by
every task of the batch, rather than a dataclass that copies fields.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from alpcrun.payload.store import PayloadView
from alpcrun.proto import PayloadRef, Task
from workers_sdk._payloads import PayloadSource


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
    dispatch_id: int = 0
    """The attempt's dispatch id (names the attempt's payload leases)."""
    payloads: PayloadSource | None = None
    """Where tasks open and put payloads (None: payloads are not available)."""
    loop: asyncio.AbstractEventLoop | None = None
    """The runner's event loop (sync handlers reach ``payloads`` through it)."""


class TaskContext:
    """Read-only view of one task, passed to ``Worker.handle()``.

    Instances are immutable by contract: every field is a read-only property. Build one with
    ``TaskContext(task, info)``; user code normally only receives them.
    """

    __slots__ = ("_info", "_outputs", "_task")

    def __init__(self, task: Task, info: BatchInfo) -> None:
        self._task = task
        self._info = info
        self._outputs: list[PayloadRef] | None = None

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
    def refs(self) -> tuple[PayloadRef, ...]:
        """References to the payloads the task was submitted with."""
        return tuple(self._task.refs)

    @property
    def outputs(self) -> tuple[PayloadRef, ...]:
        """References to the payloads this task put (its result carries them)."""
        return tuple(self._outputs or ())

    def _source(self) -> PayloadSource:
        source = self._info.payloads
        if source is None:
            raise RuntimeError("payloads are not available to this worker (no payload store)")
        return source

    @property
    def _holder(self) -> str:
        return f"{self._info.worker_id}/{self._info.dispatch_id}"

    def _on_loop(self, coro: Any) -> Any:
        """Run ``coro`` on the runner's loop from a sync handler's thread; its result."""
        loop = self._info.loop
        if loop is None:
            raise RuntimeError("payloads need the runner's event loop")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coro.close()
            raise RuntimeError("an async handle() uses open_async and put_async")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    @contextlib.contextmanager
    def open(self, ref: PayloadRef) -> Iterator[PayloadView]:
        """``with task.open(ref) as view``: read-only bytes of a payload (sync handlers).

        On the node that holds the payload, ``view.memoryview()`` and ``view.array()`` are the
        node agent's memory, mapped: nothing is copied. A lease on the payload is held until
        the block ends. Async handlers use :meth:`open_async`.
        """
        view: PayloadView = self._on_loop(self._source().open(self.session_id, ref, self._holder))
        try:
            yield view
        finally:
            self._on_loop(view.aclose())

    @contextlib.asynccontextmanager
    async def open_async(self, ref: PayloadRef) -> AsyncIterator[PayloadView]:
        """``async with task.open_async(ref) as view``: :meth:`open` for async handlers."""
        view = await self._source().open(self.session_id, ref, self._holder)
        try:
            yield view
        finally:
            await view.aclose()

    def put(self, obj: Any, *, meta: Mapping[str, str] | None = None) -> PayloadRef:
        """Store a bytes-like object or NumPy array as a payload; the result carries its ref.

        On a node with a node agent the bytes are written straight into its memory. Sync
        handlers; async handlers use :meth:`put_async`.
        """
        ref: PayloadRef = self._on_loop(self._source().put(self.session_id, obj, meta))
        return self._output(ref)

    async def put_async(self, obj: Any, *, meta: Mapping[str, str] | None = None) -> PayloadRef:
        """:meth:`put` for async handlers."""
        return self._output(await self._source().put(self.session_id, obj, meta))

    def _output(self, ref: PayloadRef) -> PayloadRef:
        if self._outputs is None:
            self._outputs = []
        self._outputs.append(ref)
        return ref

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
        self._outputs = None
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
