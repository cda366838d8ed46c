"""Exceptions a worker's ``handle()`` raises to tell the grid how a task failed.

The tree, rooted in :class:`alpcrun.errors.AlpcrunError`::

    AlpcrunError
    └── WorkerError                 root of the worker SDK's errors
        ├── Retry                   fail this attempt; the task may be retried (.after)
        └── NonRetryableError       fail the task for good; never retried

Any other exception raised by ``handle()`` fails the attempt as retryable
(``ERROR_REASON_ERROR``); ``NonRetryableError`` fails it with
``ERROR_REASON_NON_RETRYABLE``. Retry scheduling itself happens on the queue manager.
"""

from __future__ import annotations

import datetime

from alpcrun.errors import AlpcrunError


class WorkerError(AlpcrunError):
    """Root of the worker SDK's errors."""


class Retry(WorkerError):
    """Fail this attempt and ask for the task to be retried.

    Attributes:
        after: How long to wait before the next attempt (a ``timedelta`` or seconds), or
            None to let the queue manager decide.
    """

    def __init__(
        self, message: str = "retry requested", *, after: datetime.timedelta | float | None = None
    ) -> None:
        super().__init__(message)
        self.after = after

    @property
    def after_seconds(self) -> float | None:
        """The requested delay in seconds, or None when none was given."""
        if self.after is None:
            return None
        if isinstance(self.after, datetime.timedelta):
            return self.after.total_seconds()
        return float(self.after)


class NonRetryableError(WorkerError):
    """Fail the task for good: it goes to the dead-letter queue without further attempts."""


__all__ = ["NonRetryableError", "Retry", "WorkerError"]
