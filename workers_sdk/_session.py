"""Serve one BIND: the ``WorkerStream`` of one session, from task batches to result batches.

Three kinds of coroutine share one stream: a reader puts received task batches on a bounded
inbox, ``concurrency`` consumers run them through the :class:`BatchExecutor` and put the
result batches on an outbox, and a single writer sends them back (gRPC allows one write at a
time). The pump ends when the server ends the stream (after UNBIND, or when the session
closes), or when the runner asks it to drain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import grpc.aio

from alpcrun.proto import Batch, WorkerInstruction
from workers_sdk._execute import BatchExecutor, task_error
from workers_sdk._state import Counters
from workers_sdk.errors import WorkerError

logger = logging.getLogger("workers_sdk.session")

CLOSE_GRACE = 5.0
"""Seconds to wait for the server to end a stream after this side has half-closed it."""

_Stream = grpc.aio.StreamStreamCall[Batch, Batch]


class _Failures:
    """Error hook for one batch: counts failed tasks and logs them."""

    __slots__ = ("batch_id", "count")

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        self.count = 0

    def __call__(self, task_id: str, exc: Exception) -> None:
        # Runs in the executor thread for sync handlers; one batch is one thread, so no race.
        self.count += 1
        level = logging.WARNING if self.count == 1 else logging.DEBUG
        # WorkerError subclasses (Retry, NonRetryableError) are deliberate: no traceback.
        trace = None if isinstance(exc, WorkerError) else exc
        logger.log(
            level,
            "task %s of batch %s failed: %s: %s",
            task_id,
            self.batch_id,
            type(exc).__name__,
            exc,
            exc_info=trace,
        )


def failed_batch(batch: Batch, exc: Exception) -> Batch:
    """A result batch failing every task of ``batch`` with ``exc`` (used when execution broke)."""
    out = Batch(id=batch.id, session_id=batch.session_id, dispatch_id=batch.dispatch_id)
    error = task_error(exc)
    for task in batch.tasks:
        out.tasks.add(id=task.id, error=error)
    return out


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """What a BIND instruction gives a session pump."""

    session_id: str
    """The session to serve."""
    worker_id: str
    """This worker's id, sent as ``workerid`` metadata."""
    max_inflight_batches: int
    """The session's flow-control window (bounds the inbox)."""
    task_timeout: float | None = None
    """The session's per-task time limit in seconds (BIND's ``task_timeout_ms``), or None."""

    @classmethod
    def from_bind(cls, instr: WorkerInstruction, worker_id: str) -> SessionSpec:
        """The spec of a BIND instruction (``task_timeout_ms`` 0 means no limit)."""
        timeout_ms = instr.task_timeout_ms
        return cls(
            instr.session_id,
            worker_id,
            instr.max_inflight_batches,
            task_timeout=timeout_ms / 1000 if timeout_ms else None,
        )


class SessionPump:
    """Serves one bound session until the server ends its stream or a drain completes.

    Args:
        open_stream: ``QueueStub.WorkerStream`` of an aio channel.
        executor: Runs the batches.
        spec: The session, worker id and window from the BIND instruction.
        metadata: Base call metadata (the API key); session and worker ids are added.
        concurrency: Batches processed at once.
        counters: The runner's counters, updated per batch.
    """

    def __init__(
        self,
        open_stream: grpc.aio.StreamStreamMultiCallable[Batch, Batch],
        executor: BatchExecutor,
        spec: SessionSpec,
        *,
        metadata: Sequence[tuple[str, str]],
        concurrency: int,
        counters: Counters,
    ) -> None:
        self.spec = spec
        self._open_stream = open_stream
        self._executor = executor
        self._metadata = (
            *metadata,
            ("sessionid", spec.session_id),
            ("workerid", spec.worker_id),
        )
        self._concurrency = concurrency
        self._counters = counters
        window = max(spec.max_inflight_batches, concurrency)
        self._inbox: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=window)
        # Bounded by construction: one entry per in-flight batch at most.
        self._outbox: asyncio.Queue[Batch | None] = asyncio.Queue()
        self._accepting = True
        self._drain = asyncio.Event()
        self._deadline = 0.0
        self.inflight = 0
        """Task batches received and not yet answered."""
        self.task_timeout = spec.task_timeout
        """Per-task limit for batches started from now on (a later BIND may change it)."""

    def request_drain(self, deadline: float) -> None:
        """Take no further batches; finish the received ones by ``deadline`` (loop time)."""
        self._deadline = deadline
        self._drain.set()

    async def run(self) -> None:
        """Open the stream and serve it; returns when the stream is over."""
        call = self._open_stream(request_iterator=None, metadata=self._metadata)
        reader = asyncio.create_task(self._read(call))
        writer = asyncio.create_task(self._write(call))
        consumers = [asyncio.create_task(self._consume()) for _ in range(self._concurrency)]
        drain = asyncio.create_task(self._drain.wait())
        try:
            await asyncio.wait({reader, drain}, return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():
                await self._finish(reader, writer, consumers)
        finally:
            tasks = [reader, writer, drain, *consumers]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not call.done():
                call.cancel()

    async def _finish(
        self,
        reader: asyncio.Task[None],
        writer: asyncio.Task[None],
        consumers: list[asyncio.Task[None]],
    ) -> None:
        """Drain: finish received batches, send their results, half-close, await the end."""
        self._accepting = False
        remaining = max(0.0, self._deadline - asyncio.get_running_loop().time())
        flush = asyncio.create_task(self._flush(consumers, writer))
        done, _ = await asyncio.wait(
            {flush, reader}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
        if flush not in done:
            flush.cancel()
            if reader not in done:
                logger.warning(
                    "drain timeout: abandoning %d in-flight batch(es) of session %s",
                    self.inflight,
                    self.spec.session_id,
                )
            await asyncio.gather(flush, return_exceptions=True)
            return
        await asyncio.wait({reader}, timeout=CLOSE_GRACE)

    async def _flush(self, consumers: list[asyncio.Task[None]], writer: asyncio.Task[None]) -> None:
        for _ in consumers:
            await self._inbox.put(None)
        await asyncio.gather(*consumers)
        self._outbox.put_nowait(None)
        await writer

    async def _read(self, call: _Stream) -> None:
        try:
            while True:
                batch = await call.read()
                if not isinstance(batch, Batch):
                    logger.debug("session %s: the server ended the stream", self.spec.session_id)
                    return
                if not self._accepting:
                    # Draining: the server requeues it once this worker is gone.
                    logger.debug("draining: not taking batch %s", batch.id)
                    continue
                self.inflight += 1
                await self._inbox.put(batch)
        except grpc.aio.AioRpcError as exc:
            logger.warning(
                "WorkerStream of session %s ended: %s %s",
                self.spec.session_id,
                exc.code().name,
                exc.details(),
            )

    async def _consume(self) -> None:
        session_id, worker_id = self.spec.session_id, self.spec.worker_id
        counters = self._counters
        while (batch := await self._inbox.get()) is not None:
            failures = _Failures(batch.id)
            try:
                out = await self._executor.execute(
                    batch,
                    session_id=session_id,
                    worker_id=worker_id,
                    task_timeout=self.task_timeout,
                    on_error=failures,
                )
            except Exception as exc:  # a broken executor must still answer the batch
                logger.exception("batch %s could not be executed", batch.id)
                out = failed_batch(batch, exc)
                failures.count = len(out.tasks)
            counters.batches_done += 1
            counters.tasks_done += len(out.tasks)
            counters.tasks_failed += failures.count
            self._outbox.put_nowait(out)

    async def _write(self, call: _Stream) -> None:
        try:
            while (out := await self._outbox.get()) is not None:
                await call.write(out)
                self.inflight -= 1
            await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            logger.warning("cannot send results to session %s: %s", self.spec.session_id, exc)


__all__ = ["CLOSE_GRACE", "SessionPump", "SessionSpec", "failed_batch"]
