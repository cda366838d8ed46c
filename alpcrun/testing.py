"""Test helpers shipped with alpcrun: a fake clock and in-process servers on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from alpcrun.cache.app import CentralCacheServer, NodeAgent
from alpcrun.config import CentralCacheSettings, NodeAgentSettings, QueueManagerSettings
from alpcrun.queue_manager.app import QueueManager


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall - start

    def monotonic(self) -> float:
        """Current fake monotonic time."""
        return self._now

    def time(self) -> float:
        """Current fake wall-clock time."""
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self._now += seconds


@asynccontextmanager
async def running_queue_manager(
    *, api_key: str = "test-key", **overrides: Any
) -> AsyncIterator[QueueManager]:
    """A started queue manager on 127.0.0.1 with a free port and no metrics endpoint."""
    settings = QueueManagerSettings(
        **{"host": "127.0.0.1", "port": 0, "metrics_port": None, "api_key": api_key, **overrides}
    )
    async with QueueManager(settings=settings) as qm:
        yield qm


@asynccontextmanager
async def running_central_cache(
    *, api_key: str = "test-key", clock: Any = None, **overrides: Any
) -> AsyncIterator[CentralCacheServer]:
    """A started central cache on 127.0.0.1 with a free port and no metrics endpoint."""
    settings = CentralCacheSettings(
        **{"host": "127.0.0.1", "port": 0, "metrics_port": None, "api_key": api_key, **overrides}
    )
    async with CentralCacheServer(settings=settings, clock=clock) as server:
        yield server


@asynccontextmanager
async def running_node_agent(
    central_cache_addr: str, *, api_key: str = "test-key", clock: Any = None, **overrides: Any
) -> AsyncIterator[NodeAgent]:
    """A started node agent on 127.0.0.1 (free ports, no metrics) in front of a central cache."""
    settings = NodeAgentSettings(
        **{
            "host": "127.0.0.1",
            "port": 0,
            "metrics_port": None,
            "read_port": 0,
            "api_key": api_key,
            "central_cache_addr": central_cache_addr,
            **overrides,
        }
    )
    async with NodeAgent(settings=settings, clock=clock) as server:
        yield server
