"""The node cache's byte-bounded LRU, driven by a fake clock."""

import pytest

from alpcrun.cache.lru import ENTRY_OVERHEAD_BYTES as O
from alpcrun.cache.lru import NodeLRU
from alpcrun.testing import FakeClock


def make(max_bytes=100_000):
    clock = FakeClock()
    return NodeLRU(max_bytes=max_bytes, clock=clock), clock


def test_hit_miss_and_ttl_inherited():
    lru, clock = make()
    assert lru.get(("s", 1)) is None
    lru.put(("s", 1), b"abc", ttl_s=5)
    entry = lru.get(("s", 1))
    assert entry is not None
    assert entry.value == b"abc"
    assert entry.ttl_left(clock.monotonic()) == 5
    clock.advance(5)
    assert lru.get(("s", 1)) is None
    st = lru.statistics()
    assert (st.hits, st.misses, st.expirations, st.bytes_used) == (1, 2, 1, 0)


def test_levels_coexist():
    lru, _ = make()
    lru.put(("s", 1), b"one", 10)
    lru.put(("s", 2), b"two", 10)
    assert lru.get(("s", 1)).value == b"one"
    assert lru.get(("s", 2)).value == b"two"
    assert lru.get(("s", 3)) is None


def test_byte_bound_evicts_least_recently_used_first():
    lru, _ = make(max_bytes=100 + 2 * O)
    lru.put(("a", 1), b"a" * 40, 10)
    lru.put(("b", 1), b"b" * 40, 10)
    assert lru.get(("a", 1)) is not None  # a is now more recent than b
    lru.put(("c", 1), b"c" * 40, 10)  # 120 + 3 O > 100 + 2 O: evict the LRU one, b
    assert lru.get(("b", 1)) is None
    assert lru.get(("a", 1)) is not None
    assert lru.get(("c", 1)) is not None
    st = lru.statistics()
    assert (st.evictions, st.bytes_used, st.entries) == (1, 80 + 2 * O, 2)
    lru.put(("d", 1), b"d" * 100, 10)  # needs the whole cache
    assert sorted(lru.keys()) == [("d", 1)]
    assert lru.statistics().evictions == 3


def test_value_larger_than_cache_is_returned_but_not_kept():
    lru, _ = make(max_bytes=10 + O)
    entry = lru.put(("s", 1), b"x" * 11, 10)
    assert entry.value == b"x" * 11
    assert lru.get(("s", 1)) is None
    assert lru.statistics().too_large == 1
    lru.put(("s", 2), b"x" * 10, 10)  # exactly the whole cache: kept
    assert lru.get(("s", 2)) is not None


def test_replacing_a_key_does_not_double_count_bytes():
    lru, _ = make(max_bytes=100 + O)
    lru.put(("s", 1), b"x" * 60, 10)
    lru.put(("s", 1), b"y" * 60, 10)
    assert lru.statistics().bytes_used == 60 + O
    assert lru.statistics().evictions == 0


def test_expire_sweeps_and_discard_session():
    lru, clock = make()
    lru.put(("a", 1), b"1", 1)
    lru.put(("a", 2), b"2", 5)
    lru.put(("b", 1), b"3", 5)
    clock.advance(1)
    assert lru.expire() == 1
    assert lru.discard_session("a") == 1
    assert lru.keys() == [("b", 1)]


def test_non_positive_ttl_is_not_kept_and_bad_size_refused():
    lru, _ = make()
    lru.put(("s", 1), b"x", 0)
    assert lru.get(("s", 1)) is None
    with pytest.raises(ValueError, match="positive"):
        NodeLRU(max_bytes=0, clock=FakeClock())


def test_empty_values_count_their_overhead_and_are_evicted():
    """Zero-byte levels are charged ENTRY_OVERHEAD_BYTES each, so they fill the cache and
    are evicted like any other: never more than max_bytes // ENTRY_OVERHEAD_BYTES of them."""
    lru, _ = make(max_bytes=4 * O)
    for i in range(10):
        lru.put((f"s{i}", 1), b"", 60)
    st = lru.statistics()
    assert (st.entries, st.bytes_used, st.evictions) == (4, 4 * O, 6)
    assert sorted(lru.keys()) == [(f"s{i}", 1) for i in range(6, 10)]
