import pytest
from google.protobuf.duration_pb2 import Duration

from alpcrun.errors import InvalidArgument
from alpcrun.proto import QueueType, SessionAttributes
from alpcrun.queue_manager.attributes import SessionConfig, apply, resolve_new


def test_defaults_match_the_design():
    """Unset attributes take the documented defaults."""
    c = resolve_new(SessionAttributes(app_id="app"))
    assert (c.priority, c.min_workers, c.max_workers, c.idle_timeout_s) == (5, 0, 0, 60.0)
    assert (c.preemptible, c.cleanup_on_client_exit, c.max_inflight_batches_per_worker) == (
        False,
        False,
        10,
    )
    assert (c.fifo, c.max_attempts, c.task_timeout_s, c.tags) == (False, 3, 0.0, ())


@pytest.mark.parametrize(
    ("attrs", "field"),
    [
        ({}, "attributes.app_id"),
        ({"app_id": ""}, "attributes.app_id"),
        ({"app_id": "x" * 200}, "attributes.app_id"),
        ({"app_id": "a", "priority": 11}, "attributes.priority"),
        (
            {"app_id": "a", "max_inflight_batches_per_worker": 0},
            "attributes.max_inflight_batches_per_worker",
        ),
        ({"app_id": "a", "max_attempts": 0}, "attributes.max_attempts"),
        ({"app_id": "a", "queue_type": 7}, "attributes.queue_type"),
        ({"app_id": "a", "min_workers": 3, "max_workers": 2}, "attributes.min_workers"),
        ({"app_id": "a", "idle_timeout": Duration(seconds=-1)}, "attributes.idle_timeout"),
        ({"app_id": "a", "tags": [""]}, "attributes.tags"),
        ({"app_id": "a", "worker_selector": {"": "x"}}, "attributes.worker_selector"),
        (
            {"app_id": "a", "idle_timeout": Duration(nanos=2 * 10**9)},
            "attributes.idle_timeout.nanos",
        ),
        (
            {"app_id": "a", "task_timeout": Duration(seconds=5, nanos=10**9)},
            "attributes.task_timeout.nanos",
        ),
        ({"app_id": "a\x1b[2J"}, "attributes.app_id"),
        ({"app_id": "a\x00"}, "attributes.app_id"),
        ({"app_id": "\u202ea"}, "attributes.app_id"),
        ({"app_id": "a\u2028b"}, "attributes.app_id"),
        ({"app_id": "a", "tags": ["x", "y", "\u200bz"]}, "attributes.tags[2]"),
        ({"app_id": "a", "worker_selector": {"k": "\x1bv"}}, "attributes.worker_selector"),
        ({"app_id": "a", "worker_selector": {"k\u202d": "v"}}, "attributes.worker_selector"),
    ],
)
def test_bad_values_name_the_field(attrs, field):
    """Every invalid attribute is refused with its field named."""
    with pytest.raises(InvalidArgument) as info:
        resolve_new(SessionAttributes(**attrs))
    assert info.value.field == field


def test_update_changes_only_present_fields():
    """An update leaves unset attributes as they were."""
    base = resolve_new(SessionAttributes(app_id="a", priority=7, tags=["x"]))
    updated = apply(base, SessionAttributes(max_workers=4, queue_type=QueueType.QUEUE_TYPE_FIFO))
    assert (updated.priority, updated.max_workers, updated.fifo, updated.tags) == (
        7,
        4,
        True,
        ("x",),
    )
    cleared = apply(updated, SessionAttributes(replace_tags=True))
    assert cleared.tags == ()


def test_to_proto_round_trips():
    """The resolved proto re-applies to the same config."""
    c = SessionConfig(
        app_id="a",
        priority=2,
        idle_timeout_s=1.5,
        task_timeout_s=30,
        fifo=True,
        tags=("t",),
        worker_selector={"gpu": "true"},
    )
    assert resolve_new(c.to_proto()) == c


def test_largest_valid_nanos_are_accepted():
    """A Duration at the edge of protobuf's range (999,999,999 nanos) is read exactly."""
    c = resolve_new(
        SessionAttributes(app_id="a", idle_timeout=Duration(seconds=1, nanos=999_999_999))
    )
    assert c.idle_timeout_s == pytest.approx(1.999999999)


def test_printable_names_in_any_script_are_accepted():
    """Names outside ASCII (accents, CJK, emoji, a no-break space) are not control characters."""
    names = ["prícing", "リスク", "fx\u00a0desk", "🚀"]
    c = resolve_new(
        SessionAttributes(app_id=names[0], tags=names, worker_selector={"zone": "東京"})
    )
    assert (c.app_id, c.tags, c.worker_selector) == (names[0], tuple(names), {"zone": "東京"})
