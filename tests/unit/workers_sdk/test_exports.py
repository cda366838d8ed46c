"""The public surface of workers_sdk is pinned."""

from __future__ import annotations

import workers_sdk
from alpcrun.errors import AlpcrunError


def test_all_is_pinned():
    """workers_sdk.__all__ lists exactly the curated names, and each one resolves."""
    assert workers_sdk.__all__ == [
        "NonRetryableError",
        "Retry",
        "TaskContext",
        "TaskTimeout",
        "Worker",
        "WorkerError",
        "WorkerHarness",
        "WorkerRunner",
        "current",
        "run_worker",
    ]
    for name in workers_sdk.__all__:
        assert getattr(workers_sdk, name) is not None


def test_errors_share_the_alpcrun_root():
    """Every worker error is an AlpcrunError under WorkerError."""
    for cls in (workers_sdk.Retry, workers_sdk.NonRetryableError, workers_sdk.TaskTimeout):
        assert issubclass(cls, workers_sdk.WorkerError)
    assert issubclass(workers_sdk.WorkerError, AlpcrunError)
