"""The node cache's store: a byte-bounded LRU of shared-data levels with inherited TTLs (sans-I/O).

Keys are (session id, update level), so several levels of a session coexist. Each entry keeps
the expiry time the central cache reported when it was fetched; an expired entry is never
returned. Bytes are bounded by ``max_bytes`` (a cachetools ``LRUCache``): an entry counts its
value's length plus :data:`ENTRY_OVERHEAD_BYTES`, so empty values fill the cache too; storing
evicts least recently used entries until the new one fits; a value larger than the whole
cache is served but not kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cachetools import LRUCache

from alpcrun._clock import Clock

CacheKey = tuple[str, int]
"""(session id, update level)."""
ENTRY_OVERHEAD_BYTES = 512
"""What each stored level counts against a cache's byte bound on top of its value's length,
in the node cache and the central cache alike: about what the process spends on the entry
itself (measured: 470 bytes a level in the central cache, 390 in the node cache, plus the
session id), so a flood of empty values is bounded like any other."""


@dataclass(frozen=True, slots=True)
class NodeEntry:
    """One cached level, kept as the chunks it arrived in (served again without copying)."""

    chunks: tuple[bytes, ...]
    """The value's pieces, in order."""
    size: int
    """Total bytes."""
    expires_at: float
    """Monotonic time at which the central entry expires."""

    @property
    def value(self) -> bytes:
        """The whole value (joined: a copy unless it is a single chunk)."""
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)

    def ttl_left(self, now: float) -> float:
        """Seconds left before the entry expires (0 if it has)."""
        return max(0.0, self.expires_at - now)


@dataclass(frozen=True, slots=True)
class LruStatistics:
    """Counters and gauges of a :class:`NodeLRU`."""

    entries: int
    """Levels held."""
    bytes_used: int
    """Bytes held: each entry's value plus :data:`ENTRY_OVERHEAD_BYTES`."""
    max_bytes: int
    """The byte bound."""
    hits: int
    """Lookups answered from the cache."""
    misses: int
    """Lookups that found nothing (or an expired entry)."""
    evictions: int
    """Entries dropped to make room."""
    expirations: int
    """Entries dropped because their TTL ended."""
    too_large: int
    """Values served but not kept because they exceed the whole cache."""


class _CountingLRU(LRUCache[CacheKey, NodeEntry]):
    """cachetools' LRU that counts the entries it evicts."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize=maxsize, getsizeof=lambda e: e.size + ENTRY_OVERHEAD_BYTES)
        self.evictions = 0

    def popitem(self) -> tuple[CacheKey, NodeEntry]:
        item = super().popitem()
        self.evictions += 1
        return item


class NodeLRU:
    """Byte-bounded LRU of shared-data levels, keyed by (session, level), with TTLs."""

    def __init__(self, *, max_bytes: int, clock: Clock) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self._lru = _CountingLRU(max_bytes)
        self._clock = clock
        self._hits = self._misses = self._expirations = self._too_large = 0

    def get(self, key: CacheKey) -> NodeEntry | None:
        """The live entry for ``key`` (marking it most recently used), or None."""
        entry = self._lru.get(key)
        if entry is not None and entry.expires_at <= self._clock.monotonic():
            del self._lru[key]
            self._expirations += 1
            entry = None
        if entry is None:
            self._misses += 1
            return None
        self._hits += 1
        return entry

    def put(self, key: CacheKey, value: bytes | Sequence[bytes], ttl_s: float) -> NodeEntry:
        """Keep ``value`` (bytes, or its chunks) for ``ttl_s`` seconds; returns the entry.

        Least recently used entries are evicted until it fits.

        The entry is returned even when it is not kept (TTL already over, or larger than the
        whole cache), so a caller can still serve it once.
        """
        chunks = (value,) if isinstance(value, bytes) else tuple(value)
        entry = NodeEntry(chunks, sum(map(len, chunks)), self._clock.monotonic() + ttl_s)
        if ttl_s <= 0:
            return entry
        if entry.size + ENTRY_OVERHEAD_BYTES > self._lru.maxsize:
            self._too_large += 1
            return entry
        self._lru.pop(key, None)
        self._lru[key] = entry
        return entry

    def expire(self) -> int:
        """Drop every expired entry; returns how many were dropped."""
        now = self._clock.monotonic()
        dead = [k for k, e in self._lru.items() if e.expires_at <= now]
        for key in dead:
            del self._lru[key]
        self._expirations += len(dead)
        return len(dead)

    def discard_session(self, session_id: str) -> int:
        """Drop every level of a session; returns how many were dropped."""
        keys = [k for k in self._lru if k[0] == session_id]
        for key in keys:
            del self._lru[key]
        return len(keys)

    def keys(self) -> list[CacheKey]:
        """Keys held (in no particular order)."""
        return list(self._lru.keys())

    def statistics(self) -> LruStatistics:
        """A snapshot of the counters and gauges."""
        return LruStatistics(
            entries=len(self._lru),
            bytes_used=int(self._lru.currsize),
            max_bytes=int(self._lru.maxsize),
            hits=self._hits,
            misses=self._misses,
            evictions=self._lru.evictions,
            expirations=self._expirations,
            too_large=self._too_large,
        )
