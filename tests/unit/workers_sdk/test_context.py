"""TaskContext properties and the current() accessor."""

from __future__ import annotations

import pytest

from alpcrun.proto import Task
from workers_sdk import TaskContext, current
from workers_sdk.context import BatchInfo

INFO = BatchInfo(batch_id="b-1", session_id="s-1", worker_id="w-1")


def test_properties_read_the_task_and_batch():
    """Every property reflects the wrapped task and batch info."""
    ctx = TaskContext(Task(id="t-1", payload=b"data", attempt=3), INFO)
    assert ctx.task_id == "t-1"
    assert ctx.payload == b"data"
    assert ctx.attempt == 3
    assert ctx.session_id == "s-1"
    assert ctx.worker_id == "w-1"
    assert ctx.batch_id == "b-1"
    assert ctx.deadline is None


def test_attempt_zero_means_first_attempt():
    """The wire's attempt=0 (unset) is reported as attempt 1."""
    assert TaskContext(Task(id="t"), INFO).attempt == 1


def test_context_is_read_only_and_slotted():
    """Properties cannot be assigned and no new attributes can be added."""
    ctx = TaskContext(Task(id="t"), INFO)
    with pytest.raises(AttributeError):
        ctx.task_id = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ctx.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        INFO.session_id = "x"  # type: ignore[misc]


def test_repr_shows_ids_not_payload():
    """repr names the task and session and gives the payload size only."""
    text = repr(TaskContext(Task(id="t-9", payload=b"secret"), INFO))
    assert "t-9" in text
    assert "s-1" in text
    assert "secret" not in text
    assert "6 bytes" in text


def test_current_outside_a_handler_raises():
    """current() outside handle() raises a RuntimeError that says why."""
    with pytest.raises(RuntimeError, match="outside a running handle"):
        current()
