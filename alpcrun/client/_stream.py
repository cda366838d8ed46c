"""One session's ``ClientStream``: batching, one writer, one reader, result routing, reconnects.

Every task gets one entry in a routing table (task id → (sink, index, batch)); a sink is a
:class:`~alpcrun.client.TaskHandle` or a running ``map``. The reader pops the entry of each
result and hands the result to its sink, so the per-task cost is a dict insert, a dict pop and
one small object. The table's size is the number of unsent plus unanswered tasks, which the
window bounds.

A supervisor task owns the gRPC call. When the call fails with a retryable error (the
connection dropped or was cut, the queue manager restarted), it waits with backoff, checks
the session still exists (``GetSession``), opens a new call with ``acks: 1`` and sends every
batch that still has unanswered tasks again (:class:`~alpcrun.client._pending.Unfinished`);
the queue manager ignores batch ids it still knows. Results it writes again are dropped by
their ``seq`` (:class:`~alpcrun.client._pending.SeqFilter`), so each result reaches its sink
once. Pending handles and maps only fail once reconnecting is given up (``ReconnectFailed``),
the session is gone (``SessionLost``) or the failure is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

import grpc
import grpc.aio

from alpcrun.client._batcher import Batcher, PackedBatch
from alpcrun.client._pending import IdSource, SeqFilter, Unfinished
from alpcrun.client._results import Counters, TaskResult, Unclaimed
from alpcrun.client._retry import Backoff, gave_up, is_retryable, lost_if_unknown
from alpcrun.client._rpc import Connection
from alpcrun.errors import AlpcrunError, SessionClosed, TransportError
from alpcrun.proto import Batch, ClientStreamRequest, ClientStreamResponse, ResultAck, Task
from alpcrun.proto.status import from_rpc_error

logger = logging.getLogger(__name__)

DETACH_GRACE = 5.0
"""Seconds ``detach`` waits for queued batches to be written before it cancels the call."""
STABLE_AFTER = 1.0
"""A call that lasted this long (or delivered a result) starts a fresh reconnect deadline."""

_Call = grpc.aio.StreamStreamCall[ClientStreamRequest, ClientStreamResponse]
_Out = PackedBatch | ClientStreamRequest | None
"""What the writer sends: a batch, an ack, or None to half-close."""


class Sink(Protocol):
    """Where the results of routed tasks go: a task handle or a map."""

    def _deliver(self, result: TaskResult) -> None:
        """Take one result (called by the reader; must not raise)."""

    def _fail(self, error: AlpcrunError) -> None:
        """The results of this sink's pending tasks will never arrive."""


class TaskStream:
    """The ``ClientStream`` of one session and the tasks in flight on it, across reconnects.

    Opened by the session on its first submit, map or attach; must be created inside the
    running event loop. ``add`` is synchronous and never waits: callers check :meth:`full`
    and await :meth:`wait_space` first, which keeps the number of unsent plus unanswered
    tasks at or below the window. Once :attr:`error` is set the stream is over for good.

    Args:
        conn: The client's connection.
        session_id: The session the stream belongs to.
        ids: The session object's id source.
        counters: The session object's counters.
        unclaimed: Where results nobody here waits for go.
        receipts: The session object's record of result numbers already routed.
    """

    def __init__(
        self,
        conn: Connection,
        session_id: str,
        ids: IdSource,
        counters: Counters,
        unclaimed: Unclaimed,
        receipts: SeqFilter,
    ) -> None:
        options = conn.options
        self._conn = conn
        self._session_id = session_id
        self._loop = asyncio.get_running_loop()
        self._counters = counters
        self._unclaimed = unclaimed
        self._receipts = receipts
        self._ids = ids
        self._first_task = ids.issued
        self._window = options.window
        self._linger = options.linger
        self._routes: dict[str, tuple[Sink, int, PackedBatch]] = {}
        self._unfinished = Unfinished()
        self._outq: asyncio.Queue[_Out] = asyncio.Queue()
        self._batcher = Batcher(
            session_id=session_id,
            new_batch_id=ids.batch_id,
            max_tasks=options.max_batch_tasks,
            max_bytes=options.max_batch_bytes,
            emit=self._emit,
        )
        self._flush_handle: asyncio.Handle | None = None
        self._space = asyncio.Event()
        self._drained = asyncio.Event()
        self._unwritten = 0
        self._half_closed = False
        self._answered = False
        self.error: AlpcrunError | None = None
        """Set once the stream has ended for good; new tasks need a new stream."""
        self._end_error: AlpcrunError | None = None
        self._call: _Call | None = None
        self._writer: asyncio.Task[None] | None = None
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"alpcrun-stream-{session_id}"
        )

    # -- submitting -------------------------------------------------------------------------

    def add(self, payload: bytes, priority: int, sink: Sink, index: int) -> str:
        """Queue one task for sending and route its result to ``sink``.

        Args:
            payload: The task's input bytes.
            priority: Batch priority (higher first) within a priority-queue session.
            sink: Receives the result.
            index: Passed back as ``TaskResult.index``.

        Returns:
            The new task's id.

        Raises:
            TypeError: ``payload`` is not bytes.
            AlpcrunError: The stream has ended.
        """
        if self.error is not None:
            raise self.error.with_traceback(None)
        if not isinstance(payload, bytes):
            raise TypeError(f"a task payload must be bytes, not {type(payload).__name__}")
        task_id = self._ids.task_id()
        self._routes[task_id] = (sink, index, self._batcher.add(task_id, payload, priority))
        self._counters.submitted += 1
        if self._flush_handle is None:
            if self._linger > 0:
                self._flush_handle = self._loop.call_later(self._linger, self._flush_open)
            else:
                self._flush_handle = self._loop.call_soon(self._flush_open)
        return task_id

    def full(self) -> bool:
        """Whether the window of unsent plus unanswered tasks is full."""
        return len(self._routes) >= self._window

    @property
    def pending(self) -> int:
        """Tasks added and not answered yet."""
        return len(self._routes)

    async def wait_space(self) -> None:
        """Wait until the window has room for another task.

        Raises:
            AlpcrunError: The stream ended while waiting.
        """
        while self.error is None and len(self._routes) >= self._window:
            self._space.clear()
            await self._space.wait()
        if self.error is not None:
            raise self.error.with_traceback(None)

    async def flush(self) -> None:
        """Send every partly filled batch now and wait until all batches are written.

        While the stream is reconnecting this waits for the new call to take them.

        Raises:
            AlpcrunError: The stream ended before everything was written.
        """
        self._flush_open()
        while self.error is None and self._unwritten > 0:
            self._drained.clear()
            await self._drained.wait()
        if self.error is not None:
            raise self.error.with_traceback(None)

    def set_shared_level(self, level: int) -> None:
        """Make batches started from now on require shared-data ``level``.

        Partly filled batches are sent first, so each batch carries the level that was
        current when its tasks were submitted.
        """
        if level != self._batcher.shared_level:
            self._flush_open()
            self._batcher.shared_level = level

    def _flush_open(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._batcher.flush()

    def _emit(self, batch: PackedBatch) -> None:
        self._unfinished.add(batch)
        self._unwritten += 1
        self._outq.put_nowait(batch)

    # -- one call ---------------------------------------------------------------------------

    async def _attempt(self) -> AlpcrunError:
        """Open a call, send every unfinished batch, route results until the call ends."""
        queue: asyncio.Queue[_Out] = asyncio.Queue()
        self._outq = queue
        self._unwritten = 0
        for batch in self._unfinished:
            self._unwritten += 1
            queue.put_nowait(batch)
        if self._half_closed:
            queue.put_nowait(None)
        self._answered = False
        metadata = self._conn.stream_metadata(self._session_id)
        call = self._call = self._conn.stub.ClientStream(None, metadata=metadata)
        self._writer = asyncio.create_task(
            self._write_loop(call, queue), name=f"alpcrun-write-{self._session_id}"
        )
        try:
            return await self._read(call, queue)
        finally:
            call.cancel()
            self._writer.cancel()

    async def _write_loop(self, call: _Call, queue: asyncio.Queue[_Out]) -> None:
        unfinished = self._unfinished
        try:
            while (item := await queue.get()) is not None:
                if not isinstance(item, PackedBatch):
                    await call.write(item)
                    continue
                if item in unfinished:  # a resent batch may have been answered meanwhile
                    await call.write(item.request)
                if queue is self._outq:
                    self._unwritten -= 1
                    if self._unwritten == 0:
                        self._drained.set()
            await call.done_writing()
        except (grpc.RpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            return  # the call has ended; the reader reports how

    async def _read(self, call: _Call, queue: asyncio.Queue[_Out]) -> AlpcrunError:
        receipts = self._receipts
        try:
            async for response in call:
                self._answered = True
                seq = response.seq
                if receipts.accept(seq):
                    self._route(response.results)
                if seq and self.error is None:
                    # Acknowledge once routed (repeats too: their first ack was lost). The
                    # queue manager keeps the results until then and writes them again to
                    # the next stream of the session otherwise.
                    queue.put_nowait(ClientStreamRequest(ack=ResultAck(seq=seq)))
        except grpc.RpcError as err:
            return from_rpc_error(err)
        return SessionClosed("the queue manager ended the client stream")

    def _route(self, results: Batch) -> None:
        routes, unfinished = self._routes, self._unfinished
        failed = received = 0
        for task in results.tasks:
            task_id = task.id
            entry = routes.pop(task_id, None)
            if entry is None:
                if self._unrouted(task, results.id):
                    received += 1
                    failed += task.HasField("error")
                continue
            sink, index, batch = entry
            if task.HasField("error"):
                result = TaskResult(index, task_id, b"", task.error)
                failed += 1
            else:
                result = TaskResult(index, task_id, task.payload, None)
            received += 1
            batch.answered += 1  # Unfinished.answered, inlined on the per-task path
            if batch.answered >= batch.count:
                unfinished.discard(batch)
            sink._deliver(result)
        self._counters.failed += failed
        self._counters.completed += received - failed
        if len(routes) < self._window:
            self._space.set()

    def _unrouted(self, task: Task, batch_id: str) -> bool:
        """A result with no route: a repeat of one delivered, or nobody here waits for it.

        A repeat is a task this stream issued, answered again in one of its own batches (a
        resubmitted dead letter comes back in another batch and is not a repeat).
        """
        ids = self._ids
        if batch_id.startswith(ids.prefix) and ids.issued_since(task.id, self._first_task):
            self._counters.duplicate_tasks += 1
            return False
        error = task.error if task.HasField("error") else None
        self._unclaimed.push(TaskResult(-1, task.id, task.payload, error))
        return True

    # -- reconnecting -----------------------------------------------------------------------

    async def _supervise(self) -> None:
        backoff: Backoff | None = None
        try:
            while True:
                opened = self._loop.time()
                error = await self._attempt()
                if self.error is not None:
                    return
                if self._end_error is not None:
                    self._fail(self._end_error)
                    return
                error = lost_if_unknown(error, self._session_id)
                if not is_retryable(error):
                    self._fail(error)
                    return
                if backoff is None or self._answered or self._loop.time() - opened >= STABLE_AFTER:
                    backoff = self._conn.backoff()
                logger.warning(
                    "session %s: client stream lost (%s); reconnecting", self._session_id, error
                )
                failure = await self._reattach(backoff, error)
                if failure is not None:
                    self._fail(failure)
                    return
                self._counters.reconnects += 1
        except Exception as exc:  # a bug here must not leave handles waiting forever
            logger.exception("client stream of session %s failed", self._session_id)
            self._fail(TransportError(f"client stream failed: {exc!r}"))

    async def _reattach(self, backoff: Backoff, cause: AlpcrunError) -> AlpcrunError | None:
        """Wait, then check the session is still there; return the final error if not."""
        delay = backoff.delay(self._loop.time())
        if delay is None:
            return gave_up(self._conn.address, backoff, self._loop.time(), cause)
        await asyncio.sleep(delay)
        try:
            await self._conn.check_session(self._session_id, backoff, cause)
        except AlpcrunError as exc:
            return exc
        logger.info("session %s: re-attaching", self._session_id)
        return None

    # -- ending -----------------------------------------------------------------------------

    def _fail(self, error: AlpcrunError) -> None:
        """End the stream: fail every pending sink with ``error`` (idempotent)."""
        if self.error is not None:
            return
        self.error = error
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._batcher.clear()
        sinks = dict.fromkeys(entry[0] for entry in self._routes.values())
        self._routes.clear()
        self._unfinished.clear()
        for sink in sinks:
            sink._fail(error)
        self._space.set()
        self._drained.set()
        if self._call is not None:
            self._call.cancel()
        if self._writer is not None:
            self._writer.cancel()

    async def aclose(self, error: AlpcrunError) -> None:
        """Cancel the call and fail what is pending with ``error``; waits for the tasks."""
        self._fail(error)
        self._supervisor.cancel()
        tasks = [t for t in (self._supervisor, self._writer) if t is not None]
        await asyncio.wait(tasks)

    async def detach(self, error: AlpcrunError) -> None:
        """Send what is queued, half-close, then cancel the call (the session stays open).

        Tasks still unanswered fail with ``error`` here; the queue manager keeps their
        results for the next client that attaches.
        """
        self._end_error = error
        if self.error is None:
            with contextlib.suppress(TimeoutError, AlpcrunError):
                async with asyncio.timeout(DETACH_GRACE):
                    await self.flush()
                    self._half_closed = True
                    self._outq.put_nowait(None)
                    if self._writer is not None:
                        await asyncio.wait([self._writer])
        await self.aclose(error)

    def set_end_error(self, error: AlpcrunError) -> None:
        """Use ``error`` for pending tasks if the stream ends now (e.g. on close): no reconnect."""
        self._end_error = error
