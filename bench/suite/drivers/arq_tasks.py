"""The arq worker settings and tasks of the benchmark; ``python -m`` this module runs one worker.

Run by ``drive_arq.py`` as ``cores`` processes of ``python -m bench.suite.drivers.arq_tasks``,
each one arq ``Worker`` (``max_jobs`` :data:`MAX_JOBS`, queue polled every :data:`POLL_DELAY`
seconds) on the driver's private Redis (``BENCH_REDIS_URL``). Jobs and results are pickled (arq's
default serializer). The tasks are ``async def`` and run one at a time on each worker's event
loop whatever ``max_jobs`` is (they do not await). Each worker adds itself to the Redis set
:data:`READY_KEY` on startup. Logging stays at WARNING (arq logs every job at INFO).
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar

from arq.connections import RedisSettings
from arq.worker import run_worker

from bench.suite import tasks

READY_KEY = "bench:ready"
URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
MAX_JOBS = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "10"))
"""Jobs a worker runs at once (arq's default, 10)."""
POLL_DELAY = float(os.environ.get("BENCH_ARQ_POLL_DELAY", "0.002"))
"""Seconds between a worker's polls of the queue (arq's default is 0.5)."""
KEEP_RESULT = 3600
"""Seconds a result is kept (the driver deletes the ones it read)."""


async def noop(_ctx: dict[str, Any], x: int) -> int:
    return tasks.noop(x)


async def busy(_ctx: dict[str, Any], x: int) -> int:
    return tasks.busy(x)


async def echo(_ctx: dict[str, Any], data: bytes) -> bytes:
    return tasks.echo(data)


async def startup(ctx: dict[str, Any]) -> None:
    await ctx["redis"].sadd(READY_KEY, f"worker-{os.getpid()}")


class WorkerSettings:
    """What ``arq.worker.run_worker`` reads."""

    functions: ClassVar[list[Any]] = [noop, busy, echo]
    redis_settings = RedisSettings.from_dsn(URL)
    max_jobs = MAX_JOBS
    poll_delay = POLL_DELAY
    keep_result = KEEP_RESULT
    on_startup = startup
    job_timeout = 300
    handle_signals = True


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    run_worker(WorkerSettings)
