"""Session keyword arguments → SessionAttributes conversion (no server), and the public API."""

from __future__ import annotations

import datetime

import pytest

import alpcrun.client
from alpcrun.client import TaskResult
from alpcrun.client._attributes import session_attributes
from alpcrun.client._results import reason_name
from alpcrun.errors import TaskFailed
from alpcrun.proto import ErrorReason, QueueType, TaskError


def test_exports_are_pinned():
    """The client package exports exactly the curated public names."""
    assert alpcrun.client.__all__ == [
        "AsyncClient",
        "AsyncDeadLetters",
        "AsyncSession",
        "Client",
        "DeadLetterInfo",
        "DeadLetterOutcome",
        "DeadLetterPage",
        "DeadLetters",
        "PayloadView",
        "Progress",
        "Session",
        "TaskHandle",
        "TaskInput",
        "TaskResult",
        "Tier",
    ]
    for name in alpcrun.client.__all__:
        assert getattr(alpcrun.client, name).__doc__


def test_durations_become_protobuf_durations():
    """Seconds (float or int) and timedeltas convert to google.protobuf.Duration."""
    attrs = session_attributes(
        {"app_id": "a", "idle_timeout": 1.5, "task_timeout": datetime.timedelta(minutes=2)},
        create=True,
    )
    assert (attrs.idle_timeout.seconds, attrs.idle_timeout.nanos) == (1, 500_000_000)
    assert attrs.task_timeout.ToTimedelta() == datetime.timedelta(minutes=2)
    assert (
        session_attributes({"app_id": "a", "idle_timeout": 3}, create=True).idle_timeout.seconds
        == 3
    )


def test_only_given_attributes_are_set():
    """Attributes not given keep no presence, so the server applies defaults."""
    attrs = session_attributes({"app_id": "a", "priority": 0}, create=True)
    assert attrs.HasField("priority")
    assert attrs.priority == 0
    assert not attrs.HasField("max_workers")
    assert not attrs.HasField("idle_timeout")
    assert not attrs.HasField("queue_type")


def test_queue_type_names():
    """queue_type accepts "priority" and "fifo" (any case) and refuses anything else."""
    assert session_attributes({"app_id": "a", "queue_type": "fifo"}, create=True).queue_type == (
        QueueType.QUEUE_TYPE_FIFO
    )
    assert session_attributes({"queue_type": "PRIORITY"}, create=False).queue_type == (
        QueueType.QUEUE_TYPE_PRIORITY
    )
    with pytest.raises(ValueError, match="queue_type"):
        session_attributes({"app_id": "a", "queue_type": "lifo"}, create=True)


def test_unknown_keyword_is_a_type_error():
    """An unknown attribute name raises TypeError naming it."""
    with pytest.raises(TypeError, match="colour"):
        session_attributes({"app_id": "a", "colour": "red"}, create=True)


def test_app_id_required_on_create_only():
    """CreateSession needs app_id; UpdateSession does not."""
    with pytest.raises(TypeError, match="app_id"):
        session_attributes({"priority": 1}, create=True)
    assert session_attributes({"priority": 1}, create=False).priority == 1


def test_wrong_types_and_negative_values():
    """Values of the wrong type raise TypeError; negative numbers raise ValueError."""
    with pytest.raises(TypeError):
        session_attributes({"app_id": "a", "priority": "high"}, create=True)
    with pytest.raises(TypeError):
        session_attributes({"app_id": "a", "preemptible": 1}, create=True)
    with pytest.raises(TypeError):
        session_attributes({"app_id": "a", "tags": "gpu"}, create=True)
    with pytest.raises(ValueError, match="idle_timeout"):
        session_attributes({"app_id": "a", "idle_timeout": -1}, create=True)
    with pytest.raises(ValueError, match="max_workers"):
        session_attributes({"app_id": "a", "max_workers": -1}, create=True)


def test_tags_and_selector_replace_on_update():
    """tags and worker_selector set the replace flags on update, not on create."""
    update = session_attributes(
        {"tags": ["x", "y"], "worker_selector": {"gpu": "true"}}, create=False
    )
    assert list(update.tags) == ["x", "y"]
    assert dict(update.worker_selector) == {"gpu": "true"}
    assert update.replace_tags
    assert update.replace_worker_selector
    create = session_attributes({"app_id": "a", "tags": ["x"]}, create=True)
    assert list(create.tags) == ["x"]
    assert not create.replace_tags


def test_reason_names():
    """Error reasons map to short lower-case names; unknown ones read as "error"."""
    assert reason_name(ErrorReason.ERROR_REASON_WORKER_LOST) == "worker_lost"
    assert reason_name(ErrorReason.ERROR_REASON_NON_RETRYABLE) == "non_retryable"
    assert reason_name(ErrorReason.ERROR_REASON_TIMEOUT) == "timeout"
    assert reason_name(ErrorReason.ERROR_REASON_UNSPECIFIED) == "error"
    assert reason_name(99) == "error"


def test_task_result_value():
    """TaskResult.value() returns the payload, or raises TaskFailed with the error's details."""
    assert TaskResult(0, "t-0", b"out", None).value() == b"out"
    error = TaskError(message="bad", type="KeyError", reason=ErrorReason.ERROR_REASON_TIMEOUT)
    failed = TaskResult(1, "t-1", b"", error)
    assert not failed.ok
    with pytest.raises(TaskFailed, match="bad") as info:
        failed.value()
    assert (info.value.task_id, info.value.reason, info.value.error_type) == (
        "t-1",
        "timeout",
        "KeyError",
    )
