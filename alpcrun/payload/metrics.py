"""Prometheus exposition of the payload catalog's statistics (taken on the event loop).

| metric | type | labels | meaning |
|---|---|---|---|
| alpcrun_payload_tier_bytes | gauge | node, tier, kind | capacity, used, reserved bytes of a tier |
| alpcrun_payloads | gauge | | payloads known to the catalog (any state) |
| alpcrun_payloads_committed | gauge | | committed payloads |
| alpcrun_payload_committed_bytes | gauge | | their bytes |
| alpcrun_payload_leases | gauge | | live read leases |
| alpcrun_payloads_reclaimed_total | counter | | allocations reclaimed after pending_ttl |
| alpcrun_payloads_lost_total | counter | | payloads that lost their last replica |
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alpcrun.payload.catalog import CatalogStatistics


class PayloadCollector(Collector):
    """The metric families of one ``Catalog.statistics()`` snapshot (any thread)."""

    def __init__(self, stats: CatalogStatistics) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family."""
        st = self.stats
        tiers = GaugeMetricFamily(
            "alpcrun_payload_tier_bytes",
            "Capacity, used and reserved bytes of a node's payload tier.",
            labels=["node", "tier", "kind"],
        )
        for u in st.usage:
            tiers.add_metric([u.node, u.tier.value, "capacity"], u.capacity)
            tiers.add_metric([u.node, u.tier.value, "used"], u.used)
            tiers.add_metric([u.node, u.tier.value, "reserved"], u.reserved)
        yield tiers
        yield GaugeMetricFamily("alpcrun_payloads", "Payloads in the catalog.", value=st.payloads)
        yield GaugeMetricFamily(
            "alpcrun_payloads_committed", "Committed payloads.", value=st.committed
        )
        yield GaugeMetricFamily(
            "alpcrun_payload_committed_bytes",
            "Bytes of committed payloads.",
            value=st.committed_bytes,
        )
        yield GaugeMetricFamily("alpcrun_payload_leases", "Live read leases.", value=st.leases)
        yield CounterMetricFamily(
            "alpcrun_payloads_reclaimed",
            "Allocations reclaimed after payload_pending_ttl.",
            value=st.reclaimed,
        )
        yield CounterMetricFamily(
            "alpcrun_payloads_lost", "Payloads that lost their last replica.", value=st.lost
        )


__all__ = ["PayloadCollector"]
