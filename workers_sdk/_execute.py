"""Run ``Worker.handle()`` over one task batch and build the result batch (the hot path).

Per task this costs one :class:`TaskContext`, one contextvar set, one handler call and one
``tasks.add``: no asyncio task, no future, no dataclass. Async handlers are awaited one after
another on the loop; for sync handlers the whole batch loop runs in the thread pool with a
single ``run_in_executor`` call per batch. A failing task becomes a per-task error; it never
fails its batch-mates, the batch or the worker.

With a session ``task_timeout`` the batch takes a separate, timed loop, so the common case
pays nothing for it. An async handler is cancelled at the limit by a per-batch watchdog. A
sync handler cannot be interrupted, so each task is timed, and one that finished after the
limit is reported as timed out, its outcome discarded. Either way the task fails with
``ERROR_REASON_TIMEOUT`` and its batch-mates carry on. A sync handler that never returns is
left to the queue manager, which enforces ``task_timeout`` too and redelivers the batch to
another worker.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import cast

from alpcrun.errors import PayloadLost
from alpcrun.proto import Batch, ErrorReason, PayloadRef, Task, TaskError
from workers_sdk._payloads import PayloadSource
from workers_sdk._shared import SharedDataSource
from workers_sdk.context import BatchInfo, TaskContext, _current, _TimedTaskContext
from workers_sdk.errors import NonRetryableError, Retry, TaskTimeout
from workers_sdk.worker import Worker

SyncHandle = Callable[[TaskContext], object]
AsyncHandle = Callable[[TaskContext], Awaitable[object]]
ErrorHook = Callable[[str, Exception], None]
"""Called with (task id, exception) for every failed task; used by the test harness."""

MAX_ERROR_MESSAGE = 8192
"""Longest error message sent back (characters); a huge ``str(exc)`` must not bloat results."""

_EMPTY_TASK = Task()


def task_error(exc: BaseException) -> TaskError:
    """The ``TaskError`` reported for a handler that raised ``exc``.

    ``NonRetryableError`` (and subclasses) maps to ``ERROR_REASON_NON_RETRYABLE``, a payload
    the task references that is gone (``PayloadLost``) to ``ERROR_REASON_PAYLOAD_LOST``,
    ``TaskTimeout`` to ``ERROR_REASON_TIMEOUT``, anything else to the retryable
    ``ERROR_REASON_ERROR``; a ``Retry`` also sets ``retry_after_ms`` from its ``after``.
    ``type`` is the exception's class name and ``message`` its text.
    """
    if isinstance(exc, NonRetryableError):
        reason = ErrorReason.ERROR_REASON_NON_RETRYABLE
    elif isinstance(exc, PayloadLost):
        reason = ErrorReason.ERROR_REASON_PAYLOAD_LOST
    elif isinstance(exc, TaskTimeout):
        reason = ErrorReason.ERROR_REASON_TIMEOUT
    else:
        reason = ErrorReason.ERROR_REASON_ERROR
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not take the batch down with it
        text = f"<unprintable {type(exc).__name__}>"
    # Lone surrogates cannot go into a proto string field.
    text = text[:MAX_ERROR_MESSAGE].encode("utf-8", "replace").decode("utf-8")
    error = TaskError(message=text, type=type(exc).__name__, reason=reason)
    if isinstance(exc, Retry) and exc.after_ms:
        error.retry_after_ms = exc.after_ms
    return error


def _fail(out: Batch, task_id: str, exc: Exception, on_error: ErrorHook | None) -> None:
    out.tasks.add(id=task_id, error=task_error(exc))
    if on_error is not None:
        on_error(task_id, exc)


def _add_result(
    out: Batch,
    task_id: str,
    result: object,
    on_error: ErrorHook | None,
    outputs: list[PayloadRef] | None = None,
) -> None:
    """Slow path: a result that is not exactly ``bytes``, or a task that put payloads."""
    if isinstance(result, bytes | bytearray | memoryview):
        added = out.tasks.add(id=task_id, payload=bytes(result))
        if outputs:
            added.refs.extend(outputs)
        return
    exc = TypeError(f"handle() returned {type(result).__qualname__}; expected bytes")
    _fail(out, task_id, exc, on_error)


def run_batch_sync(
    handle: SyncHandle,
    batch: Batch,
    info: BatchInfo,
    on_error: ErrorHook | None = None,
    task_timeout: float | None = None,
) -> Batch:
    """Run a sync ``handle`` over every task of ``batch``; returns the result batch.

    Called in an executor thread; the contextvar behind ``current()`` is set in that thread.
    With ``task_timeout`` (seconds), a task that ran longer fails with ``TaskTimeout``.
    """
    if task_timeout is not None:
        return _run_sync_timed(handle, batch, info, on_error, task_timeout)
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
            if type(result) is bytes and ctx._outputs is None:
                add(id=task.id, payload=result)
            else:
                _add_result(out, task.id, result, on_error, ctx._outputs)
    finally:
        _current.reset(token)
    return out


async def run_batch_async(
    handle: AsyncHandle,
    batch: Batch,
    info: BatchInfo,
    on_error: ErrorHook | None = None,
    task_timeout: float | None = None,
) -> Batch:
    """Await an async ``handle`` for every task of ``batch`` in turn; returns the result batch.

    With ``task_timeout`` (seconds), a task still running at the limit is cancelled and fails with
    ``TaskTimeout``.
    """
    if task_timeout is not None:
        return await _run_async_timed(handle, batch, info, on_error, task_timeout)
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
            if type(result) is bytes and ctx._outputs is None:
                add(id=task.id, payload=result)
            else:
                _add_result(out, task.id, result, on_error, ctx._outputs)
    finally:
        _current.reset(token)
    return out


def _settle(
    out: Batch,
    task_id: str,
    result: object,
    error: Exception | None,
    late: TaskTimeout | None,
    on_error: ErrorHook | None,
    outputs: list[PayloadRef] | None = None,
) -> None:
    """Record one timed task: a timeout wins over whatever the handler produced."""
    if late is not None:
        if error is not None and error is not late:
            late.__cause__ = error
        _fail(out, task_id, late, on_error)
    elif error is not None:
        _fail(out, task_id, error, on_error)
    else:
        _add_result(out, task_id, result, on_error, outputs)


def _run_sync_timed(
    handle: SyncHandle, batch: Batch, info: BatchInfo, on_error: ErrorHook | None, limit: float
) -> Batch:
    """:func:`run_batch_sync` with a per-task time limit (measured; the thread runs on)."""
    out = Batch(id=batch.id, session_id=batch.session_id, dispatch_id=batch.dispatch_id)
    clock = time.monotonic
    token = _current.set(TaskContext(_EMPTY_TASK, info))
    try:
        for task in batch.tasks:
            start = clock()
            ctx = _TimedTaskContext(task, info, start + limit)
            _current.set(ctx)
            result: object = None
            error: Exception | None = None
            try:
                result = handle(ctx)
            except Exception as exc:
                error = exc
            elapsed = clock() - start
            late = TaskTimeout(limit, elapsed, cancelled=False) if elapsed > limit else None
            _settle(out, task.id, result, error, late, on_error, ctx._outputs)
    finally:
        _current.reset(token)
    return out


class _Watchdog:
    """Cancels the task running a batch when the current ``handle()`` call passes its deadline.

    One timer per batch, re-armed lazily: a call that ends in time only resets ``deadline``,
    and the timer, when it fires, re-arms itself for the running call's deadline. A per-task
    limit so costs a few attribute writes per task rather than a timer (and a heap entry)
    per task, as ``asyncio.timeout`` would.
    """

    __slots__ = ("_loop", "_task", "_timer", "deadline", "fired")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self._loop = task.get_loop()
        self._task = task
        self._timer: asyncio.TimerHandle | None = None
        self.deadline = math.inf
        """Loop-time deadline of the running call; infinity between calls."""
        self.fired = False
        """True once the running call was cancelled for its deadline."""

    def arm(self, deadline: float) -> None:
        """Watch a new call that must end by ``deadline`` (loop time)."""
        self.deadline = deadline
        self.fired = False
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._check)

    def _check(self) -> None:
        self._timer = None
        deadline = self.deadline
        if deadline == math.inf:  # between calls: the next arm() starts a timer
            return
        if self._loop.time() >= deadline:
            self.fired = True
            self.deadline = math.inf
            self._task.cancel()
        else:
            self._timer = self._loop.call_at(deadline, self._check)

    def close(self) -> None:
        """Stop watching (the batch is over)."""
        self.deadline = math.inf
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _absorb_cancel(me: asyncio.Task[object], baseline: int) -> None:
    """Take back the watchdog's cancellation; re-raise if the task was cancelled otherwise too."""
    if me.uncancel() > baseline:
        raise asyncio.CancelledError


async def _run_async_timed(
    handle: AsyncHandle, batch: Batch, info: BatchInfo, on_error: ErrorHook | None, limit: float
) -> Batch:
    """:func:`run_batch_async` with a per-task time limit; a handler is cancelled at it."""
    me = asyncio.current_task()
    if me is None:
        raise RuntimeError("a timed batch must run inside an asyncio task")
    baseline = me.cancelling()
    loop = me.get_loop()
    dog = _Watchdog(me)
    out = Batch(id=batch.id, session_id=batch.session_id, dispatch_id=batch.dispatch_id)
    clock = time.monotonic
    token = _current.set(TaskContext(_EMPTY_TASK, info))
    try:
        for task in batch.tasks:
            start = clock()
            ctx = _TimedTaskContext(task, info, start + limit)
            _current.set(ctx)
            dog.arm(loop.time() + limit)
            result: object = None
            error: Exception | None = None
            try:
                result = await handle(ctx)
            except asyncio.CancelledError:
                if not dog.fired:
                    raise
            except Exception as exc:
                error = exc
            dog.deadline = math.inf
            elapsed = clock() - start
            if dog.fired:
                _absorb_cancel(me, baseline)
            # A handler that blocked the loop past the limit was never cancelled: also late.
            late = None
            if dog.fired or elapsed > limit:
                late = TaskTimeout(limit, elapsed, cancelled=dog.fired)
            _settle(out, task.id, result, error, late, on_error, ctx._outputs)
    finally:
        dog.close()
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

    def __init__(
        self,
        worker: Worker,
        *,
        threads: int,
        shared: SharedDataSource | None = None,
        payloads: PayloadSource | None = None,
    ) -> None:
        self._shared = shared
        self._payloads = payloads
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
        task_timeout: float | None = None,
        on_error: ErrorHook | None = None,
    ) -> Batch:
        """Run every task of ``batch`` and return the result batch.

        Args:
            batch: The task batch, as received from the queue manager.
            session_id: The bound session (used when the batch does not name one).
            worker_id: This worker's server-assigned id.
            task_timeout: The session's per-task limit in seconds; None or 0 for none.
            on_error: Called with (task id, exception) for each failed task.
        """
        sid = batch.session_id or session_id
        shared: bytes | None = None
        level = 0
        if batch.use_shared_data and self._shared is not None:
            level = batch.required_shared_data_update_level or 1
            shared = await self._shared.get(sid, level)
        info = BatchInfo(
            batch.id,
            sid,
            worker_id,
            shared,
            level,
            dispatch_id=batch.dispatch_id,
            payloads=self._payloads,
            loop=asyncio.get_running_loop(),
        )
        timeout = task_timeout or None
        if self._pool is None:
            handle = cast(AsyncHandle, self._handle)
            return await run_batch_async(handle, batch, info, on_error, timeout)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool,
            run_batch_sync,
            cast(SyncHandle, self._handle),
            batch,
            info,
            on_error,
            timeout,
        )

    def close(self, *, wait: bool = True) -> None:
        """Shut the thread pool down (waiting for running handlers when ``wait``)."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)


__all__ = ["BatchExecutor", "run_batch_async", "run_batch_sync", "task_error"]
