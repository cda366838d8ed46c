"""Typed task outcomes: Retry, NonRetryableError, TaskTimeout and their TaskError mapping."""

from __future__ import annotations

import datetime
import math

import pytest

from alpcrun.proto import ErrorReason, TaskError
from workers_sdk import NonRetryableError, Retry, TaskTimeout
from workers_sdk._execute import task_error
from workers_sdk.errors import MAX_RETRY_AFTER_MS


class BadInput(NonRetryableError):
    """A user's own permanent error."""


class Throttled(Retry):
    """A user's own retry request."""


@pytest.mark.parametrize(
    ("after", "ms"),
    [
        (None, None),
        (0, 0),
        (2, 2000),
        (2.5, 2500),
        (0.0004, 0),
        (datetime.timedelta(milliseconds=1500), 1500),
        (datetime.timedelta(), 0),
    ],
)
def test_retry_after_converts_to_whole_milliseconds(after, ms):
    """`after` in seconds or as a timedelta becomes retry_after_ms, rounded."""
    assert Retry(after=after).after_ms == ms


@pytest.mark.parametrize(
    "after",
    [10**9, math.inf, 10**400, datetime.timedelta(days=100), datetime.timedelta.max],
)
def test_retry_after_is_clamped_to_uint32(after):
    """Delays past the uint32 millisecond range are clamped to its maximum."""
    assert Retry(after=after).after_ms == MAX_RETRY_AFTER_MS == 2**32 - 1


@pytest.mark.parametrize("after", [-1, -0.001, datetime.timedelta(seconds=-1), -math.inf])
def test_negative_retry_delay_is_refused_at_construction(after):
    """A negative delay is a programming error, raised where the Retry is built."""
    with pytest.raises(ValueError, match="must not be negative"):
        Retry(after=after)


def test_nan_and_non_numbers_are_refused():
    """NaN is a ValueError; a string or a bool is a TypeError."""
    with pytest.raises(ValueError, match="NaN"):
        Retry(after=math.nan)
    with pytest.raises(TypeError, match="timedelta or seconds"):
        Retry(after="5")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Retry(after=True)


def test_retry_maps_to_retryable_error_with_delay():
    """Retry is reason ERROR, type "Retry", its message, and retry_after_ms from `after`."""
    error = task_error(Retry("rate limited", after=datetime.timedelta(seconds=3)))
    assert error == TaskError(
        message="rate limited",
        type="Retry",
        reason=ErrorReason.ERROR_REASON_ERROR,
        retry_after_ms=3000,
    )


def test_retry_without_delay_leaves_retry_after_unset():
    """A plain Retry() lets the queue manager choose the delay (retry_after_ms 0)."""
    error = task_error(Retry())
    assert (error.reason, error.type, error.message) == (
        ErrorReason.ERROR_REASON_ERROR,
        "Retry",
        "retry requested",
    )
    assert error.retry_after_ms == 0


def test_retry_subclass_keeps_its_delay_and_name():
    """A subclass of Retry is reported under its own name with its delay."""
    error = task_error(Throttled("slow down", after=0.25))
    assert (error.type, error.retry_after_ms) == ("Throttled", 250)
    assert error.reason == ErrorReason.ERROR_REASON_ERROR


@pytest.mark.parametrize("exc", [NonRetryableError("bad"), BadInput("bad")])
def test_non_retryable_and_subclasses_map_to_non_retryable(exc):
    """NonRetryableError and its subclasses are never retried."""
    error = task_error(exc)
    assert error.reason == ErrorReason.ERROR_REASON_NON_RETRYABLE
    assert error.type == type(exc).__name__
    assert error.message == "bad"
    assert error.retry_after_ms == 0


@pytest.mark.parametrize(
    ("exc", "name"),
    [
        (KeyError("k"), "KeyError"),
        (TimeoutError("upstream"), "TimeoutError"),
        (OSError(), "OSError"),
    ],
)
def test_any_other_exception_is_retryable_with_its_type_name(exc, name):
    """Other exceptions (a handler's own TimeoutError included) are retryable errors."""
    error = task_error(exc)
    assert (error.reason, error.type) == (ErrorReason.ERROR_REASON_ERROR, name)


def test_task_timeout_maps_to_timeout_and_says_the_limit():
    """TaskTimeout is reason TIMEOUT, type "TaskTimeout", and its message names the limit."""
    cancelled = task_error(TaskTimeout(2.5, 2.5, cancelled=True))
    assert (cancelled.reason, cancelled.type) == (ErrorReason.ERROR_REASON_TIMEOUT, "TaskTimeout")
    assert "task_timeout of 2.5s" in cancelled.message
    assert "cancelled" in cancelled.message
    late = task_error(TaskTimeout(0.5, 1.25, cancelled=False))
    assert "task_timeout of 0.5s" in late.message
    assert "ran 1.25s" in late.message
    assert "discarded" in late.message
