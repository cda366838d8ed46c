"""The central cache's store: shared data keyed by (session, update level), with TTLs (sans-I/O).

Semantics (``docs/shared-data.md``):

- ``set`` creates a session's shared data at a level >= 1 (``SharedDataExists`` if the session
  already has some); ``update`` stores a new level above every level the session has, with a
  fresh TTL; older levels stay until their own TTL ends, so tasks still running at an older
  level keep reading it.
- ``get`` returns the exact level (``NotFound`` when absent or expired) and does not extend
  the TTL; ``delete`` drops every level of a session.
- TTLs are at most ``max_ttl_s``; :meth:`SharedDataStore.sweep` drops what has expired (an
  expiry heap makes it O(expired · log n)); reads never return an expired entry either way.
- Bytes are bounded: an upload *reserves* its declared size before its chunks are read, so
  concurrent uploads cannot overshoot ``max_bytes``; nothing is stored until the whole value
  has arrived, and a failed upload gives its reservation back. Each level counts its value's
  length plus :data:`~alpcrun.cache.lru.ENTRY_OVERHEAD_BYTES` (in reservations too), so empty
  values fill the cache like any other.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from alpcrun._clock import Clock
from alpcrun.cache.lru import ENTRY_OVERHEAD_BYTES
from alpcrun.constants import MAX_ID_LENGTH
from alpcrun.errors import (
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SessionNotFound,
    SharedDataExists,
)

MAX_LEVEL = (1 << 32) - 1


def check_session_id(session_id: str, field: str = "session_id") -> None:
    """Refuse a session id longer than any the grid makes (``MAX_ID_LENGTH`` characters)."""
    if len(session_id) > MAX_ID_LENGTH:
        raise InvalidArgument(
            f"session_id is {len(session_id)} characters long; at most {MAX_ID_LENGTH}",
            field=field,
        )


"""Highest update level (the wire type is uint32)."""


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Bounds of a :class:`SharedDataStore`."""

    max_bytes: int
    """Most bytes stored (and reserved by uploads in progress) at once, each level counting
    its value plus ``ENTRY_OVERHEAD_BYTES``."""
    max_value_bytes: int
    """Largest single value."""
    max_ttl_s: float
    """Longest TTL; 0 on a request means this."""


@dataclass(frozen=True, slots=True)
class SharedEntry:
    """One stored level of a session's shared data."""

    session_id: str
    """The session."""
    level: int
    """Its update level (>= 1)."""
    value: bytes
    """The value."""
    expires_at: float
    """Monotonic time at which the entry expires."""

    def ttl_left(self, now: float) -> float:
        """Seconds left before the entry expires (0 if it has)."""
        return max(0.0, self.expires_at - now)


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """Counters and gauges of a :class:`SharedDataStore`."""

    sessions: int
    """Sessions with shared data."""
    entries: int
    """Levels stored over all sessions."""
    bytes_used: int
    """Bytes charged for stored levels: each value's length plus ``ENTRY_OVERHEAD_BYTES``."""
    bytes_reserved: int
    """Bytes reserved by uploads in progress (declared size plus ``ENTRY_OVERHEAD_BYTES``)."""
    max_bytes: int
    """The byte bound."""
    hits: int
    """``get`` calls answered."""
    misses: int
    """``get`` calls answered NotFound."""
    stores: int
    """Levels stored (set and update)."""
    expirations: int
    """Levels dropped because their TTL ended."""
    deletions: int
    """Levels dropped by ``delete``."""
    rejected_full: int
    """Uploads refused because the store was full."""


@dataclass(slots=True)
class _Session:
    levels: dict[int, SharedEntry] = field(default_factory=dict)
    top: int = 0


class SharedDataStore:
    """Shared data of many sessions, bounded in bytes, with per-level TTLs."""

    def __init__(self, *, limits: StoreLimits, clock: Clock) -> None:
        self.limits = limits
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._heap: list[tuple[float, str, int]] = []
        self._used = 0
        self._reserved = 0
        self._hits = self._misses = self._stores = 0
        self._expirations = self._deletions = self._rejected = 0

    def now(self) -> float:
        """The store's clock reading (monotonic seconds)."""
        return self._clock.monotonic()

    # -- validation and reservations -------------------------------------------------------

    def ttl_seconds(self, ttl_ms: int) -> float:
        """The TTL a request asking for ``ttl_ms`` gets (0: ``max_ttl_s``)."""
        if ttl_ms == 0:
            return self.limits.max_ttl_s
        ttl = ttl_ms / 1000.0
        if ttl > self.limits.max_ttl_s:
            raise InvalidArgument(
                f"ttl {ttl:g}s is above the cache's max_ttl of {self.limits.max_ttl_s:g}s",
                field="header.ttl_ms",
            )
        return ttl

    def check_store(self, session_id: str, level: int, *, update: bool) -> None:
        """Raise the error a set (or update) of ``level`` would get now."""
        if not session_id:
            raise InvalidArgument("session_id is required", field="header.session_id")
        check_session_id(session_id, "header.session_id")
        if not 1 <= level <= MAX_LEVEL:
            raise InvalidArgument("update_level must be at least 1", field="header.update_level")
        sess = self._live(session_id)
        if not update:
            if sess is not None:
                raise SharedDataExists(
                    f"session {session_id} already has shared data (level {sess.top}); "
                    "use UpdateSharedData for a new level"
                )
            return
        if sess is None:
            raise SessionNotFound(
                f"session {session_id} has no shared data to update", field="header.session_id"
            )
        if level <= sess.top:
            raise InvalidArgument(
                f"update_level {level} does not go up: session {session_id} is at level {sess.top}",
                field="header.update_level",
            )

    def reserve(self, size: int) -> None:
        """Reserve room for an upload of ``size`` bytes (ResourceExhausted when it does not fit).

        The room is ``size`` plus ``ENTRY_OVERHEAD_BYTES``, what the level will count once
        stored.
        """
        if size > self.limits.max_value_bytes:
            raise InvalidArgument(
                f"value of {size} bytes is above the cache's max_value_bytes of "
                f"{self.limits.max_value_bytes}",
                field="header.size_bytes",
            )
        charge = size + ENTRY_OVERHEAD_BYTES
        if self._used + self._reserved + charge > self.limits.max_bytes:
            self.sweep()
        if self._used + self._reserved + charge > self.limits.max_bytes:
            self._rejected += 1
            raise ResourceExhausted(
                f"central cache full: {self._used} bytes stored and {self._reserved} reserved "
                f"of {self.limits.max_bytes}; a value of {size} bytes (counted as {charge}: "
                f"every level also counts {ENTRY_OVERHEAD_BYTES} bytes) does not fit (delete "
                "shared data of finished sessions, use shorter TTLs or raise max_bytes)"
            )
        self._reserved += charge

    def release(self, size: int) -> None:
        """Give back the reservation of an upload of ``size`` bytes that failed."""
        self._reserved = max(0, self._reserved - size - ENTRY_OVERHEAD_BYTES)

    # -- operations ------------------------------------------------------------------------

    def store(
        self, session_id: str, level: int, value: bytes, ttl_s: float, *, update: bool
    ) -> SharedEntry:
        """Store a fully received value whose size was reserved; the reservation is used up.

        Raises what :meth:`check_store` raises (the state may have changed while the value was
        uploading); the reservation is then kept for the caller to :meth:`release`.
        """
        self.check_store(session_id, level, update=update)
        self.release(len(value))
        sess = self._sessions.setdefault(session_id, _Session())
        entry = SharedEntry(session_id, level, value, self._clock.monotonic() + ttl_s)
        sess.levels[level] = entry
        sess.top = level
        self._used += len(value) + ENTRY_OVERHEAD_BYTES
        self._stores += 1
        heapq.heappush(self._heap, (entry.expires_at, session_id, level))
        return entry

    def get(self, session_id: str, level: int) -> SharedEntry:
        """The exact ``level`` of the session's shared data; the TTL is not extended."""
        if level < 1:
            self._misses += 1
            raise InvalidArgument("update_level must be at least 1", field="update_level")
        check_session_id(session_id)
        sess = self._live(session_id)
        entry = sess.levels.get(level) if sess is not None else None
        if entry is None or entry.expires_at <= self._clock.monotonic():
            self._misses += 1
            if sess is None:
                raise SessionNotFound(
                    f"session {session_id} has no shared data", field="session_id"
                )
            raise NotFound(
                f"session {session_id} has no shared data at level {level} (levels held: "
                f"{sorted(sess.levels)})",
                field="update_level",
            )
        self._hits += 1
        return entry

    def delete(self, session_id: str) -> tuple[int, int]:
        """Drop every level of the session; returns (levels, value bytes) dropped."""
        sess = self._sessions.pop(session_id, None)
        if sess is None:
            return 0, 0
        freed = sum(len(e.value) for e in sess.levels.values())
        self._used -= freed + len(sess.levels) * ENTRY_OVERHEAD_BYTES
        self._deletions += len(sess.levels)
        return len(sess.levels), freed

    def sessions(self) -> list[str]:
        """Ids of the sessions that hold shared data."""
        return list(self._sessions)

    def sweep(self) -> int:
        """Drop every expired level; returns how many were dropped."""
        now = self._clock.monotonic()
        dropped = 0
        while self._heap and self._heap[0][0] <= now:
            expires_at, session_id, level = heapq.heappop(self._heap)
            sess = self._sessions.get(session_id)
            entry = sess.levels.get(level) if sess is not None else None
            if sess is None or entry is None or entry.expires_at != expires_at:
                continue  # deleted or replaced since this heap item was pushed
            del sess.levels[level]
            self._used -= len(entry.value) + ENTRY_OVERHEAD_BYTES
            self._expirations += 1
            dropped += 1
            if not sess.levels:
                del self._sessions[session_id]
        return dropped

    def statistics(self) -> StoreStatistics:
        """A snapshot of the counters and gauges."""
        return StoreStatistics(
            sessions=len(self._sessions),
            entries=sum(len(s.levels) for s in self._sessions.values()),
            bytes_used=self._used,
            bytes_reserved=self._reserved,
            max_bytes=self.limits.max_bytes,
            hits=self._hits,
            misses=self._misses,
            stores=self._stores,
            expirations=self._expirations,
            deletions=self._deletions,
            rejected_full=self._rejected,
        )

    def _live(self, session_id: str) -> _Session | None:
        """The session's record once its expired levels are gone (None if none are left)."""
        sess = self._sessions.get(session_id)
        if sess is None:
            return None
        now = self._clock.monotonic()
        if any(e.expires_at <= now for e in sess.levels.values()):
            self.sweep()
            sess = self._sessions.get(session_id)
        return sess
