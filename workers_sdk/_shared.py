"""Shared data for the worker: node agent first, central cache as fallback, memoised per process.

A batch marked ``use_shared_data`` needs level ``required_shared_data_update_level`` of its
session's shared data. The worker fetches it once per (session, level) and process (a small
LRU keeps the last few levels, bounded in bytes), asking the node agent on its node, which
fetches from the central cache at most once per node. The node agent is asked on its read
path (``node_read_path``, no gRPC) when it has one, else over gRPC; when the node agent
cannot be reached the worker asks the central cache directly.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import grpc.aio
from cachetools import LRUCache

from alpcrun.cache.client import SharedDataClient, SharedValue
from alpcrun.cache.read_client import NodeReadClient
from alpcrun.cache.singleflight import SingleFlight
from alpcrun.config import WorkerSettings
from alpcrun.errors import TransportError, Unavailable
from alpcrun.proto.channel import open_channel
from alpcrun.tls import ClientTls

logger = logging.getLogger(__name__)
MEMO_ENTRIES = 4
"""Levels a worker process keeps (the current one and a few older ones still running)."""
READ_PATH_RETRY_S = 30.0
"""After the node read path could not be reached: seconds of gRPC-only reads before trying it
again."""


class SharedDataSource(Protocol):
    """Where a worker's batches get their session's shared data."""

    async def get(self, session_id: str, level: int) -> bytes:
        """The value of (session, level)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class StaticSharedData:
    """The same value for every (session, level): for :class:`WorkerHarness` tests."""

    def __init__(self, value: bytes) -> None:
        self.value = value

    async def get(self, session_id: str, level: int) -> bytes:
        """``value``."""
        return self.value

    async def aclose(self) -> None:
        """Nothing to release."""


class CachedSharedData:
    """Node agent (then central cache) reads, memoised and single-flighted per process."""

    def __init__(self, settings: WorkerSettings, *, tls: ClientTls | None = None) -> None:
        key = settings.api_key.get_secret_value() if settings.api_key else None
        limit = settings.max_message_bytes
        self._channels: list[grpc.aio.Channel] = []
        self._node: SharedDataClient | None = None
        self._central: SharedDataClient | None = None
        self._read: NodeReadClient | None = None
        self._read_retry_at = 0.0
        if (address := settings.read_path_address()) is not None:
            self._read = NodeReadClient(address, api_key=key)
        if settings.node_agent:
            self._channels.append(
                open_channel(settings.node_agent, tls=tls, max_message_bytes=limit)
            )
            self._node = SharedDataClient(self._channels[-1], api_key=key, node=True)
        if settings.central_cache:
            self._channels.append(
                open_channel(settings.central_cache, tls=tls, max_message_bytes=limit)
            )
            self._central = SharedDataClient(self._channels[-1], api_key=key)
        self._memo: LRUCache[tuple[str, int], bytes] = LRUCache(MEMO_ENTRIES)
        self._flight: SingleFlight[tuple[str, int], bytes] = SingleFlight()
        self.node_reads = 0
        """Values read from the node agent."""
        self.central_reads = 0
        """Values read from the central cache directly (node agent unreachable or unset)."""

    async def get(self, session_id: str, level: int) -> bytes:
        """The value of (session, level), from memory, the node agent or the central cache."""
        key = (session_id, level)
        value = self._memo.get(key)
        if value is None:
            value = await self._flight.do(key, lambda: self._fetch(session_id, level))
        return value

    async def _from_node(self, session_id: str, level: int) -> SharedValue | None:
        """The value from the node agent: its read path first, then its gRPC service.

        None when neither is configured. A :class:`TransportError` when the agent cannot be
        reached or cannot fetch the value (e.g. the central cache is down on a miss).
        """
        if self._read is not None and time.monotonic() >= self._read_retry_at:
            try:
                return await self._read.get(session_id, level)
            except TransportError as exc:
                if self._read.connected:  # the agent answered: gRPC would say the same
                    raise
                self._read_retry_at = time.monotonic() + READ_PATH_RETRY_S
                logger.info("node read path unreachable (%s): reading over gRPC", exc)
        if self._node is not None:
            return await self._node.get(session_id, level)
        return None

    async def _fetch(self, session_id: str, level: int) -> bytes:
        try:
            got = await self._from_node(session_id, level)
        except TransportError as exc:
            if self._central is None:
                raise
            logger.warning("node agent unreachable (%s): reading the central cache", exc)
            got = None
        else:
            if got is not None:
                self.node_reads += 1
        if got is None:
            if self._central is None:
                raise Unavailable("no node agent or central cache is configured for shared data")
            got = await self._central.get(session_id, level)
            self.central_reads += 1
        self._memo[(session_id, level)] = got.value
        return got.value

    async def aclose(self) -> None:
        """Close the connections."""
        if self._read is not None:
            await self._read.aclose()
        for channel in self._channels:
            await channel.close(None)
