"""asyncio implementations of the core's outlets, one per stream kind."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

M = TypeVar("M")


class QueueOutlet(Generic[M]):
    """Messages for one outbound stream; ``close`` ends it after what is queued.

    Implements both ``WorkerControl`` and ``WorkerData``.
    """

    def __init__(self) -> None:
        self._items: deque[M] = deque()
        self._wakeup = asyncio.Event()
        self.closed = False

    def send(self, message: M) -> None:
        """Queue a message (never blocks)."""
        self._items.append(message)
        self._wakeup.set()

    def close(self) -> None:
        """End the stream once queued messages are written."""
        self.closed = True
        self._wakeup.set()

    async def next_batch(self) -> list[M] | None:
        """Wait for queued messages; None once closed and empty."""
        while not self._items:
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        items = list(self._items)
        self._items.clear()
        return items


class ClientStreamOutlet:
    """The attached client stream's side of a session (implements ``ClientOutlet``)."""

    def __init__(self) -> None:
        self.wakeup = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.closed = False
        self.superseded = False

    def results_ready(self) -> None:
        """Wake the writer."""
        self.wakeup.set()

    def room_available(self) -> None:
        """Wake a paused reader."""
        self.room.set()

    def close(self, *, superseded: bool = False) -> None:
        """End the stream after flushing (or abort at once when superseded)."""
        self.closed = True
        self.superseded = superseded
        self.wakeup.set()
        self.room.set()
