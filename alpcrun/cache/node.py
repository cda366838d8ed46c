"""The node cache: shared data from a byte-bounded LRU, misses pulled from the central cache.

A hit is answered from memory, in one unary reply when the value fits one chunk
(``GetSharedDataUnary``) and as a chunk stream otherwise. A miss (absent, expired, or a level
this node never saw, e.g. a higher one after an update) goes to the central cache; concurrent
misses for one (session, level) share a single fetch (:class:`SingleFlight`), and the fetched
value is kept with the TTL the central cache reported. When the central cache is down, hits
keep being served and misses fail with UNAVAILABLE.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc.aio

from alpcrun._clock import Clock
from alpcrun.cache.chunks import DEFAULT_CHUNK_BYTES
from alpcrun.cache.client import SharedDataClient
from alpcrun.cache.lru import CacheKey, LruStatistics, NodeEntry, NodeLRU
from alpcrun.cache.singleflight import SingleFlight
from alpcrun.cache.ttl import check_session_id
from alpcrun.errors import AlpcrunError, InvalidArgument, TransportError, Unavailable
from alpcrun.proto import (
    GetSharedDataRequest,
    NodeCacheServicer,
    SharedDataChunk,
    SharedDataHeader,
)
from alpcrun.proto.status import abort_with

log = logging.getLogger("alpcrun.cache.node")
Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True, slots=True)
class NodeCacheStatistics:
    """The node cache's counters: its LRU's plus the fetches from the central cache."""

    lru: LruStatistics
    """The LRU's counters and gauges."""
    central_fetches: int
    """Fetches started against the central cache."""
    central_fetch_failures: int
    """Fetches that failed."""
    singleflight_joins: int
    """Misses that joined a fetch already in flight instead of starting one."""
    bytes_fetched: int
    """Value bytes received from the central cache."""
    bytes_served: int
    """Value bytes streamed to readers."""


class NodeCache:
    """LRU + single-flight pull-through in front of a central cache (no gRPC server here)."""

    def __init__(
        self,
        *,
        lru: NodeLRU,
        central: SharedDataClient,
        clock: Clock,
        fetch_timeout_s: float = 120.0,
    ) -> None:
        self.lru = lru
        self.central = central
        self._clock = clock
        self.fetch_timeout_s = fetch_timeout_s
        self._flight: SingleFlight[CacheKey, NodeEntry] = SingleFlight()
        self._failures = 0
        self._fetched = 0
        self.bytes_served = 0

    async def get(self, session_id: str, level: int) -> NodeEntry:
        """The entry for (session, level): from the LRU, or fetched once from the central cache."""
        entry = self.cached(session_id, level)
        if entry is not None:
            return entry
        return await self.fetch(session_id, level)

    def cached(self, session_id: str, level: int) -> NodeEntry | None:
        """The entry if this node holds it (a hit), else None (a miss: :meth:`fetch` it).

        Synchronous, so a hit costs no coroutine.
        """
        if level < 1:
            raise InvalidArgument("update_level must be at least 1", field="update_level")
        check_session_id(session_id)
        return self.lru.get((session_id, level))

    async def fetch(self, session_id: str, level: int) -> NodeEntry:
        """Fetch (session, level) from the central cache, one fetch for concurrent callers."""
        key = (session_id, level)
        return await self._flight.do(key, lambda: self._fetch(key))

    async def _fetch(self, key: CacheKey) -> NodeEntry:
        try:
            parts, ttl_s = await self.central.get_chunks(
                key[0], key[1], deadline_s=self.fetch_timeout_s
            )
        except TransportError as exc:
            self._failures += 1
            raise Unavailable(
                f"central cache unreachable and ({key[0]}, level {key[1]}) is not cached on "
                f"this node: {exc}"
            ) from exc
        except AlpcrunError:
            self._failures += 1
            raise
        entry = self.lru.put(key, parts, ttl_s)
        self._fetched += entry.size
        return entry

    def statistics(self) -> NodeCacheStatistics:
        """A snapshot of the counters."""
        return NodeCacheStatistics(
            lru=self.lru.statistics(),
            central_fetches=self._flight.fetches,
            central_fetch_failures=self._failures,
            singleflight_joins=self._flight.joins,
            bytes_fetched=self._fetched,
            bytes_served=self.bytes_served,
        )


def entry_header(request: GetSharedDataRequest, entry: NodeEntry, now: float) -> SharedDataHeader:
    """The header a reader gets for ``entry``: its size and the TTL it has left at ``now``."""
    return SharedDataHeader(
        session_id=request.session_id,
        update_level=request.update_level,
        size_bytes=entry.size,
        ttl_ms=max(1, int(entry.ttl_left(now) * 1000)),
    )


class NodeCacheService(NodeCacheServicer):
    """The NodeCache gRPC service over a :class:`NodeCache`."""

    def __init__(self, cache: NodeCache, clock: Clock, chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        self.cache = cache
        self._clock = clock
        self.chunk_bytes = chunk_bytes

    def _header(self, request: GetSharedDataRequest, entry: NodeEntry) -> SharedDataHeader:
        return entry_header(request, entry, self._clock.monotonic())

    async def GetSharedDataUnary(
        self, request: GetSharedDataRequest, context: Context
    ) -> SharedDataChunk:
        """(session, level) in one reply when it fits one chunk; else the header alone."""
        try:
            entry = self.cache.cached(request.session_id, request.update_level)
            if entry is None:
                entry = await self.cache.fetch(request.session_id, request.update_level)
        except AlpcrunError as exc:
            await abort_with(context, exc)
        header = self._header(request, entry)
        if entry.size > self.chunk_bytes:
            return SharedDataChunk(header=header)  # the caller streams it with GetSharedData
        self.cache.bytes_served += entry.size
        return SharedDataChunk(header=header, data=entry.value)

    async def GetSharedData(
        self, request: GetSharedDataRequest, context: Context
    ) -> AsyncIterator[SharedDataChunk]:
        """Stream (session, level) from this node, fetching it first on a miss."""
        try:
            entry = await self.cache.get(request.session_id, request.update_level)
        except AlpcrunError as exc:
            await abort_with(context, exc)
        header = self._header(request, entry)
        first = True
        for part in entry.chunks:
            # Chunks as they came from the central cache; re-split only if one is too big.
            pieces = [part] if len(part) <= self.chunk_bytes else self._pieces(part)
            for piece in pieces:
                if first:
                    yield SharedDataChunk(header=header, data=piece)
                    first = False
                else:
                    yield SharedDataChunk(data=piece)
                self.cache.bytes_served += len(piece)
        if first:  # an empty value: one chunk with the header
            yield SharedDataChunk(header=header)

    def _pieces(self, part: bytes) -> list[bytes]:
        view, size = memoryview(part), self.chunk_bytes
        return [bytes(view[i : i + size]) for i in range(0, len(part), size)]
