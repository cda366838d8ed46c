"""Prometheus exposition of the shared-data caches, from ``statistics()`` snapshots.

Each scrape takes the figures on the event loop (the servers build a collector from fresh
snapshots) and renders them on the metrics endpoint's thread, so no store is read from
another thread while the loop changes it.

Central cache:

| metric | type | meaning |
|---|---|---|
| alpcrun_cache_sessions | gauge | sessions with shared data |
| alpcrun_cache_entries | gauge | levels stored |
| alpcrun_cache_bytes | gauge | bytes stored (each level: its value plus ``ENTRY_OVERHEAD_BYTES``) |
| alpcrun_cache_bytes_reserved | gauge | bytes reserved by uploads in progress (likewise) |
| alpcrun_cache_max_bytes | gauge | the byte bound |
| alpcrun_cache_hits_total / _misses_total | counter | GetSharedData answered / NOT_FOUND |
| alpcrun_cache_stores_total | counter | levels stored (set and update) |
| alpcrun_cache_expirations_total | counter | levels dropped at the end of their TTL |
| alpcrun_cache_deletions_total | counter | levels dropped by DeleteSharedData |
| alpcrun_cache_rejected_full_total | counter | uploads refused because the cache was full |
| alpcrun_cache_bytes_sent_total | counter | value bytes streamed to readers |
| alpcrun_cache_session_lookups_total | counter | sessions asked of the queue manager |
| alpcrun_cache_session_refused_total | counter | uploads refused: session unknown/closed |
| alpcrun_cache_session_check_failures_total | counter | uploads refused: queue manager down |

The three ``session_`` counters exist only with a queue manager configured.

Node cache (node agent):

| metric | type | meaning |
|---|---|---|
| alpcrun_node_cache_entries / _bytes / _max_bytes | gauge | levels and bytes held (values plus
  ``ENTRY_OVERHEAD_BYTES`` each), byte bound |
| alpcrun_node_cache_hits_total / _misses_total | counter | lookups answered from memory / not |
| alpcrun_node_cache_evictions_total | counter | entries dropped to make room (LRU) |
| alpcrun_node_cache_expirations_total | counter | entries dropped at the end of their TTL |
| alpcrun_node_cache_central_fetches_total | counter | fetches from the central cache |
| alpcrun_node_cache_central_fetch_failures_total | counter | fetches that failed |
| alpcrun_node_cache_singleflight_joins_total | counter | misses that joined a fetch in flight |
| alpcrun_node_cache_bytes_fetched_total | counter | value bytes received from the central cache |
| alpcrun_node_cache_bytes_served_total | counter | value bytes streamed to workers |
| alpcrun_node_cache_read_path_requests_total | counter | reads answered on the read path |
| alpcrun_node_cache_read_path_connections | gauge | read path connections open |
| alpcrun_node_cache_read_path_closed_idle_total | counter | read path connections closed idle |
| alpcrun_node_cache_read_path_refused_total | counter | read path connections refused (limit) |
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alpcrun.cache.node import NodeCacheStatistics
from alpcrun.cache.read_server import ReadPathStatistics
from alpcrun.cache.sessions import OpenSessionsStatistics
from alpcrun.cache.ttl import StoreStatistics


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class CentralCacheCollector(Collector):
    """The central cache's metric families, from figures already taken (any thread)."""

    def __init__(
        self,
        stats: StoreStatistics,
        bytes_sent: int,
        sessions: OpenSessionsStatistics | None = None,
    ) -> None:
        self._stats = stats
        self._sent = bytes_sent
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family."""
        st = self._stats
        p = "alpcrun_cache_"
        yield _gauge(p + "sessions", "Sessions with shared data.", st.sessions)
        yield _gauge(p + "entries", "Shared-data levels stored.", st.entries)
        yield _gauge(p + "bytes", "Bytes of shared data stored.", st.bytes_used)
        yield _gauge(p + "bytes_reserved", "Bytes reserved by uploads.", st.bytes_reserved)
        yield _gauge(p + "max_bytes", "Byte bound of the central cache.", st.max_bytes)
        yield _counter(p + "hits", "GetSharedData calls answered.", st.hits)
        yield _counter(p + "misses", "GetSharedData calls answered NOT_FOUND.", st.misses)
        yield _counter(p + "stores", "Levels stored.", st.stores)
        yield _counter(p + "expirations", "Levels dropped at TTL end.", st.expirations)
        yield _counter(p + "deletions", "Levels dropped by DeleteSharedData.", st.deletions)
        yield _counter(p + "rejected_full", "Uploads refused: cache full.", st.rejected_full)
        yield _counter(p + "bytes_sent", "Value bytes streamed to readers.", self._sent)
        if self._sessions is not None:
            ss = self._sessions
            yield _counter(
                p + "session_lookups", "Sessions checked with the queue manager.", ss.lookups
            )
            yield _counter(p + "session_refused", "Uploads refused: no open session.", ss.refused)
            yield _counter(
                p + "session_check_failures", "Uploads refused: queue manager down.", ss.failures
            )


class NodeCacheCollector(Collector):
    """The node cache's metric families, from figures already taken (any thread)."""

    def __init__(
        self, stats: NodeCacheStatistics, read_path: ReadPathStatistics | None = None
    ) -> None:
        self._stats = stats
        self._read_path = read_path or ReadPathStatistics(0, 0, 0, 0)

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family."""
        st = self._stats
        lru = st.lru
        p = "alpcrun_node_cache_"
        yield _gauge(p + "entries", "Shared-data levels held.", lru.entries)
        yield _gauge(p + "bytes", "Bytes held.", lru.bytes_used)
        yield _gauge(p + "max_bytes", "Byte bound (cache_size).", lru.max_bytes)
        yield _counter(p + "hits", "Lookups answered from memory.", lru.hits)
        yield _counter(p + "misses", "Lookups not answered from memory.", lru.misses)
        yield _counter(p + "evictions", "Entries evicted (LRU).", lru.evictions)
        yield _counter(p + "expirations", "Entries dropped at TTL end.", lru.expirations)
        yield _counter(p + "central_fetches", "Fetches from the central cache.", st.central_fetches)
        yield _counter(
            p + "central_fetch_failures", "Failed central fetches.", st.central_fetch_failures
        )
        yield _counter(
            p + "singleflight_joins", "Misses that joined a fetch.", st.singleflight_joins
        )
        yield _counter(
            p + "bytes_fetched", "Bytes received from the central cache.", st.bytes_fetched
        )
        yield _counter(p + "bytes_served", "Bytes streamed to workers.", st.bytes_served)
        rp = self._read_path
        yield _counter(
            p + "read_path_requests", "Reads answered on the read path (not gRPC).", rp.requests
        )
        yield _gauge(p + "read_path_connections", "Read path connections open.", rp.connections)
        yield _counter(
            p + "read_path_closed_idle",
            "Read path connections closed idle (timed out, or making room for a new one).",
            rp.closed_idle,
        )
        yield _counter(
            p + "read_path_refused",
            "Read path connections refused: the limit was reached and none was idle.",
            rp.refused,
        )


def registry_of(collector: Collector) -> CollectorRegistry:
    """A registry holding only ``collector``."""
    registry = CollectorRegistry()
    registry.register(collector)
    return registry
