"""Single-flight: concurrent requests for one key share one call of the fetch function."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """At most one fetch per key in flight; callers that arrive meanwhile join it.

    When the fetch fails, every caller waiting on it gets the same exception and the key is
    free again, so the next call starts a new fetch. A joined caller that is cancelled does
    not cancel the fetch for the others; the fetch runs in its own task.
    """

    def __init__(self) -> None:
        self._inflight: dict[K, asyncio.Future[V]] = {}
        self.fetches = 0
        """Fetches started."""
        self.joins = 0
        """Calls that joined a fetch already in flight."""

    def inflight(self) -> int:
        """Keys being fetched now."""
        return len(self._inflight)

    async def do(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        """Return ``await fetch()``, sharing one in-flight call per ``key``."""
        fut = self._inflight.get(key)
        if fut is not None:
            self.joins += 1
            return await asyncio.shield(fut)
        self.fetches += 1
        task: asyncio.Future[V] = asyncio.ensure_future(fetch())
        self._inflight[key] = task
        task.add_done_callback(lambda _f: self._forget(key, task))
        return await asyncio.shield(task)

    def _forget(self, key: K, task: asyncio.Future[V]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here so an unjoined failure is not logged as lost
