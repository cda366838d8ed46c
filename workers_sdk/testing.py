"""Run a worker's ``handle()`` without any server, through the runner's own execute path.

Example::

    async with WorkerHarness(Upper()) as h:
        assert await h.run(b"abc") == b"ABC"
        results = await h.run_batch([b"a", b"b"])

``SyncWorkerHarness`` is the blocking twin for code without an event loop.

Give ``task_timeout`` to run tasks under a session's per-task limit (a timed-out task
fails with ``TaskTimeout``, reason ``ERROR_REASON_TIMEOUT``), and ``attempt`` to see how a
handler behaves on a retry.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self, cast

from alpcrun.proto import Batch, PayloadRef, TaskError
from workers_sdk._execute import BatchExecutor
from workers_sdk._payloads import MemoryPayloads
from workers_sdk._shared import StaticSharedData
from workers_sdk.worker import Worker


@dataclass(frozen=True, slots=True)
class HarnessResult:
    """The outcome of one task run by the harness."""

    task_id: str
    """The task's id."""
    payload: bytes | None
    """The result bytes, or None when the task failed."""
    error: TaskError | None
    """The error the runner would send to the queue manager, or None on success."""
    exception: Exception | None
    """The exception the handler raised (or the TypeError for a bad return, or the
    ``TaskTimeout`` for a task that ran past ``task_timeout``), if any."""
    attempt: int = 1
    """The 1-based attempt number the handler saw in ``TaskContext.attempt``."""
    refs: tuple[PayloadRef, ...] = ()
    """References to the payloads the task put (read them with ``harness.payloads.get``)."""

    @property
    def ok(self) -> bool:
        """True when the task succeeded."""
        return self.error is None


class WorkerHarness:
    """Runs tasks through a worker in-process, exactly as ``WorkerRunner`` would.

    ``async with`` calls the worker's ``setup()`` on entry and ``teardown()`` on exit.

    Args:
        worker: The worker under test.
        session_id: Session id seen by the handler in ``TaskContext.session_id``.
        worker_id: Worker id seen by the handler in ``TaskContext.worker_id``.
        threads: Thread-pool size for a sync ``handle``.
        task_timeout: The session's per-task time limit (seconds or a ``timedelta``), or
            None for none; enforced as a worker enforces it.
        shared_data: The session's shared data: when given, every batch is marked
            ``use_shared_data`` (level 1) and ``task.shared_data()`` returns it.
        payloads: Where ``task.open`` and ``task.put`` go (a new :class:`MemoryPayloads`
            by default; put inputs with ``harness.payloads.add(obj)``).

    Raises:
        ValueError: ``task_timeout`` is not positive.
    """

    def __init__(
        self,
        worker: Worker,
        *,
        session_id: str = "harness-session",
        worker_id: str = "harness-worker",
        threads: int = 1,
        task_timeout: float | datetime.timedelta | None = None,
        shared_data: bytes | None = None,
        payloads: MemoryPayloads | None = None,
    ) -> None:
        self.worker = worker
        self.payloads = payloads or MemoryPayloads()
        """The payloads tasks open and put, in memory."""
        self._shared = None if shared_data is None else StaticSharedData(shared_data)
        self._session_id = session_id
        self._worker_id = worker_id
        self._threads = threads
        self._task_timeout = _seconds(task_timeout)
        self._executor: BatchExecutor | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> Self:
        await self.worker.setup()
        self._executor = BatchExecutor(
            self.worker, threads=self._threads, shared=self._shared, payloads=self.payloads
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        executor, self._executor = self._executor, None
        try:
            await self.worker.teardown()
        finally:
            if executor is not None:
                executor.close(wait=False)

    async def run(
        self, payload: bytes, *, attempt: int = 1, refs: Sequence[PayloadRef] = ()
    ) -> bytes:
        """Run one task and return its result bytes.

        Args:
            payload: The task's input bytes.
            attempt: The 1-based attempt number the handler sees.
            refs: Payload references the task carries (from ``harness.payloads.add``).

        Raises:
            Exception: Whatever the handler raised (a ``TypeError`` for a non-bytes result,
                :class:`~workers_sdk.errors.TaskTimeout` for a task past ``task_timeout``).
        """
        (result,) = await self.run_batch([payload], attempt=attempt, refs=refs)
        if result.exception is not None:
            raise result.exception
        return cast(bytes, result.payload)  # set whenever no exception was raised

    async def run_batch(
        self, payloads: Sequence[bytes], *, attempt: int = 1, refs: Sequence[PayloadRef] = ()
    ) -> list[HarnessResult]:
        """Run one batch of tasks; returns one :class:`HarnessResult` per payload, in order.

        Args:
            payloads: One task per payload.
            attempt: The 1-based attempt number every task of the batch sees.
            refs: Payload references every task of the batch carries.

        Raises:
            RuntimeError: The harness is not entered (use ``async with``).
            ValueError: ``attempt`` is less than 1.
        """
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        if self._executor is None:
            raise RuntimeError("use 'async with WorkerHarness(worker) as h' before running tasks")
        n = next(self._ids)
        batch = Batch(id=f"harness-{n}", session_id=self._session_id, dispatch_id=n)
        if self._shared is not None:
            batch.use_shared_data = True
            batch.required_shared_data_update_level = 1
        for i, payload in enumerate(payloads):
            batch.tasks.add(id=f"task-{n}-{i}", payload=payload, attempt=attempt, refs=refs)
        raised: dict[str, Exception] = {}
        out = await self._executor.execute(
            batch,
            session_id=self._session_id,
            worker_id=self._worker_id,
            task_timeout=self._task_timeout,
            on_error=raised.__setitem__,
        )
        return [
            HarnessResult(
                task_id=t.id,
                payload=None if t.HasField("error") else t.payload,
                error=t.error if t.HasField("error") else None,
                exception=raised.get(t.id),
                attempt=attempt,
                refs=tuple(t.refs),
            )
            for t in out.tasks
        ]


class SyncWorkerHarness:
    """Blocking twin of :class:`WorkerHarness`, on a private event loop.

    Example::

        with SyncWorkerHarness(Upper()) as h:
            assert h.run(b"abc") == b"ABC"
    """

    def __init__(
        self,
        worker: Worker,
        *,
        session_id: str = "harness-session",
        worker_id: str = "harness-worker",
        threads: int = 1,
        task_timeout: float | datetime.timedelta | None = None,
        shared_data: bytes | None = None,
        payloads: MemoryPayloads | None = None,
    ) -> None:
        self._harness = WorkerHarness(
            worker,
            session_id=session_id,
            worker_id=worker_id,
            threads=threads,
            task_timeout=task_timeout,
            shared_data=shared_data,
            payloads=payloads,
        )
        self.payloads = self._harness.payloads
        """The payloads tasks open and put, in memory."""
        self._runner: asyncio.Runner | None = None

    def __enter__(self) -> Self:
        self._runner = asyncio.Runner()
        self._runner.run(self._harness.__aenter__())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            try:
                runner.run(self._harness.__aexit__(exc_type, exc, tb))
            finally:
                runner.close()

    def run(
        self, payload: bytes, *, attempt: int = 1, refs: Sequence[PayloadRef] = ()
    ) -> bytes:
        """Run one task and return its result bytes (see :meth:`WorkerHarness.run`)."""
        return self._loop().run(self._harness.run(payload, attempt=attempt, refs=refs))

    def run_batch(
        self, payloads: Sequence[bytes], *, attempt: int = 1, refs: Sequence[PayloadRef] = ()
    ) -> list[HarnessResult]:
        """Run one batch of tasks (see :meth:`WorkerHarness.run_batch`)."""
        return self._loop().run(self._harness.run_batch(payloads, attempt=attempt, refs=refs))

    def _loop(self) -> asyncio.Runner:
        if self._runner is None:
            raise RuntimeError("use 'with SyncWorkerHarness(worker) as h' before running tasks")
        return self._runner


def _seconds(value: float | datetime.timedelta | None) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)
    if not seconds > 0:
        raise ValueError(f"task_timeout must be positive, got {value!r}")
    return seconds


__all__ = ["HarnessResult", "MemoryPayloads", "SyncWorkerHarness", "WorkerHarness"]
