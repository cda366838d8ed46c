"""The session's shared data on the client side: upload to the central cache, track the level."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from alpcrun.cache.client import SharedDataClient
from alpcrun.errors import AlpcrunError

logger = logging.getLogger(__name__)
SharedClientFactory = Callable[[], SharedDataClient]
"""Returns the client's (lazily opened) connection to the central cache."""


def ttl_seconds(ttl: float | timedelta | None) -> float:
    """A TTL argument in seconds (None: the cache's max_ttl, sent as 0)."""
    if ttl is None:
        return 0.0
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if seconds <= 0:
        raise ValueError("ttl must be positive (or None for the cache's max_ttl)")
    return seconds


class SessionSharedData:
    """Uploads a session's shared data and remembers the level batches must require."""

    def __init__(self, session_id: str, factory: SharedClientFactory | None) -> None:
        self._session_id = session_id
        self._factory = factory
        self.level = 0
        """The level new batches require (0: the session has no shared data)."""

    def _client(self) -> SharedDataClient:
        if self._factory is None:
            raise RuntimeError("this session has no central cache connection")
        return self._factory()

    async def set(self, data: bytes, ttl: float | timedelta | None) -> int:
        """Create level 1; returns it."""
        await self._client().set(self._session_id, data, level=1, ttl_s=ttl_seconds(ttl))
        self.level = 1
        return 1

    async def update(self, data: bytes, ttl: float | timedelta | None) -> int:
        """Store the next level; returns it."""
        level = self.level + 1
        await self._client().update(self._session_id, data, level=level, ttl_s=ttl_seconds(ttl))
        self.level = level
        return level

    async def delete(self) -> None:
        """Drop the session's shared data (best effort: the TTL is the backstop)."""
        if self.level == 0 or self._factory is None:
            return
        try:
            await self._client().delete(self._session_id)
        except AlpcrunError:
            logger.warning("deleting shared data of %s failed", self._session_id, exc_info=True)
