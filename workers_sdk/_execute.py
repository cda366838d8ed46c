"""Run ``Worker.handle()`` over one task batch and build the result batch (the hot path).

Per task this costs one :class:`TaskContext`, one contextvar set, one handler call and one
``tasks.add``: no asyncio task, no future, no dataclass. Async handlers are awaited one after
another on the loop; for sync handlers the whole batch loop runs in the thread pool with a
single ``run_in_executor`` call per batch. A failing task becomes a per-task error; it never
fails its batch-mates, the batch or the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import cast

from alpcrun.proto import Batch, ErrorReason, Task, TaskError
from workers_sdk.context import BatchInfo, TaskContext, _current
from workers_sdk.errors import NonRetryableError
from workers_sdk.worker import Worker

SyncHandle = Callable[[TaskContext], object]
AsyncHandle = Callable[[TaskContext], Awaitable[object]]
ErrorHook = Callable[[str, Exception], None]
"""Called with (task id, exception) for every failed task; used by the test harness."""

MAX_ERROR_MESSAGE = 8192
"""Longest error message sent back (characters); a huge ``str(exc)`` must not bloat results."""

_EMPTY_TASK = Task()


def task_error(exc: BaseException) -> TaskError:
    """The ``TaskError`` reported for a handler that raised ``exc``."""
    reason = (
        ErrorReason.ERROR_REASON_NON_RETRYABLE
        if isinstance(exc, NonRetryableError)
        else ErrorReason.ERROR_REASON_ERROR
    )
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not take the batch down with it
        text = f"<unprintable {type(exc).__name__}>"
    # Lone surrogates cannot go into a proto string field.
    text = text[:MAX_ERROR_MESSAGE].encode("utf-8", "replace").decode("utf-8")
    return TaskError(message=text, type=type(exc).__name__, reason=reason)


def _fail(out: Batch, task_id: str, exc: Exception, on_error: ErrorHook | None) -> None:
    out.tasks.add(id=task_id, error=task_error(exc))
    if on_error is not None:
        on_error(task_id, exc)


def _add_result(out: Batch, task_id: str, result: object, on_error: ErrorHook | None) -> None:
    """Slow path for a result that is not exactly ``bytes``."""
    if isinstance(result, bytes | bytearray | memoryview):
        out.tasks.add(id=task_id, payload=bytes(result))
        return
    exc = TypeError(f"handle() returned {type(result).__qualname__}; expected bytes")
    _fail(out, task_id, exc, on_error)


def run_batch_sync(
    handle: SyncHandle, batch: Batch, info: BatchInfo, on_error: ErrorHook | None = None
) -> Batch:
    """Run a sync ``handle`` over every task of ``batch``; returns the result batch.

    Called in an executor thread; the contextvar behind ``current()`` is set in that thread.
    """
    out = Batch(id=batch.id, session_id=batch.session_id, dispatch_id=batch.dispatch_id)
    add = out.tasks.add
    set_current = _current.set
    token = set_current(TaskContext(_EMPTY_TASK, info))
    try:
        for task in batch.tasks:
            ctx = TaskContext(task, info)
            set_current(ctx)
            try:
                result = handle(ctx)
            except Exception as exc:
                _fail(out, task.id, exc, on_error)
                continue
            if type(result) is bytes:
                add(id=task.id, payload=result)
            else:
                _add_result(out, task.id, result, on_error)
    finally:
        _current.reset(token)
    return out


async def run_batch_async(
    handle: AsyncHandle, batch: Batch, info: BatchInfo, on_error: ErrorHook | None = None
) -> Batch:
    """Await an async ``handle`` for every task of ``batch`` in turn; returns the result batch."""
    out = Batch(id=batch.id, session_id=batch.session_id, dispatch_id=batch.dispatch_id)
    add = out.tasks.add
    set_current = _current.set
    token = set_current(TaskContext(_EMPTY_TASK, info))
    try:
        for task in batch.tasks:
            ctx = TaskContext(task, info)
            set_current(ctx)
            try:
                result = await handle(ctx)
            except Exception as exc:
                _fail(out, task.id, exc, on_error)
                continue
            if type(result) is bytes:
                add(id=task.id, payload=result)
            else:
                _add_result(out, task.id, result, on_error)
    finally:
        _current.reset(token)
    return out


class BatchExecutor:
    """Runs batches through one worker's ``handle``, on the loop or in a thread pool.

    Shared by :class:`workers_sdk.runner.WorkerRunner` and
    :class:`workers_sdk.testing.WorkerHarness`, so both behave the same.

    Args:
        worker: The worker whose ``handle`` runs.
        threads: Thread-pool size for a sync ``handle`` (unused for an async one).
    """

    def __init__(self, worker: Worker, *, threads: int) -> None:
        self._is_async = type(worker)._handle_is_async
        self._handle = worker.handle
        self._pool: ThreadPoolExecutor | None = None
        if not self._is_async:
            self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="worker-handle")

    async def execute(
        self,
        batch: Batch,
        *,
        session_id: str,
        worker_id: str,
        on_error: ErrorHook | None = None,
    ) -> Batch:
        """Run every task of ``batch`` and return the result batch.

        Args:
            batch: The task batch, as received from the queue manager.
            session_id: The bound session (used when the batch does not name one).
            worker_id: This worker's server-assigned id.
            on_error: Called with (task id, exception) for each failed task.
        """
        info = BatchInfo(batch.id, batch.session_id or session_id, worker_id)
        if self._pool is None:
            return await run_batch_async(cast(AsyncHandle, self._handle), batch, info, on_error)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, run_batch_sync, cast(SyncHandle, self._handle), batch, info, on_error
        )

    def close(self, *, wait: bool = True) -> None:
        """Shut the thread pool down (waiting for running handlers when ``wait``)."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)


__all__ = ["BatchExecutor", "run_batch_async", "run_batch_sync", "task_error"]
