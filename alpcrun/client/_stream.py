"""One session's ``ClientStream``: batches the tasks submitted and wires the parts that send them.

:class:`TaskStream` is what sessions and maps use. It drives the batcher (a task is packed at
once; a partly filled batch goes after the linger time) and keeps the window of unsent plus
unanswered tasks; the rest is done by small parts it owns: the
:class:`~alpcrun.client._router.Router` (task id → sink routing table), the
:class:`~alpcrun.client._writer.Writer` (outgoing queue and write loop), the
:class:`~alpcrun.client._reader.Reader` (result messages, seq filter, acks) and the
:class:`~alpcrun.client._supervisor.Supervisor` (the gRPC call, reconnects and resends).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from alpcrun.client._batcher import Batcher, PackedBatch
from alpcrun.client._pending import IdSource, SeqFilter, Unfinished
from alpcrun.client._reader import Reader
from alpcrun.client._results import Counters, Unclaimed
from alpcrun.client._router import Router, Sink
from alpcrun.client._rpc import Connection
from alpcrun.client._supervisor import Supervisor
from alpcrun.client._writer import Writer
from alpcrun.errors import AlpcrunError
from alpcrun.proto import PayloadRef

DETACH_GRACE = 5.0
"""Seconds ``detach`` waits for queued batches to be written before it cancels the call."""


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
        self._loop = asyncio.get_running_loop()
        self._ids = ids
        self._counters = counters
        self._linger = options.linger
        self._unfinished = Unfinished()
        self._router = Router(
            ids=ids,
            counters=counters,
            unclaimed=unclaimed,
            unfinished=self._unfinished,
            window=options.window,
        )
        self._routes = self._router.routes  # written here directly: the per-task path
        self._window = options.window
        self._writer = Writer(self._unfinished, session_id)
        self._batcher = Batcher(
            session_id=session_id,
            new_batch_id=ids.batch_id,
            max_tasks=options.max_batch_tasks,
            max_bytes=options.max_batch_bytes,
            emit=self._emit,
        )
        self._flush_handle: asyncio.Handle | None = None
        self.error: AlpcrunError | None = None
        """Set once the stream has ended for good; new tasks need a new stream."""
        self._supervisor = Supervisor(
            conn,
            session_id,
            writer=self._writer,
            reader=Reader(self._router, receipts, self._writer),
            counters=counters,
            on_fail=self._fail,
        )
        self._supervisor.start()

    # -- submitting -------------------------------------------------------------------------

    def add(
        self,
        payload: bytes,
        priority: int,
        sink: Sink,
        index: int,
        refs: Sequence[PayloadRef] = (),
    ) -> str:
        """Queue one task for sending and route its result to ``sink``.

        Args:
            payload: The task's input bytes.
            refs: Payloads the task reads.
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
        self._routes[task_id] = (sink, index, self._batcher.add(task_id, payload, priority, refs))
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
        space = self._router.space
        while self.error is None and len(self._routes) >= self._window:
            space.clear()
            await space.wait()
        if self.error is not None:
            raise self.error.with_traceback(None)

    async def flush(self) -> None:
        """Send every partly filled batch now and wait until all batches are written.

        While the stream is reconnecting this waits for the new call to take them.

        Raises:
            AlpcrunError: The stream ended before everything was written.
        """
        self._flush_open()
        await self._writer.wait_written()
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
        self._writer.send(batch)

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
        self._unfinished.clear()
        self._router.fail(error)
        self._writer.close()
        self._supervisor.close()

    async def aclose(self, error: AlpcrunError) -> None:
        """Cancel the call and fail what is pending with ``error``; waits for the tasks."""
        self._fail(error)
        tasks = [t for t in (self._supervisor.task, self._writer.task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)

    async def detach(self, error: AlpcrunError) -> None:
        """Send what is queued, half-close, then cancel the call (the session stays open).

        Tasks still unanswered fail with ``error`` here; the queue manager keeps their
        results for the next client that attaches.
        """
        self._supervisor.end_error = error
        if self.error is None:
            with contextlib.suppress(TimeoutError, AlpcrunError):
                async with asyncio.timeout(DETACH_GRACE):
                    await self.flush()
                    self._writer.half_close()
                    if self._writer.task is not None:
                        await asyncio.wait([self._writer.task])
        await self.aclose(error)

    def set_end_error(self, error: AlpcrunError) -> None:
        """Use ``error`` for pending tasks if the stream ends now (e.g. on close): no reconnect."""
        self._supervisor.end_error = error
