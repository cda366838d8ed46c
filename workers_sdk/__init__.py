"""alpcrun worker SDK: subclass :class:`Worker`, implement ``handle()``, run it.

Example::

    from workers_sdk import TaskContext, Worker

    class Upper(Worker):
        async def handle(self, task: TaskContext) -> bytes:
            return task.payload.upper()

and run it with ``python -m workers_sdk mymodule:Upper --queue-manager qm:1337``.
"""

from __future__ import annotations

from workers_sdk.cli import run_worker as run_worker
from workers_sdk.context import TaskContext as TaskContext
from workers_sdk.context import current as current
from workers_sdk.errors import NonRetryableError as NonRetryableError
from workers_sdk.errors import Retry as Retry
from workers_sdk.errors import TaskTimeout as TaskTimeout
from workers_sdk.errors import WorkerError as WorkerError
from workers_sdk.runner import WorkerRunner as WorkerRunner
from workers_sdk.testing import WorkerHarness as WorkerHarness
from workers_sdk.worker import Worker as Worker

__all__ = [
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
