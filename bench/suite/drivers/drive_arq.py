"""Benchmark driver for arq on Redis (see bench/suite/common.py for the contract).

How the peer runs: a private ``redis-server`` (loopback, no RDB/AOF persistence) holds arq's queue
(a sorted set), jobs and results; ``cores`` worker processes (``python -m
bench.suite.drivers.arq_tasks``, one arq ``Worker`` each, ``max_jobs`` 10, queue polled every
2 ms) run the jobs. The client is arq's ``ArqRedis`` pool in this process, on one event loop.

Serializer: pickle (arq's default) for jobs and results.
Delivery: at least once: a job stays in the queue until it is done; if its worker dies it runs
again once its in-progress key expires (job_timeout 300 s + 10 s; at most 5 tries); Redis keeps
everything in memory only.
Results are polled: ``Job.result(poll_delay=RESULT_POLL)`` asks Redis every 1 ms, so a round
trip's floor is the workers' queue poll (2 ms) plus this poll. ``Job.result`` can raise
``ResultNotFound`` in a race right after a worker takes the job: it is retried.

Workloads: arq has no batch API: W1 ``batch`` enqueues every job with ``asyncio.gather``,
at most SUBMIT_WINDOW enqueues in flight (each takes a pooled connection; the pool holds
MAX_CONNECTIONS); W1 ``per_call`` awaits one ``enqueue_job`` after another. Both then wait for
the results in submission order. W2 is a closed loop of ``enqueue_job`` + ``result``. W3 keeps
WINDOW jobs in flight and collects in submission order (one poller). W4 is W1 ``batch`` with 1 ms
CPU tasks. W5 ``inline`` sends 1 MiB in and out per job, one ``enqueue_job`` after another. W5b is
skipped. Every result is checked; results are deleted from Redis after each repetition, outside
the timed part.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
from importlib.metadata import version
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import result_key_prefix
from arq.jobs import Job, ResultNotFound

from bench.suite import common, peer
from bench.suite.drivers.arq_tasks import READY_KEY
from bench.suite.redis_server import (
    RedisServer,
    exit_on_signals,
    ignore_signals,
    start_group,
    stop_group,
)

SYSTEM = "arq"
MAX_JOBS = 10
"""``max_jobs`` of each worker (arq's default)."""
WORKER_POLL = 0.002
"""Workers' ``poll_delay`` in seconds (arq's default is 0.5)."""
RESULT_POLL = 0.001
"""``Job.result(poll_delay=...)`` in seconds (arq's default is 0.5)."""
MAX_CONNECTIONS = 64
"""Client connection pool size."""
SUBMIT_WINDOW = 32
"""Most ``enqueue_job`` calls in flight in W1/W4 ``batch`` (below the pool size)."""
STARTUP_TIMEOUT = 90.0


class Bench(peer.AsyncQueueBench):
    """The workloads, run against started workers through one ``ArqRedis`` pool."""

    system = SYSTEM
    submit_window = SUBMIT_WINDOW

    def __init__(
        self, config: common.Config, pool: ArqRedis, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(config, loop, "noop", "busy", "echo")
        self.pool = pool

    def after_run(self) -> None:
        self.loop.run_until_complete(self.forget())

    async def forget(self) -> None:
        """Delete every stored result (outside the timed part: W5 would fill memory)."""
        keys = [key async for key in self.pool.scan_iter(match=result_key_prefix + "*", count=1000)]
        for start in range(0, len(keys), 1000):
            await self.pool.delete(*keys[start : start + 1000])

    async def send(self, task: Any, arg: Any) -> Job:
        job = await self.pool.enqueue_job(task, arg)
        if job is None:
            raise RuntimeError("enqueue_job returned None (duplicate job id)")
        return job

    async def failed(self, job: Job, expected: Any, until: float) -> int:
        """Wait for one result: 0 if it is ``expected``, 1 if it failed or is wrong."""
        while True:
            timeout = peer.remaining(until)
            try:
                value = await job.result(timeout=timeout, poll_delay=RESULT_POLL)
            except ResultNotFound:  # the race right after a worker took the job
                await asyncio.sleep(RESULT_POLL)
                continue
            except TimeoutError as exc:
                raise TimeoutError("a result did not arrive") from exc
            except Exception:
                return 1
            return int(value != expected)


def start_workers(config: common.Config, env: dict[str, str]) -> list[Any]:
    argv = [sys.executable, "-m", "bench.suite.drivers.arq_tasks"]
    return [start_group(argv, env=env, stdout=sys.stderr.fileno()) for _ in range(config.cores)]


async def open_pool(url: str) -> ArqRedis:
    settings = dataclasses.replace(RedisSettings.from_dsn(url), max_connections=MAX_CONNECTIONS)
    return await create_pool(settings)


def main() -> int:
    config = common.parse_config()
    exit_on_signals()
    server = RedisServer()
    workers: list[Any] = []
    loop = asyncio.new_event_loop()
    pool: ArqRedis | None = None
    try:
        server.start()
        env = {
            **os.environ,
            "BENCH_REDIS_URL": server.url,
            "BENCH_ARQ_MAX_JOBS": str(MAX_JOBS),
            "BENCH_ARQ_POLL_DELAY": str(WORKER_POLL),
        }
        workers = start_workers(config, env)
        peer.WORKERS.extend(workers)
        server.wait_members(READY_KEY, config.cores, workers, timeout=STARTUP_TIMEOUT)
        pool = loop.run_until_complete(open_pool(server.url))
        common.log(f"arq workers ready: {config.cores} processes on {server.url}")
        common.meta(
            SYSTEM,
            {"arq": version("arq"), "redis-py": version("redis"), "redis-server": server.version},
            workers=f"{config.cores} processes, one arq Worker each, max_jobs={MAX_JOBS}",
            tasks="async def, run on each worker's event loop (one at a time: they never await)",
            serializer="pickle (arq default) for jobs and results",
            acks_late=None,
            delivery="at least once (queued until done; rerun when the in-progress key expires,"
            " 310 s; max_tries 5); Redis without persistence",
            result_wait=f"polling: Job.result(poll_delay={RESULT_POLL}); ResultNotFound retried",
            worker_poll_delay=WORKER_POLL,
            client_pool=f"max_connections={MAX_CONNECTIONS}",
            w1_batch=f"no batch API: asyncio.gather of enqueue_job, {SUBMIT_WINDOW} in flight,"
            " then wait in order",
            w1_per_call="await enqueue_job() per job, then Job.result() per job in order",
            w3="window of WINDOW jobs, collected in submission order",
            w4="as W1 batch with tasks.busy",
            w5="await enqueue_job() per job, then Job.result() per job in order",
        )
        Bench(config, pool, loop).run()
        common.log(server.summary())
    finally:
        ignore_signals()
        if pool is not None:
            with contextlib.suppress(Exception):
                loop.run_until_complete(pool.aclose())
        for worker in workers:
            stop_group(worker, grace=10.0)
        server.stop()
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
