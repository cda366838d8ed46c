"""Exceptions a worker's ``handle()`` raises to tell the grid how a task failed.

The tree, rooted in :class:`alpcrun.errors.AlpcrunError`::

    AlpcrunError
    └── WorkerError                 root of the worker SDK's errors
        ├── Retry                   fail this attempt; the task may be retried (.after)
        ├── NonRetryableError       fail the task for good; never retried
        └── TaskTimeout             the attempt ran past the session's task_timeout

How each outcome is reported to the queue manager (``TaskError.reason``):

- ``Retry``: ``ERROR_REASON_ERROR``, with ``retry_after_ms`` from ``after``;
- ``NonRetryableError`` and its subclasses: ``ERROR_REASON_NON_RETRYABLE``;
- ``TaskTimeout`` (raised by the SDK, not by handlers): ``ERROR_REASON_TIMEOUT``;
- any other ``Exception``: ``ERROR_REASON_ERROR``, retryable.

Retry scheduling itself (``max_attempts``, the delay, the dead-letter queue) happens on the
queue manager.
"""

from __future__ import annotations

import datetime
import math

from alpcrun.errors import AlpcrunError

MAX_RETRY_AFTER_MS = 2**32 - 1
"""The longest delay a ``Retry`` can ask for (milliseconds, about 49.7 days); longer is clamped."""


class WorkerError(AlpcrunError):
    """Root of the worker SDK's errors."""


class Retry(WorkerError):
    """Fail this attempt and ask for the task to be retried, optionally after a delay.

    Reported with ``ERROR_REASON_ERROR``, type ``"Retry"``, this message, and
    ``retry_after_ms`` set from ``after``; the queue manager starts the next attempt no sooner
    than that, as long as the session's ``max_attempts`` allows one.

    Args:
        message: The error text the client and the dead-letter queue see.
        after: How long to wait before the next attempt (a ``timedelta`` or seconds), or
            None to let the queue manager decide. Delays past :data:`MAX_RETRY_AFTER_MS` are
            clamped to it.

    Raises:
        ValueError: ``after`` is negative or not a number (NaN).
        TypeError: ``after`` is neither a ``timedelta`` nor a real number.

    Attributes:
        after: The delay as given.
    """

    def __init__(
        self, message: str = "retry requested", *, after: datetime.timedelta | float | None = None
    ) -> None:
        super().__init__(message)
        self.after = after
        self._after_ms = None if after is None else _delay_ms(after)

    @property
    def after_seconds(self) -> float | None:
        """The requested delay in seconds, or None when none was given."""
        if self.after is None:
            return None
        if isinstance(self.after, datetime.timedelta):
            return self.after.total_seconds()
        return float(self.after)

    @property
    def after_ms(self) -> int | None:
        """The delay sent as ``retry_after_ms`` (0 to :data:`MAX_RETRY_AFTER_MS`), or None."""
        return self._after_ms


def _delay_ms(after: datetime.timedelta | float) -> int:
    """Validate a ``Retry`` delay and convert it to whole milliseconds, clamped to uint32."""
    if isinstance(after, datetime.timedelta):
        seconds = after.total_seconds()
    elif isinstance(after, int | float) and not isinstance(after, bool):
        try:
            seconds = float(after)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    else:
        raise TypeError(f"Retry(after=...) takes a timedelta or seconds, not {type(after)}")
    if math.isnan(seconds):
        raise ValueError("Retry(after=...) must be a number of seconds, got NaN")
    if seconds < 0:
        raise ValueError(f"Retry(after=...) must not be negative, got {after!r}")
    if seconds * 1000 >= MAX_RETRY_AFTER_MS:
        return MAX_RETRY_AFTER_MS
    return round(seconds * 1000)


class NonRetryableError(WorkerError):
    """Fail the task for good: it goes to the dead-letter queue without further attempts.

    Reported with ``ERROR_REASON_NON_RETRYABLE``; subclass it for your own permanent errors.
    """


class TaskTimeout(WorkerError):
    """An attempt ran longer than its session's ``task_timeout``.

    Raised by the worker SDK, not by handlers, and reported with ``ERROR_REASON_TIMEOUT``.
    An async ``handle()`` is cancelled at the limit. A sync ``handle()`` runs in a thread that
    cannot be interrupted: when it returns (or raises) after the limit, its outcome is
    discarded and replaced by this error.

    Args:
        limit: The session's ``task_timeout``, in seconds.
        elapsed: How long the attempt ran, in seconds.
        cancelled: True when the handler was cancelled at the limit (async handlers).

    Attributes:
        limit: The session's ``task_timeout``, in seconds.
        elapsed: How long the attempt ran, in seconds.
    """

    def __init__(self, limit: float, elapsed: float, *, cancelled: bool) -> None:
        if cancelled:
            text = f"task exceeded the task_timeout of {limit:g}s; handle() was cancelled"
        else:
            text = (
                f"task ran {elapsed:.3g}s, longer than the task_timeout of {limit:g}s; "
                "its outcome was discarded"
            )
        super().__init__(text)
        self.limit = limit
        self.elapsed = elapsed


__all__ = ["MAX_RETRY_AFTER_MS", "NonRetryableError", "Retry", "TaskTimeout", "WorkerError"]
