"""Blocking twins of AsyncClient, AsyncSession and AsyncDeadLetters, run on a loop thread.

``Client`` owns one asyncio loop in a daemon thread and hands every call to it with
``asyncio.run_coroutine_threadsafe``. ``Session.map`` moves results across threads in chunks
(one queue hand-off per received chunk, not per task) through a bounded thread-safe queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

from alpcrun.client._attributes import SessionOptions
from alpcrun.client._client import AsyncClient
from alpcrun.client._deadletters import (
    DEFAULT_PAGE,
    AsyncDeadLetters,
    DeadLetterInfo,
    DeadLetterOutcome,
    DeadLetterPage,
    named_task_ids,
)
from alpcrun.client._map import ProgressCallback
from alpcrun.client._results import SessionStatistics, TaskResult
from alpcrun.client._session import AsyncSession
from alpcrun.config import ClientSettings
from alpcrun.payload.store import PayloadView
from alpcrun.payload.types import Tier
from alpcrun.proto import PayloadRef, SessionAttributes

T = TypeVar("T")

MAX_QUEUED_CHUNKS = 16
"""Result chunks a sync map buffers for its consumer before the loop side waits."""


class _Loop:
    """A private event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="alpcrun-client-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            # As asyncio.run does: nothing is left pending when the loop closes.
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("blocking alpcrun calls cannot run on the client's loop thread")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return self.submit(coro).result(timeout)

    def stop(self) -> None:
        """Stop the loop and join its thread."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()


class _End:
    """End marker of a sync map's chunk queue, carrying the map's error if it failed."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class DeadLetters:
    """Blocking twin of :class:`AsyncDeadLetters` (same methods, same meaning).

    Get one from ``Session.dead_letter_queue`` or :meth:`for_session`.

    Args:
        adlq: The async dead-letter queue to run.
        loop: The client's private loop thread.
    """

    def __init__(self, adlq: AsyncDeadLetters, loop: _Loop) -> None:
        self._async = adlq
        self._loop = loop
        self.session_id = adlq.session_id

    @classmethod
    def for_session(cls, client: Client, session_id: str) -> DeadLetters:
        """The dead-letter queue of a session known by id, without attaching to it."""
        adlq = client._loop.run(_open(client._async, session_id))
        return cls(adlq, client._loop)

    def list(
        self, *, limit: int = DEFAULT_PAGE, after: str = "", include_payload: bool = False
    ) -> DeadLetterPage:
        """Read one page of dead letters, oldest first."""
        return self._loop.run(
            self._async.list(limit=limit, after=after, include_payload=include_payload)
        )

    def pages(
        self, *, page_size: int = DEFAULT_PAGE, include_payload: bool = False
    ) -> Iterator[DeadLetterPage]:
        """Iterate over every page of dead letters, oldest first."""
        after = ""
        while True:
            page = self.list(limit=page_size, after=after, include_payload=include_payload)
            yield page
            if not page.next_after:
                return
            after = page.next_after

    def get(self, task_id: str) -> DeadLetterInfo:
        """Read one dead letter, with its payload."""
        return self._loop.run(self._async.get(task_id))

    def resubmit(
        self, task_ids: Iterable[str] | None = None, *, reset_attempts: bool = False
    ) -> DeadLetterOutcome:
        """Queue dead letters again (all when ``task_ids`` is None)."""
        ids = named_task_ids(task_ids)  # consume the iterable on the caller's thread
        return self._loop.run(self._async.resubmit(ids, reset_attempts=reset_attempts))

    def discard(self, task_ids: Iterable[str] | None = None) -> DeadLetterOutcome:
        """Drop dead letters for good (all when ``task_ids`` is None)."""
        ids = named_task_ids(task_ids)
        return self._loop.run(self._async.discard(ids))

    def __repr__(self) -> str:
        return f"<DeadLetters of session {self.session_id}>"


async def _open(client: AsyncClient, session_id: str) -> AsyncDeadLetters:
    """Build the async queue on the loop thread, so a channel it opens belongs to that loop."""
    return AsyncDeadLetters.for_session(client, session_id)


class Session:
    """Blocking twin of :class:`~alpcrun.client.AsyncSession` (same methods, same meaning).

    Attributes:
        id: The server-generated session id.
    """

    def __init__(self, asession: AsyncSession, loop: _Loop) -> None:
        self._async = asession
        self._loop = loop
        self.id = asession.id

    @property
    def attributes(self) -> SessionAttributes:
        """The resolved ``SessionAttributes`` (refreshed by :meth:`update`)."""
        return self._async.attributes

    def submit(
        self, payload: bytes, *, priority: int = 0, refs: Sequence[PayloadRef] = ()
    ) -> concurrent.futures.Future[bytes]:
        """Submit one task.

        Args:
            payload: The task's input bytes.
            priority: Batch priority within a priority-queue session.
            refs: Payloads the task reads (from :meth:`put`).

        Returns:
            A future; ``.result(timeout)`` gives the output bytes or raises ``TaskFailed``.
        """
        return self._loop.submit(self._submit_and_wait(payload, priority, refs))

    async def _submit_and_wait(
        self, payload: bytes, priority: int, refs: Sequence[PayloadRef]
    ) -> bytes:
        return await (await self._async.submit(payload, priority=priority, refs=refs))

    def put(
        self,
        obj: Any,
        *,
        tier: Tier | None = None,
        ttl: float | timedelta | None = None,
        keep: bool = False,
        meta: Mapping[str, str] | None = None,
    ) -> PayloadRef:
        """Store a bytes-like object or NumPy array in the payload store; its reference."""
        return self._loop.run(self._async.put(obj, tier=tier, ttl=ttl, keep=keep, meta=meta))

    def put_many(
        self,
        objs: Sequence[Any],
        *,
        tier: Tier | None = None,
        ttl: float | timedelta | None = None,
        keep: bool = False,
        meta: Mapping[str, str] | None = None,
    ) -> list[PayloadRef]:
        """Store several objects with one allocation call; their references, in order."""
        put = self._async.put_many(objs, tier=tier, ttl=ttl, keep=keep, meta=meta)
        return self._loop.run(put)

    @contextlib.contextmanager
    def open(self, ref: PayloadRef) -> Iterator[PayloadView]:
        """``with session.open(ref) as view``: read-only bytes, a lease held inside."""
        opening = self._async.open(ref)
        view = self._loop.run(opening.__aenter__())
        try:
            yield view
        finally:
            self._loop.run(opening.__aexit__(None, None, None))

    def get(self, ref: PayloadRef) -> bytes:
        """A private copy of a payload's bytes."""
        return self._loop.run(self._async.get(ref))

    def delete(self, refs: PayloadRef | Sequence[PayloadRef]) -> None:
        """Delete payloads now (one still being read goes when its readers finish)."""
        self._loop.run(self._async.delete(refs))

    def map(
        self,
        payloads: Iterable[bytes],
        *,
        ordered: bool = False,
        priority: int = 0,
        progress: ProgressCallback | None = None,
    ) -> Iterator[TaskResult]:
        """Run one task per payload and iterate over the results as they arrive.

        The input iterable is consumed on the client's loop thread, lazily; ``progress`` is
        called on that thread too. Stopping the iteration early cancels the rest of the map.

        Args:
            payloads: Task inputs.
            ordered: Yield in input order instead of completion order.
            priority: Batch priority of the tasks.
            progress: Called with a ``Progress`` at most every ~100 ms and once at the end.

        Returns:
            An iterator of :class:`TaskResult`, one per payload.
        """
        return self._iterate(payloads, ordered, priority, progress)

    def _iterate(
        self,
        payloads: Iterable[bytes],
        ordered: bool,
        priority: int,
        progress: ProgressCallback | None,
    ) -> Iterator[TaskResult]:
        chunks: queue.Queue[list[TaskResult] | _End] = queue.Queue()
        room = asyncio.Event()
        loop = self._loop.loop
        future = self._loop.submit(self._pump(payloads, ordered, priority, progress, chunks, room))
        try:
            while not isinstance(item := chunks.get(), _End):
                loop.call_soon_threadsafe(room.set)
                yield from item
            if item.error is not None:
                raise item.error
        finally:
            future.cancel()

    async def _pump(
        self,
        payloads: Iterable[bytes],
        ordered: bool,
        priority: int,
        progress: ProgressCallback | None,
        chunks: queue.Queue[list[TaskResult] | _End],
        room: asyncio.Event,
    ) -> None:
        error: BaseException | None = None
        source = self._async._map_chunks(payloads, ordered, priority, progress)
        try:
            async with contextlib.aclosing(source) as results:
                async for chunk in results:
                    while chunks.qsize() >= MAX_QUEUED_CHUNKS:
                        room.clear()
                        if chunks.qsize() < MAX_QUEUED_CHUNKS:
                            break
                        await room.wait()
                    chunks.put(chunk)
        except Exception as exc:  # handed to the consuming thread
            error = exc
        finally:
            chunks.put(_End(error))

    def flush(self) -> None:
        """Send every partly filled batch now and wait until all batches are written."""
        self._loop.run(self._async.flush())

    @property
    def dead_letter_queue(self) -> DeadLetters:
        """The session's dead-letter queue: list, inspect, resubmit and discard letters."""
        return DeadLetters(self._async.dead_letter_queue, self._loop)

    def dead_letters(self) -> list[TaskResult]:
        """Read the session's dead-letter queue (a snapshot)."""
        return self._loop.run(self._async.dead_letters())

    def unclaimed_results(self, *, wait: float | None = 0.0) -> list[TaskResult]:
        """Take the results of tasks this object did not submit (e.g. after an attach)."""
        return self._loop.run(self._async.unclaimed_results(wait=wait))

    def set_shared_data(self, data: bytes, *, ttl: float | timedelta | None = None) -> int:
        """Upload the session's shared data (level 1); later batches require it."""
        return self._loop.run(self._async.set_shared_data(data, ttl=ttl))

    def update_shared_data(self, data: bytes, *, ttl: float | timedelta | None = None) -> int:
        """Upload the next level of the shared data; later batches require it."""
        return self._loop.run(self._async.update_shared_data(data, ttl=ttl))

    @property
    def shared_data_level(self) -> int:
        """The shared-data level new batches require (0: none)."""
        return self._async.shared_data_level

    def update(self, **attrs: Unpack[SessionOptions]) -> None:
        """Change session attributes live; attributes not given stay as they are."""
        self._loop.run(self._async.update(**attrs))

    def statistics(self) -> SessionStatistics:
        """Task counters of this session object."""
        return self._async.statistics()

    def close(self) -> None:
        """Close the session; pending futures fail with ``SessionClosed``."""
        self._loop.run(self._async.close())

    def detach(self) -> None:
        """End this client's stream but leave the session open on the server."""
        self._loop.run(self._async.detach())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._loop.run(self._async.__aexit__(exc_type, exc, tb))

    def __repr__(self) -> str:
        return f"<Session {self.id}>"


class Client:
    """Blocking twin of :class:`~alpcrun.client.AsyncClient`.

    ::

        with Client("localhost:1337", api_key="k") as client:
            with client.session(app_id="demo") as session:
                for result in session.map([b"a", b"b"]):
                    print(result.value())

    Args:
        address: Queue manager ``host:port``; overrides ``settings.queue_manager``.
        api_key: API key sent on every call; overrides ``settings.api_key``.
        settings: Client settings; default ``load_settings(ClientSettings)``.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        api_key: str | None = None,
        settings: ClientSettings | None = None,
    ) -> None:
        self._loop = _Loop()
        try:
            self._async = self._loop.run(_make_client(address, api_key, settings))
        except BaseException:
            self._loop.stop()
            raise
        self._closed = False

    @property
    def settings(self) -> ClientSettings:
        """The effective settings."""
        return self._async.settings

    def create_session(self, **attrs: Unpack[SessionOptions]) -> Session:
        """Create a session; it stays open until closed explicitly."""
        return Session(self._loop.run(self._async.create_session(**attrs)), self._loop)

    @contextlib.contextmanager
    def session(self, **attrs: Unpack[SessionOptions]) -> Iterator[Session]:
        """Create a session for the ``with`` block and close it afterwards."""
        with self.create_session(**attrs) as session:
            yield session

    def attach_session(self, session_id: str) -> Session:
        """Attach to an existing session (its buffered results go to ``unclaimed_results``)."""
        return Session(self._loop.run(self._async.attach_session(session_id)), self._loop)

    def close(self) -> None:
        """Detach open sessions, close the channel and stop the loop thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._async.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client {self._async.settings.queue_manager}>"


async def _make_client(
    address: str | None, api_key: str | None, settings: ClientSettings | None
) -> AsyncClient:
    """Build the async client on the loop thread, so its channel belongs to that loop."""
    return AsyncClient(address, api_key=api_key, settings=settings)


__all__ = ["Client", "DeadLetters", "Session"]
