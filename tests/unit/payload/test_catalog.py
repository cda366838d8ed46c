"""The payload catalog's lifecycle, quotas, placement, leases and node loss (fake clock, no I/O)."""

from __future__ import annotations

import pytest

from alpcrun.errors import (
    InvalidArgument,
    NotFound,
    PayloadLost,
    PayloadStateError,
    ResourceExhausted,
)
from alpcrun.payload.catalog import Allocation, Catalog, CatalogLimits
from alpcrun.payload.types import Free, PayloadState, Tier
from alpcrun.testing import FakeClock

MiB = 1 << 20


def _catalog(**limits) -> tuple[Catalog, FakeClock]:
    limits.setdefault("node_timeout_s", 1e9)  # nodes stay alive unless a test says otherwise
    clock = FakeClock()
    cat = Catalog(limits=CatalogLimits(**limits), clock=clock)
    cat.register_node("n1", "n1:3339", {Tier.RAM: 10 * MiB, Tier.DISK: 100 * MiB})
    cat.register_node("n2", "n2:3339", {Tier.RAM: 10 * MiB})
    return cat, clock


def _put(cat: Catalog, size: int = MiB, session: str = "s1", **kw) -> str:
    (record,) = cat.allocate([Allocation(session, size, node=kw.pop("node", "n1"), **kw)])
    cat.commit([(record.id, size)], session)
    return record.id


def _usage(cat: Catalog, node: str, tier: Tier) -> tuple[int, int]:
    (u,) = [u for u in cat.usage() if u.node == node and u.tier is tier]
    return u.used, u.reserved


def test_allocate_reserves_and_commit_turns_the_reservation_into_used_bytes():
    """An allocation reserves on the producer's node; commit makes it used, readable, newer."""
    cat, _ = _catalog()
    (record,) = cat.allocate([Allocation("s1", MiB, node="n1", meta={"dtype": "f8"})])
    assert record.state is PayloadState.ALLOCATED
    assert (record.replicas[0].node, record.replicas[0].tier) == ("n1", Tier.RAM)
    assert _usage(cat, "n1", Tier.RAM) == (0, MiB)
    version = record.version
    cat.commit([(record.id, MiB)], "s1")
    assert record.readable
    assert record.version == version + 1
    assert _usage(cat, "n1", Tier.RAM) == (MiB, 0)
    assert cat.resolve([record.id], "s1")[0].meta == {"dtype": "f8"}


def test_commit_refuses_a_wrong_size_a_second_commit_and_another_sessions_payload():
    """A committed payload is immutable; sizes must match; other sessions see NOT_FOUND."""
    cat, _ = _catalog()
    (record,) = cat.allocate([Allocation("s1", MiB, node="n1")])
    with pytest.raises(InvalidArgument) as err:
        cat.commit([(record.id, MiB - 1)], "s1")
    assert err.value.field == "payloads[0].size"
    with pytest.raises(NotFound):
        cat.commit([(record.id, MiB)], "s2")
    cat.commit([(record.id, MiB)], "s1")
    with pytest.raises(PayloadStateError) as state:
        cat.commit([(record.id, MiB)], "s1")
    assert state.value.field == "payloads[0].id"
    with pytest.raises(NotFound) as missing:
        cat.resolve(["nope"], "s1")
    assert missing.value.field == "payload_ids[0]"


def test_a_batch_with_one_bad_entry_changes_nothing():
    """Allocation is all or nothing: a batch that does not fit leaves no reservation behind."""
    cat, _ = _catalog()
    with pytest.raises(ResourceExhausted):
        cat.allocate([Allocation("s1", 8 * MiB, tier=Tier.RAM, node="n1")] * 3)
    assert cat.payloads == {}
    assert all(u.reserved == 0 for u in cat.usage())
    (record,) = cat.allocate([Allocation("s1", MiB, node="n1")])
    with pytest.raises(NotFound):
        cat.commit([(record.id, MiB), ("unknown", 1)], "s1")
    assert record.state is PayloadState.ALLOCATED  # ...and the good entry is not committed


def test_session_quota_is_refused_naming_the_limit():
    """A session over its quota gets RESOURCE_EXHAUSTED naming payload_quota_bytes."""
    cat, _ = _catalog(session_quota_bytes=2 * MiB)
    _put(cat, MiB)
    with pytest.raises(ResourceExhausted, match="payload_quota_bytes"):
        cat.allocate([Allocation("s1", MiB, node="n1"), Allocation("s1", MiB, node="n1")])
    assert cat.session_bytes("s1") == MiB
    _put(cat, 2 * MiB, session="s2")  # another session has its own quota


def test_placement_falls_back_to_other_nodes_and_to_disk():
    """Full RAM on the preferred node: another node's RAM, then disk when no tier is named."""
    cat, _ = _catalog()
    first = cat.allocate([Allocation("s1", 9 * MiB, node="n1")])[0]
    second = cat.allocate([Allocation("s1", 9 * MiB, node="n1")])[0]
    third = cat.allocate([Allocation("s1", 9 * MiB, node="n1")])[0]
    where = [(r.replicas[0].node, r.replicas[0].tier) for r in (first, second, third)]
    assert where == [("n1", Tier.RAM), ("n2", Tier.RAM), ("n1", Tier.DISK)]
    with pytest.raises(ResourceExhausted, match="ram tier"):
        cat.allocate([Allocation("s1", 2 * MiB, tier=Tier.RAM, node="n1")])


def test_an_allocation_never_committed_is_reclaimed_after_the_pending_ttl():
    """The tick frees an abandoned allocation's reservation and tells its agent to drop it."""
    cat, clock = _catalog(pending_ttl_s=60)
    (record,) = cat.allocate([Allocation("s1", MiB, node="n1")])
    clock.advance(59)
    assert cat.tick() == ([], [])
    clock.advance(1)
    frees, _ = cat.tick()
    assert frees == [Free("n1", Tier.RAM, record.id)]
    assert record.id not in cat.payloads
    assert _usage(cat, "n1", Tier.RAM) == (0, 0)
    assert cat.session_bytes("s1") == 0
    assert cat.statistics().reclaimed == 1


def test_readers_lease_their_own_nodes_replica_and_stale_versions_are_refused():
    """A lease goes to the reader's node when it holds a replica; a stale version is refused."""
    cat, _ = _catalog()
    pid = _put(cat, node="n2")
    record = cat.payloads[pid]
    (lease,) = cat.acquire([(pid, record.version)], "s1", "w1/7", "n2")
    assert (lease.node, lease.tier, lease.version) == ("n2", Tier.RAM, record.version)
    with pytest.raises(PayloadStateError) as err:
        cat.acquire([(pid, record.version - 1)], "s1", "w1/7", "n2")
    assert err.value.field == "refs[0].version"
    (allocated,) = cat.allocate([Allocation("s1", MiB, node="n1")])
    with pytest.raises(PayloadStateError):
        cat.acquire([(allocated.id, 0)], "s1", "w1/7", "n1")


def test_leases_lapse_unless_renewed_by_their_holder():
    """A renewed lease outlives its first TTL; an unrenewed one ends on the tick."""
    cat, clock = _catalog(lease_ttl_s=30)
    pid = _put(cat)
    cat.acquire([(pid, 0)], "s1", "kept", "n1")
    cat.acquire([(pid, 0)], "s1", "dropped", "n1")
    clock.advance(20)
    assert cat.renew("kept") == 1
    clock.advance(15)
    cat.tick()
    assert [lease.holder for lease in cat.leases.leases.values()] == ["kept"]


def test_deleting_a_leased_payload_waits_for_its_last_lease():
    """Delete while read: DELETING, no new leases, bytes freed when the holder releases."""
    cat, _ = _catalog()
    pid = _put(cat)
    cat.acquire([(pid, 0)], "s1", "w1/1", "n1")
    assert cat.delete([pid], "s1") == []
    assert cat.payloads[pid].state is PayloadState.DELETING
    with pytest.raises(PayloadStateError):
        cat.acquire([(pid, 0)], "s1", "w2/1", "n1")
    assert cat.release("w1/1") == [Free("n1", Tier.RAM, pid)]
    assert pid not in cat.payloads
    assert _usage(cat, "n1", Tier.RAM) == (0, 0)


def test_a_session_closing_deletes_its_payloads_except_kept_and_ttl_ones():
    """Close deletes a session's payloads; kept ones stay; TTL ones go when their TTL passes."""
    cat, clock = _catalog()
    plain = _put(cat)
    kept = _put(cat, keep=True)
    timed = _put(cat, ttl_s=100)
    other = _put(cat, session="s2")
    frees = cat.close_session("s1")
    assert frees == [Free("n1", Tier.RAM, plain)]
    assert set(cat.payloads) == {kept, timed, other}
    clock.advance(100)
    frees, _ = cat.tick()
    assert frees == [Free("n1", Tier.RAM, timed)]


def test_a_lost_node_makes_its_only_replicas_unreadable():
    """A node lost: payloads whose only replica was there are reported and PayloadLost."""
    cat, _ = _catalog()
    there = _put(cat, node="n2")
    here = _put(cat, node="n1")
    (writing,) = cat.allocate([Allocation("s1", MiB, node="n2")])
    cat.acquire([(there, 0)], "s1", "w1/1", "n2")
    assert cat.node_lost("n2") == [there]
    assert writing.id not in cat.payloads
    assert len(cat.leases) == 0
    with pytest.raises(PayloadLost) as err:
        cat.resolve([there], "s1")
    assert err.value.field == "payload_ids[0]"
    assert cat.resolve([here], "s1")[0].readable
    assert cat.statistics().lost == 1


def test_a_silent_node_is_lost_on_the_tick():
    """A node agent that stops heartbeating is lost after node_timeout_s."""
    cat, clock = _catalog(node_timeout_s=30)
    pid = _put(cat, node="n2")
    clock.advance(20)
    cat.node_heartbeat("n1")
    clock.advance(11)
    _, unreadable = cat.tick()
    assert unreadable == [pid]
    assert [u.node for u in cat.usage()] == ["n1", "n1"]
    with pytest.raises(NotFound):
        cat.node_heartbeat("n2")


def test_listing_pages_in_id_order_with_filters():
    """List filters by session and tier and pages with a token."""
    cat, _ = _catalog()
    ids = sorted(_put(cat) for _ in range(5))
    _put(cat, session="s2")
    disk = _put(cat, tier=Tier.DISK)
    page, token = cat.page(session_id="s1", tier=Tier.RAM, limit=3)
    assert [r.id for r in page] == ids[:3]
    page, token = cat.page(session_id="s1", tier=Tier.RAM, after=token, limit=3)
    assert ([r.id for r in page], token) == (ids[3:], "")
    assert [r.id for r in cat.page(tier=Tier.DISK)[0]] == [disk]


def test_bounds_on_sizes_meta_parents_and_batches_name_the_field():
    """Out-of-bound sizes, metadata, lineage and batch lengths are INVALID_ARGUMENT."""
    cat, _ = _catalog(max_payload_bytes=MiB, max_meta_bytes=8, max_parents=1, max_batch=2)
    cases = [
        (Allocation("s1", 0), "allocations[0].size"),
        (Allocation("s1", MiB + 1), "allocations[0].size"),
        (Allocation("s1", 1, meta={"dtype": "float64"}), "allocations[0].meta"),
        (Allocation("s1", 1, parents=("a", "b")), "allocations[0].parents"),
    ]
    for request, field in cases:
        with pytest.raises(InvalidArgument) as err:
            cat.allocate([request])
        assert err.value.field == field
    with pytest.raises(InvalidArgument) as err:
        cat.resolve(["a", "b", "c"], "s1")
    assert err.value.field == "payloads"


def test_frees_are_queued_for_the_agent_that_holds_the_bytes():
    """Deleted and aborted payloads wait in their node's queue until its agent takes them."""
    cat, _ = _catalog()
    a = _put(cat, node="n1")
    b = _put(cat, node="n2")
    cat.delete([a, b], "s1")
    assert cat.take_frees("n1") == [Free("n1", Tier.RAM, a)]
    assert cat.take_frees("n1") == []
    assert cat.take_frees("n2") == [Free("n2", Tier.RAM, b)]


def test_a_restarted_agent_loses_what_it_no_longer_holds_and_frees_what_nobody_knows():
    """Re-registering without a RAM payload loses it; a held unknown payload is freed."""
    cat, _ = _catalog()
    ram = _put(cat, node="n1")
    disk = _put(cat, node="n1", tier=Tier.DISK)
    stray = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    capacities = {Tier.RAM: 10 * MiB, Tier.DISK: 100 * MiB}
    unreadable = cat.register_node("n1", "n1:3339", capacities, held=[disk, stray])
    assert unreadable == [ram]
    with pytest.raises(PayloadLost):
        cat.resolve([ram], "s1")
    assert cat.resolve([disk], "s1")[0].readable
    assert _usage(cat, "n1", Tier.RAM) == (0, 0)
    assert {f.payload_id for f in cat.take_frees("n1")} == {stray}


def test_leases_of_holders_that_are_over_are_released_together():
    """The queue manager's check ends the leases of attempts that are over, and only those."""
    cat, _ = _catalog()
    pid = _put(cat)
    cat.acquire([(pid, 0)], "s1", "w1/1", "n1")
    cat.acquire([(pid, 0)], "s1", "w1/2", "n1")
    cat.delete([pid], "s1")
    assert cat.release_where(lambda holder: holder == "w1/1") == []
    assert [lease.holder for lease in cat.leases.leases.values()] == ["w1/2"]
    assert cat.release_where(lambda holder: True) == [Free("n1", Tier.RAM, pid)]
