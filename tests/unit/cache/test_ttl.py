"""The central cache's TTL store, driven by a fake clock (no event loop, no sockets)."""

import pytest

from alpcrun.cache.lru import ENTRY_OVERHEAD_BYTES as O
from alpcrun.cache.ttl import SharedDataStore, StoreLimits
from alpcrun.errors import (
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SessionNotFound,
    SharedDataExists,
)
from alpcrun.testing import FakeClock


def make(max_bytes=100_000, max_value_bytes=500, max_ttl_s=600.0):
    clock = FakeClock()
    store = SharedDataStore(
        limits=StoreLimits(
            max_bytes=max_bytes, max_value_bytes=max_value_bytes, max_ttl_s=max_ttl_s
        ),
        clock=clock,
    )
    return store, clock


def put(store, sid, level, value, ttl=60.0, update=False):
    store.check_store(sid, level, update=update)
    store.reserve(len(value))
    return store.store(sid, level, value, ttl, update=update)


def test_set_get_exact_level_and_ttl_not_extended_by_reads():
    store, clock = make()
    put(store, "s", 1, b"one", ttl=10)
    clock.advance(6)
    assert store.get("s", 1).value == b"one"
    clock.advance(3.9)
    assert store.get("s", 1).ttl_left(clock.monotonic()) == pytest.approx(0.1)
    clock.advance(0.1)
    with pytest.raises(SessionNotFound):
        store.get("s", 1)
    assert store.statistics().bytes_used == 0


def test_set_twice_is_already_exists_and_update_must_go_up():
    store, _ = make()
    put(store, "s", 1, b"a")
    with pytest.raises(SharedDataExists):
        store.check_store("s", 1, update=False)
    with pytest.raises(InvalidArgument) as exc:
        store.check_store("s", 1, update=True)
    assert exc.value.field == "header.update_level"
    put(store, "s", 3, b"c", update=True)
    with pytest.raises(InvalidArgument):
        store.check_store("s", 2, update=True)


def test_level_zero_and_unknown_session():
    store, _ = make()
    with pytest.raises(InvalidArgument) as exc:
        store.check_store("s", 0, update=False)
    assert exc.value.field == "header.update_level"
    with pytest.raises(SessionNotFound):
        store.check_store("nobody", 2, update=True)
    with pytest.raises(SessionNotFound):
        store.get("nobody", 1)
    with pytest.raises(InvalidArgument):
        store.get("nobody", 0)
    with pytest.raises(InvalidArgument):
        store.check_store("", 1, update=False)


def test_update_keeps_older_levels_until_their_own_ttl():
    store, clock = make()
    put(store, "s", 1, b"v1", ttl=10)
    clock.advance(5)
    put(store, "s", 2, b"v2", ttl=10, update=True)
    assert store.get("s", 1).value == b"v1"
    assert store.get("s", 2).value == b"v2"
    clock.advance(5)  # level 1 expired, level 2 has 5 s left
    with pytest.raises(NotFound) as exc:
        store.get("s", 1)
    assert exc.value.field == "update_level"
    assert store.get("s", 2).value == b"v2"
    with pytest.raises(NotFound):
        store.get("s", 3)


def test_ttl_capped_by_max_ttl_and_zero_means_max():
    store, _ = make(max_ttl_s=600)
    assert store.ttl_seconds(0) == 600
    assert store.ttl_seconds(1500) == 1.5
    with pytest.raises(InvalidArgument) as exc:
        store.ttl_seconds(600_001)
    assert exc.value.field == "header.ttl_ms"


def test_byte_bound_reservations_and_release():
    store, _ = make(max_bytes=1000 + O, max_value_bytes=600)
    store.reserve(600)
    assert store.statistics().bytes_reserved == 600 + O
    with pytest.raises(ResourceExhausted, match="central cache full"):
        store.reserve(400)  # 1000 bytes of values, but two levels' overhead
    store.release(600)  # the upload failed: nothing stored, room again
    store.reserve(500)
    store.store("a", 1, b"x" * 500, 10, update=False)
    st = store.statistics()
    assert (st.bytes_used, st.bytes_reserved, st.rejected_full) == (500 + O, 0, 1)
    with pytest.raises(InvalidArgument) as exc:
        store.reserve(601)
    assert exc.value.field == "header.size_bytes"


def test_full_store_makes_room_by_sweeping_expired_entries_first():
    store, clock = make(max_bytes=100 + O, max_value_bytes=100)
    put(store, "a", 1, b"x" * 100, ttl=1)
    clock.advance(1)
    store.reserve(100)  # fits once the expired entry is swept
    assert store.statistics().expirations == 1


def test_store_revalidates_and_leaves_the_reservation_to_the_caller_when_state_changed():
    store, _ = make()
    store.check_store("s", 1, update=False)
    store.reserve(3)
    put(store, "s", 1, b"abc")  # a concurrent upload won
    with pytest.raises(SharedDataExists):
        store.store("s", 1, b"xyz", 10, update=False)
    assert store.statistics().bytes_reserved == 3 + O  # the caller's finally releases it
    store.release(3)
    assert store.statistics().bytes_reserved == 0
    assert store.get("s", 1).value == b"abc"


def test_sweep_drops_only_expired_levels_and_delete_drops_all():
    store, clock = make()
    put(store, "a", 1, b"1", ttl=1)
    put(store, "a", 2, b"22", ttl=5, update=True)
    put(store, "b", 1, b"333", ttl=1)
    clock.advance(1)
    assert store.sweep() == 2
    assert store.sessions() == ["a"]
    assert store.delete("a") == (1, 2)
    assert store.delete("a") == (0, 0)
    st = store.statistics()
    assert (st.entries, st.bytes_used, st.expirations, st.deletions) == (0, 0, 2, 1)


def test_set_allowed_again_once_everything_expired():
    store, clock = make()
    put(store, "s", 4, b"a", ttl=1)
    clock.advance(2)
    put(store, "s", 1, b"b")  # the old record is gone with its last level
    assert store.get("s", 1).value == b"b"


def test_session_ids_longer_than_128_characters_are_refused_by_name():
    store, _ = make()
    with pytest.raises(InvalidArgument, match="129 characters long; at most 128") as exc:
        store.check_store("s" * 129, 1, update=False)
    assert exc.value.field == "header.session_id"
    with pytest.raises(InvalidArgument) as exc:
        store.get("s" * 129, 1)
    assert exc.value.field == "session_id"
    put(store, "s" * 128, 1, b"v")
    assert store.get("s" * 128, 1).value == b"v"


def test_empty_values_count_their_overhead_against_the_byte_bound():
    """Zero-byte levels are charged ENTRY_OVERHEAD_BYTES each: a full cache refuses the next
    one, and deleting or expiring levels gives their overhead back."""
    store, clock = make(max_bytes=10 * O)
    for i in range(10):
        put(store, f"s{i}", 1, b"", ttl=1 if i < 3 else 60)
    st = store.statistics()
    assert (st.entries, st.bytes_used) == (10, 10 * O)
    with pytest.raises(ResourceExhausted, match=f"every level also counts {O} bytes"):
        store.reserve(0)
    assert store.statistics().rejected_full == 1
    assert store.delete("s9") == (1, 0)
    put(store, "again", 1, b"")  # the deleted level's room
    clock.advance(1)
    put(store, "after-expiry", 1, b"")  # the reserve sweeps the three expired levels
    st = store.statistics()
    assert (st.entries, st.bytes_used, st.bytes_reserved) == (8, 8 * O, 0)
