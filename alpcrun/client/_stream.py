"""One session's ``ClientStream`` call: batching, one writer, one reader and result routing.

Every task gets one entry in a routing table (task id → (sink, index)); a sink is a
:class:`~alpcrun.client.TaskHandle` or a running ``map``. The reader pops the entry of each
result and hands the result to its sink, so the per-task cost is a dict insert, a dict pop and
one small object. The table's size is the number of unsent plus unanswered tasks, which the
window bounds.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Iterable
from typing import Protocol

import grpc

from alpcrun.client._batcher import Batcher
from alpcrun.client._results import Counters, TaskResult, Unclaimed
from alpcrun.client._rpc import Connection
from alpcrun.errors import AlpcrunError, SessionClosed, TransportError
from alpcrun.proto import ClientStreamRequest, ResultAck, Task
from alpcrun.proto.status import from_rpc_error

logger = logging.getLogger(__name__)

DETACH_GRACE = 5.0
"""Seconds ``detach`` waits for queued batches to be written before it cancels the call."""


class Sink(Protocol):
    """Where the results of routed tasks go: a task handle or a map."""

    def _deliver(self, result: TaskResult) -> None:
        """Take one result (called by the reader; must not raise)."""

    def _fail(self, error: AlpcrunError) -> None:
        """The results of this sink's pending tasks will never arrive."""


class IdSource:
    """Task and batch ids for one session object: a random prefix plus counters.

    The 6-hex-digit prefix keeps ids unique when several processes attach to one session.
    """

    __slots__ = ("_batches", "prefix", "tasks")

    def __init__(self) -> None:
        self.prefix = secrets.token_hex(3) + "-"
        self.tasks = itertools.count()
        self._batches = itertools.count()

    def batch_id(self) -> str:
        """A fresh batch id."""
        return f"{self.prefix}b{next(self._batches)}"


class TaskStream:
    """The ``ClientStream`` call of one session and the tasks in flight on it.

    Opened by the session on its first submit, map or attach; must be created inside the
    running event loop. ``add`` is synchronous and never waits: callers check :meth:`full`
    and await :meth:`wait_space` first, which keeps the number of unsent plus unanswered
    tasks at or below the window.

    Args:
        conn: The client's connection.
        session_id: The session the stream belongs to.
        ids: The session object's id source.
        counters: The session object's task counters.
        unclaimed: Where results nobody here waits for go.
    """

    def __init__(
        self,
        conn: Connection,
        session_id: str,
        ids: IdSource,
        counters: Counters,
        unclaimed: Unclaimed,
    ) -> None:
        options = conn.options
        self._loop = asyncio.get_running_loop()
        self._counters = counters
        self._unclaimed = unclaimed
        self._ids = ids
        self._window = options.window
        self._linger = options.linger
        self._routes: dict[str, tuple[Sink, int]] = {}
        self._outq: asyncio.Queue[ClientStreamRequest | None] = asyncio.Queue()
        self._batcher = Batcher(
            session_id=session_id,
            new_batch_id=ids.batch_id,
            max_tasks=options.max_batch_tasks,
            max_bytes=options.max_batch_bytes,
            emit=self._enqueue,
        )
        self._flush_handle: asyncio.Handle | None = None
        self._space = asyncio.Event()
        self._drained = asyncio.Event()
        self._enqueued = 0
        self._written = 0
        self.error: AlpcrunError | None = None
        """Set once the stream has ended; new tasks need a new stream."""
        self._end_error: AlpcrunError | None = None
        self._call = conn.stub.ClientStream(None, metadata=conn.stream_metadata(session_id))
        self._writer = asyncio.create_task(self._write_loop(), name=f"alpcrun-write-{session_id}")
        self._reader = asyncio.create_task(self._read_loop(), name=f"alpcrun-read-{session_id}")

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
        task_id = self._ids.prefix + str(next(self._ids.tasks))
        self._batcher.add(task_id, payload, priority)
        self._routes[task_id] = (sink, index)
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

        Raises:
            AlpcrunError: The stream ended before everything was written.
        """
        self._flush_open()
        while self.error is None and self._written < self._enqueued:
            self._drained.clear()
            await self._drained.wait()
        if self.error is not None:
            raise self.error.with_traceback(None)

    def _flush_open(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._batcher.flush()

    def _enqueue(self, request: ClientStreamRequest) -> None:
        self._enqueued += 1
        self._outq.put_nowait(request)

    # -- the two loops ----------------------------------------------------------------------

    async def _write_loop(self) -> None:
        queue, call = self._outq, self._call
        try:
            while (request := await queue.get()) is not None:
                await call.write(request)
                self._written += 1
                if self._written == self._enqueued:
                    self._drained.set()
            await call.done_writing()
        except grpc.RpcError as err:
            self._fail(self._end_error or from_rpc_error(err))
        except asyncio.InvalidStateError:
            # The call has already finished; the reader reports how it ended.
            return

    async def _read_loop(self) -> None:
        try:
            async for response in self._call:
                self._route(response.results.tasks)
                if response.seq and self.error is None:
                    # Acknowledge at once: the queue manager frees the batch, or writes it
                    # again to the next stream of this session if the ack never arrives.
                    self._outq.put_nowait(ClientStreamRequest(ack=ResultAck(seq=response.seq)))
        except grpc.RpcError as err:
            self._fail(self._end_error or from_rpc_error(err))
        except Exception as exc:  # a bug in routing must not leave handles waiting forever
            logger.exception("client stream reader failed")
            self._fail(TransportError(f"client stream reader failed: {exc!r}"))
        else:
            ended = SessionClosed("the queue manager ended the client stream")
            self._fail(self._end_error or ended)

    def _route(self, tasks: Iterable[Task]) -> None:
        routes = self._routes
        failed = received = 0
        for task in tasks:
            task_id = task.id
            entry = routes.pop(task_id, None)
            index = -1 if entry is None else entry[1]
            if task.HasField("error"):
                result = TaskResult(index, task_id, b"", task.error)
                failed += 1
            else:
                result = TaskResult(index, task_id, task.payload, None)
            received += 1
            if entry is None:
                self._unclaimed.push(result)
            else:
                entry[0]._deliver(result)
        self._counters.failed += failed
        self._counters.completed += received - failed
        if len(routes) < self._window:
            self._space.set()

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
        for sink in sinks:
            sink._fail(error)
        self._space.set()
        self._drained.set()
        self._call.cancel()
        if self._writer is not asyncio.current_task():
            self._writer.cancel()

    async def aclose(self, error: AlpcrunError) -> None:
        """Cancel the call and fail what is pending with ``error``; waits for both loops."""
        self._fail(error)
        self._reader.cancel()
        await asyncio.wait([self._writer, self._reader])

    async def detach(self, error: AlpcrunError) -> None:
        """Send what is queued, half-close, then cancel the call (the session stays open).

        Tasks still unanswered fail with ``error`` here; the queue manager keeps their
        results for the next client that attaches.
        """
        self._end_error = error
        if self.error is None:
            self._flush_open()
            self._outq.put_nowait(None)
            await asyncio.wait([self._writer], timeout=DETACH_GRACE)
        await self.aclose(error)

    def set_end_error(self, error: AlpcrunError) -> None:
        """Use ``error`` for pending tasks if the server ends the stream (e.g. on close)."""
        self._end_error = error
