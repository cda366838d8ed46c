"""The engine of ``AsyncSession.map``: one feeder task, one routing sink, results in chunks.

A map creates no future or task per task: its feeder pulls payloads lazily and adds them to
the session's stream with the map itself as the routing sink; the reader appends results to
the map's buffer and sets one event; the consumer takes everything ready as one chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alpcrun.client._results import Progress, TaskResult
from alpcrun.proto import PayloadRef

if TYPE_CHECKING:
    from alpcrun.client._stream import TaskStream
    from alpcrun.errors import AlpcrunError


@dataclass(frozen=True, slots=True)
class TaskInput:
    """A task input that carries payload references as well as its bytes (``map`` items)."""

    payload: bytes
    """The task's input bytes."""
    refs: tuple[PayloadRef, ...] = ()
    """Payloads the task reads (from ``session.put``)."""


Payloads = Iterable[bytes | TaskInput] | AsyncIterable[bytes | TaskInput]
"""The input of a map: payloads (or :class:`TaskInput` items) from a plain or async iterable."""
ProgressCallback = Callable[[Progress], object]
"""Called with the map's counts at most every ~100 ms and once at the end."""

PROGRESS_INTERVAL = 0.1
"""Least seconds between two progress calls of one map."""


class MapRun:
    """One ``map`` call: feeds payloads into the stream and hands back results in chunks.

    At most ``window`` tasks of the map are submitted and not yet consumed, so a slow
    consumer (or an ordered map waiting for a slow task) holds back the input.

    Args:
        open_stream: Returns the session's live stream.
        ordered: Yield in input order instead of completion order.
        priority: Batch priority of the map's tasks.
        progress: Optional progress callback.
        window: Most tasks submitted and not yet consumed.
        yield_every: The feeder lets the event loop run after this many tasks (one batch).
    """

    __slots__ = (
        "_closed",
        "_completed",
        "_consumed",
        "_error",
        "_failed",
        "_input_done",
        "_last_progress",
        "_loop",
        "_next",
        "_open_stream",
        "_ordered",
        "_parked",
        "_priority",
        "_progress",
        "_ready",
        "_ready_event",
        "_room_event",
        "_submitted",
        "_window",
        "_yield_every",
    )

    def __init__(
        self,
        open_stream: Callable[[], TaskStream],
        *,
        ordered: bool,
        priority: int,
        progress: ProgressCallback | None,
        window: int,
        yield_every: int,
    ) -> None:
        self._open_stream = open_stream
        self._ordered = ordered
        self._priority = priority
        self._progress = progress
        self._window = window
        self._yield_every = max(1, yield_every)
        self._loop = asyncio.get_running_loop()
        self._ready: list[TaskResult] = []
        self._parked: dict[int, TaskResult] = {}
        self._next = 0
        self._ready_event = asyncio.Event()
        self._room_event = asyncio.Event()
        self._submitted = self._consumed = self._completed = self._failed = 0
        self._input_done = self._closed = False
        self._error: BaseException | None = None
        self._last_progress = self._loop.time()

    # -- routing sink ---------------------------------------------------------------------

    def _deliver(self, result: TaskResult) -> None:
        if self._closed:
            return
        if result.error is None:
            self._completed += 1
        else:
            self._failed += 1
        if self._ordered:
            self._parked[result.index] = result
        else:
            self._ready.append(result)
        self._ready_event.set()

    def _fail(self, error: AlpcrunError) -> None:
        self._set_error(error)

    def _set_error(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._ready_event.set()
        self._room_event.set()

    # -- consumer -------------------------------------------------------------------------

    async def chunks(self, payloads: Payloads) -> AsyncGenerator[list[TaskResult], None]:
        """Run the map, yielding the results as they become ready, in chunks.

        Args:
            payloads: The task inputs.

        Yields:
            Lists of results, in completion order (or input order when ordered).

        Raises:
            AlpcrunError: The stream failed, or the session was closed or detached.
            Exception: Whatever the input iterable raised (or TypeError for a non-bytes item).
        """
        feeder = asyncio.create_task(self._feed(payloads), name="alpcrun-map-feeder")
        try:
            while True:
                chunk = self._take()
                if chunk:
                    self._consumed += len(chunk)
                    self._room_event.set()
                    self._report(final=False)
                    yield chunk
                elif self._error is not None:
                    raise self._error
                elif self._input_done and self._consumed == self._submitted:
                    break
                else:
                    self._ready_event.clear()
                    await self._ready_event.wait()
            self._report(final=True)
        finally:
            self._closed = True
            self._parked.clear()
            self._ready.clear()
            feeder.cancel()
            await asyncio.wait([feeder])

    def _take(self) -> list[TaskResult]:
        if not self._ordered:
            chunk, self._ready = self._ready, []
            return chunk
        parked, index, chunk = self._parked, self._next, []
        while (result := parked.pop(index, None)) is not None:
            chunk.append(result)
            index += 1
        self._next = index
        return chunk

    def _report(self, *, final: bool) -> None:
        if self._progress is None:
            return
        now = self._loop.time()
        if final or now - self._last_progress >= PROGRESS_INTERVAL:
            self._last_progress = now
            self._progress(Progress(self._submitted, self._completed, self._failed))

    # -- feeder ---------------------------------------------------------------------------

    async def _feed(self, payloads: Payloads) -> None:
        try:
            stream = self._open_stream()
            if isinstance(payloads, AsyncIterable):
                async for payload in payloads:
                    await self._add(stream, payload)
            else:
                for payload in payloads:
                    await self._add(stream, payload)
        except Exception as exc:  # the consumer re-raises it
            self._set_error(exc)
        else:
            self._input_done = True
            self._ready_event.set()

    async def _add(self, stream: TaskStream, payload: bytes | TaskInput) -> None:
        if stream.full() or self._submitted - self._consumed >= self._window:
            await stream.wait_space()
            while self._error is None and self._submitted - self._consumed >= self._window:
                self._room_event.clear()
                await self._room_event.wait()
        if self._error is not None:
            raise self._error
        index = self._submitted
        if isinstance(payload, TaskInput):
            stream.add(payload.payload, self._priority, self, index, payload.refs)
        else:
            stream.add(payload, self._priority, self, index)
        self._submitted = index + 1
        if self._submitted % self._yield_every == 0:
            # Let the writer send the batch just filled while the next one is built.
            await asyncio.sleep(0)
