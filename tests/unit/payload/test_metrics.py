"""The payload catalog's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from alpcrun.payload.catalog import Allocation, Catalog
from alpcrun.payload.metrics import PayloadCollector
from alpcrun.payload.types import Tier
from alpcrun.testing import FakeClock


def test_tier_bytes_counts_and_leases_are_exposed():
    """A committed and an allocated payload show as used and reserved bytes of their tier."""
    cat = Catalog(clock=FakeClock())
    cat.register_node("n1", "n1:1", {Tier.RAM: 1000})
    a, _ = cat.allocate([Allocation("s", 100, node="n1"), Allocation("s", 50, node="n1")])
    cat.commit([(a.id, 100)], "s")
    cat.acquire([(a.id, 0)], "s", "w/1", "n1")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PayloadCollector(cat.statistics()))
    text = generate_latest(registry).decode()
    assert 'alpcrun_payload_tier_bytes{kind="used",node="n1",tier="ram"} 100.0' in text
    assert 'alpcrun_payload_tier_bytes{kind="reserved",node="n1",tier="ram"} 50.0' in text
    assert "alpcrun_payloads 2.0" in text
    assert "alpcrun_payload_committed_bytes 100.0" in text
    assert "alpcrun_payload_leases 1.0" in text
    assert "alpcrun_payloads_lost_total 0.0" in text
