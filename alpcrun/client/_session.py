"""AsyncSession: submit, map, dead letters and lifecycle of one session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, Unpack

from alpcrun.client._attributes import SessionOptions, session_attributes
from alpcrun.client._deadletters import AsyncDeadLetters
from alpcrun.client._handle import TaskHandle
from alpcrun.client._map import MapRun, Payloads, ProgressCallback
from alpcrun.client._pending import IdSource, SeqFilter
from alpcrun.client._results import Counters, SessionStatistics, TaskResult, Unclaimed
from alpcrun.client._rpc import read_all
from alpcrun.client._shared import SessionSharedData, SharedClientFactory
from alpcrun.client._stream import TaskStream
from alpcrun.errors import AlpcrunError, SessionClosed, SessionError, SessionLost
from alpcrun.payload.store import PayloadStore, PayloadView
from alpcrun.payload.types import Tier
from alpcrun.proto import (
    CloseSessionRequest,
    DeadLettersRequest,
    PayloadRef,
    Session,
    SessionAttributes,
    SessionState,
    UpdateSessionRequest,
)

if TYPE_CHECKING:
    from alpcrun.client._rpc import Connection

logger = logging.getLogger(__name__)


class AsyncSession:
    """A session on the grid: submit tasks, map over payloads, collect results.

    Create one with :meth:`AsyncClient.session` (closed on exit), :meth:`AsyncClient.create_session`
    or :meth:`AsyncClient.attach_session`. The session's ``ClientStream`` opens on the first
    submit or map (at once on attach) and is shared by every handle and map of the session.
    A lost connection is re-established within the client's ``reconnect_timeout``: unanswered
    batches are sent again and each result is delivered once; pending handles and maps fail
    with ``ReconnectFailed`` after that, or ``SessionLost`` if the queue manager forgot the
    session (see docs/client.md).

    Attributes:
        id: The server-generated session id.
        attributes: The resolved ``SessionAttributes`` (refreshed by :meth:`update`).
        state: The ``SessionState`` last reported by the server.
    """

    def __init__(
        self,
        conn: Connection,
        info: Session,
        *,
        on_end: Callable[[AsyncSession], None] | None = None,
        shared: SharedClientFactory | None = None,
    ) -> None:
        self._conn = conn
        self.id: str = info.id
        self.attributes: SessionAttributes = info.attributes
        self.state: SessionState.ValueType = info.state
        self._on_end = on_end
        self._ids = IdSource()
        self._counters = Counters()
        self._receipts = SeqFilter()
        self._unclaimed = Unclaimed(conn.options.window)
        self._stream: TaskStream | None = None
        self._ended: AlpcrunError | None = None
        self._shared = SessionSharedData(self.id, shared)
        self._payloads: PayloadStore | None = None

    # -- tasks ----------------------------------------------------------------------------

    async def submit(
        self, payload: bytes, *, priority: int = 0, refs: Sequence[PayloadRef] = ()
    ) -> TaskHandle:
        """Submit one task; it is batched with other tasks sent in the same loop turn.

        Waits while the session's window of unsent plus unanswered tasks is full.

        Args:
            payload: The task's input bytes.
            priority: Batch priority within a priority-queue session (higher first).
            refs: Payloads the task reads (from :meth:`put`); the worker opens them.

        Returns:
            A handle; ``await handle`` gives the output bytes or raises ``TaskFailed``.

        Raises:
            SessionError: The session is closed or detached.
            AlpcrunError: The session's stream failed.
        """
        stream = self._live_stream()
        if stream.full():
            await stream.wait_space()
        handle = TaskHandle()
        handle._task_id = stream.add(payload, priority, handle, -1, refs)
        return handle

    async def map(
        self,
        payloads: Payloads,
        *,
        ordered: bool = False,
        priority: int = 0,
        progress: ProgressCallback | None = None,
    ) -> AsyncIterator[TaskResult]:
        """Run one task per payload and yield the results as they arrive.

        The input is pulled lazily: at most the session window's worth of tasks is submitted
        and not yet consumed. Failed tasks are yielded with ``error`` set; they do not stop
        the map.

        Args:
            payloads: Task inputs, from a plain or an async iterable.
            ordered: Yield in input order (buffering early results) instead of completion order.
            priority: Batch priority of the tasks.
            progress: Called with a :class:`Progress` at most every ~100 ms and once at the end.

        Yields:
            One :class:`TaskResult` per payload; ``index`` is the payload's position.

        Raises:
            SessionError: The session is closed or detached.
            AlpcrunError: The session's stream failed.
        """
        chunks = self._map_chunks(payloads, ordered, priority, progress)
        async with contextlib.aclosing(chunks) as it:
            async for chunk in it:
                for result in chunk:
                    yield result

    def _map_chunks(
        self,
        payloads: Payloads,
        ordered: bool,
        priority: int,
        progress: ProgressCallback | None,
    ) -> AsyncGenerator[list[TaskResult], None]:
        """The results of a map in chunks (what the sync twin moves across threads)."""
        options = self._conn.options
        run = MapRun(
            self._live_stream,
            ordered=ordered,
            priority=priority,
            progress=progress,
            window=options.window,
            yield_every=options.max_batch_tasks,
        )
        return run.chunks(payloads)

    # -- payloads -------------------------------------------------------------------------

    def _store(self) -> PayloadStore:
        if self._payloads is None:
            self._payloads = PayloadStore(self._conn.channel, self.id, self._conn.payloads)
        return self._payloads

    async def put(
        self,
        obj: Any,
        *,
        tier: Tier | None = None,
        ttl: float | timedelta | None = None,
        keep: bool = False,
        meta: Mapping[str, str] | None = None,
    ) -> PayloadRef:
        """Store a bytes-like object or NumPy array in the payload store; its reference.

        Tasks carry the reference (``submit(..., refs=[ref])``), never the bytes. The payload
        belongs to this session and is deleted when the session closes, unless ``keep`` or a
        ``ttl`` says otherwise. NumPy arrays keep their dtype and shape.

        Raises:
            ResourceExhausted: The session's payload quota, or every allowed tier, is full.
        """
        (ref,) = await self.put_many([obj], tier=tier, ttl=ttl, keep=keep, meta=meta)
        return ref

    async def put_many(
        self,
        objs: Sequence[Any],
        *,
        tier: Tier | None = None,
        ttl: float | timedelta | None = None,
        keep: bool = False,
        meta: Mapping[str, str] | None = None,
    ) -> list[PayloadRef]:
        """Store several objects with one allocation call; their references, in order."""
        ttl_s = ttl.total_seconds() if isinstance(ttl, timedelta) else (ttl or 0.0)
        return await self._store().put_many(objs, tier=tier, ttl_s=ttl_s, keep=keep, meta=meta)

    @contextlib.asynccontextmanager
    async def open(self, ref: PayloadRef) -> AsyncIterator[PayloadView]:
        """``async with session.open(ref) as view``: read-only bytes, a lease held inside.

        On the node that holds the payload the view maps its memory (``view.zero_copy``);
        elsewhere it is a copy fetched from that node. ``view.array()`` gives NumPy arrays back
        with their dtype and shape.
        """
        view = await self._store().open(ref)
        try:
            yield view
        finally:
            await view.aclose()

    async def get(self, ref: PayloadRef) -> bytes:
        """A private copy of a payload's bytes."""
        return await self._store().get(ref)

    async def delete(self, refs: PayloadRef | Sequence[PayloadRef]) -> None:
        """Delete payloads now (a payload still being read goes when its readers finish)."""
        await self._store().delete([refs] if isinstance(refs, PayloadRef) else refs)

    async def flush(self) -> None:
        """Send every partly filled batch now and wait until all batches are written."""
        if self._stream is not None and self._stream.error is None:
            await self._stream.flush()

    @property
    def dead_letter_queue(self) -> AsyncDeadLetters:
        """The session's dead-letter queue: list, inspect, resubmit and discard letters.

        See :class:`~alpcrun.client.AsyncDeadLetters`; :meth:`dead_letters` is the
        one-call snapshot of the same queue.
        """
        return AsyncDeadLetters(self._conn, self.id)

    async def dead_letters(self) -> list[TaskResult]:
        """Read the session's dead-letter queue (a snapshot; the tasks stay in it).

        Returns:
            One result per dead-lettered task, each with ``error`` set and ``index == -1``.
        """
        call = self._conn.stub.ClientStreamDeadLetters(
            DeadLettersRequest(session_id=self.id), metadata=self._conn.metadata
        )
        return [
            TaskResult(-1, task.id, task.payload, task.error if task.HasField("error") else None)
            for batch in await read_all(call)
            for task in batch.tasks
        ]

    async def unclaimed_results(self, *, wait: float | None = 0.0) -> list[TaskResult]:
        """Take the results of tasks this object did not submit (e.g. after an attach).

        Args:
            wait: When none is buffered, wait up to this many seconds for some
                (``None``: no limit).

        Returns:
            The buffered results (``index == -1``), possibly empty.
        """
        if not self._unclaimed and wait != 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._unclaimed.arrived.wait()
        return self._unclaimed.take()

    def statistics(self) -> SessionStatistics:
        """Task, reconnect and duplicate counters of this session object."""
        counters = self._counters
        pending = self._stream.pending if self._stream is not None else 0
        return SessionStatistics(
            counters.submitted,
            counters.completed,
            counters.failed,
            pending,
            reconnects=counters.reconnects,
            duplicate_messages=self._receipts.dropped,
            duplicate_tasks=counters.duplicate_tasks,
        )

    # -- attributes and lifecycle ---------------------------------------------------------

    async def update(self, **attrs: Unpack[SessionOptions]) -> None:
        """Change session attributes live; attributes not given stay as they are.

        ``tags`` and ``worker_selector`` replace the current values when given.

        Raises:
            TypeError: An unknown attribute or a value of the wrong type.
            InvalidArgument: The server refused a value (``field`` names it).
            ReconnectFailed: The queue manager could not be reached within reconnect_timeout.
            SessionLost: The queue manager no longer knows the session.
        """
        request = UpdateSessionRequest(
            session_id=self.id, attributes=session_attributes(attrs, create=False)
        )
        conn = self._conn
        info = await conn.unary(conn.stub.UpdateSession, request, session_id=self.id)
        self.attributes = info.attributes
        self.state = info.state

    # -- shared data ------------------------------------------------------------------------

    async def set_shared_data(self, data: bytes, *, ttl: float | timedelta | None = None) -> int:
        """Upload the session's shared data (level 1) to the central cache.

        Every batch submitted afterwards is marked ``use_shared_data`` with
        ``required_shared_data_update_level`` 1; workers read it with ``task.shared_data()``.

        Args:
            data: The value (any size up to the cache's ``max_value_bytes``; streamed in chunks).
            ttl: Seconds (or a timedelta) the value lives; None: the cache's ``max_ttl``.

        Returns:
            The level stored (1).

        Raises:
            SharedDataExists: The session already has shared data (use update_shared_data).
            InvalidArgument: ``ttl`` above the cache's max_ttl, or ``data`` too large.
            ResourceExhausted: The central cache is full.
        """
        level = await self._shared.set(data, ttl)
        self._live_stream().set_shared_level(level)
        return level

    async def update_shared_data(self, data: bytes, *, ttl: float | timedelta | None = None) -> int:
        """Upload a new level of the shared data; batches submitted afterwards require it.

        Tasks already submitted keep reading the level they were submitted with (it stays in
        the caches until its own TTL ends).

        Returns:
            The new level.
        """
        level = await self._shared.update(data, ttl)
        self._live_stream().set_shared_level(level)
        return level

    @property
    def shared_data_level(self) -> int:
        """The shared-data level new batches require (0: none)."""
        return self._shared.level

    async def close(self) -> None:
        """Close the session (``CloseSession``); tasks still pending fail with ``SessionClosed``.

        Closing twice is a no-op. ``CloseSession`` is retried on connection failures within
        the client's ``reconnect_timeout``.

        Raises:
            ReconnectFailed: The queue manager could not be reached within reconnect_timeout.
            SessionLost: The queue manager no longer knows the session (unless the session's
                stream found that out already: then there is nothing to close).
        """
        if self._lost() or self._ended is not None:
            return
        error: AlpcrunError = SessionClosed(f"session {self.id} was closed")
        self._ended = error
        stream = self._stream
        if stream is not None:
            stream.set_end_error(error)
        conn = self._conn
        try:
            request = CloseSessionRequest(session_id=self.id)
            reply = await conn.unary(conn.stub.CloseSession, request, session_id=self.id)
            self.state = reply.session.state
        except AlpcrunError as exc:
            error = exc
            raise
        finally:
            if stream is not None:
                await stream.aclose(error)
            self._notify_end()
            await self._shared.delete()
            await self._close_store()

    async def detach(self) -> None:
        """End this client's stream but leave the session open on the server.

        Queued batches are sent first; results of unanswered tasks stay buffered on the server
        for the next :meth:`AsyncClient.attach_session`, and this object's pending handles and
        maps fail with ``SessionError``.
        """
        if self._lost() or self._ended is not None:
            return
        error = SessionError(f"session {self.id} was detached before the result arrived")
        self._ended = error
        try:
            if self._stream is not None:
                await self._stream.detach(error)
        finally:
            self._notify_end()
            await self._close_store()

    async def _close_store(self) -> None:
        if self._payloads is not None:
            store, self._payloads = self._payloads, None
            await store.close()

    def _lost(self) -> bool:
        """Whether the queue manager lost the session; if so this object is finished."""
        stream = self._stream
        if self._ended is None and stream is not None and isinstance(stream.error, SessionLost):
            self._ended = stream.error
            self._notify_end()
        return isinstance(self._ended, SessionLost)

    def _live_stream(self) -> TaskStream:
        self._lost()
        if self._ended is not None:
            raise self._ended.with_traceback(None)
        stream = self._stream
        if stream is None or stream.error is not None:
            # The old stream gave up (or failed for good): a new one starts a new attempt.
            stream = self._stream = TaskStream(
                self._conn, self.id, self._ids, self._counters, self._unclaimed, self._receipts
            )
            stream.set_shared_level(self._shared.level)
        return stream

    def _notify_end(self) -> None:
        if self._on_end is not None:
            self._on_end(self)
            self._on_end = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.close()
        except AlpcrunError:
            if exc is None:
                raise
            logger.warning("closing session %s failed", self.id, exc_info=True)

    def __repr__(self) -> str:
        return f"<AsyncSession {self.id} app_id={self.attributes.app_id!r}>"
