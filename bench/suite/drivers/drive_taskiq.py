"""Benchmark driver for Taskiq on a Redis broker (see bench/suite/common.py for the contract).

How the peer runs: a private ``redis-server`` (loopback, no RDB/AOF persistence) carries the
queue (taskiq-redis ``ListQueueBroker``: LPUSH/BRPOP) and the results
(``RedisAsyncResultBackend``, results deleted when read); ``taskiq worker ... --workers <cores>``
runs ``cores`` worker processes (``--max-async-tasks`` left at 100; the tasks are ``async def``
and so run one at a time on each process's event loop). The client is Taskiq's asyncio API in
this process, on one event loop.

Serializer: pickle for messages and results (``PickleSerializer``, set explicitly).
Delivery: at most once (a popped message is gone; no acknowledgement on a Redis list); Redis keeps
everything in memory only. Results are polled: ``wait_result(check_interval=CHECK_INTERVAL)``
asks Redis every 1 ms, the floor of a round trip.

Workloads: Taskiq has no batch API: W1 ``batch`` sends every task concurrently with
``asyncio.gather(*(t.kiq(i) ...))``; W1 ``per_call`` awaits one ``kiq`` after another. Both then
wait for the results in submission order. W2 is a closed loop of ``kiq`` + ``wait_result``. W3
keeps WINDOW tasks in flight and collects in submission order (one poller, so polling itself does
not load Redis WINDOW-fold). W4 is W1 ``batch`` with 1 ms CPU tasks. W5 ``inline`` sends 1 MiB in
and out per task, one ``kiq`` after another. W5b is skipped. Every result is checked.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from importlib.metadata import version
from typing import Any, TypeVar

from taskiq import AsyncTaskiqTask
from taskiq.exceptions import TaskiqResultTimeoutError

from bench.suite import common, tasks
from bench.suite.redis_server import (
    RedisServer,
    exit_on_signals,
    ignore_signals,
    start_group,
    stop_group,
)

SYSTEM = "taskiq"
CHECK_INTERVAL = 0.001
"""``wait_result(check_interval=...)`` in seconds (Taskiq's default is 0.2)."""
STARTUP_TIMEOUT = 90.0
ONE_TIMEOUT = 10.0
"""Most seconds to wait for one W2/W3 result before the repetition is an error."""

T = TypeVar("T")


def deadline(n: int, per_task: float = 0.02) -> float:
    """When collecting ``n`` results must be over (a hung peer becomes an error record).

    N is sized for a few seconds per repetition, so this is generous, yet short enough that a
    peer hung in every workload still ends within the orchestrator's time for a driver.
    """
    return time.monotonic() + 30.0 + n * per_task


WORKERS: list[subprocess.Popen[bytes]] = []
"""The worker processes started by this driver (checked while waiting for results)."""


def remaining(until: float) -> float:
    """Seconds left before ``until``; raises if time is up or a worker process has exited."""
    for proc in WORKERS:
        if proc.poll() is not None:
            raise RuntimeError(f"worker process {proc.pid} exited with {proc.returncode}")
    left = until - time.monotonic()
    if left <= 0:
        raise TimeoutError("results did not arrive in time")
    return left


def expected_echo(i: int) -> bytes:
    """``tasks.echo(tasks.payload(i))``, built without reversing 1 MiB byte by byte."""
    return b"\0" * (common.BIG % 8) + i.to_bytes(8, "little")[::-1] * (common.BIG // 8)


class Bench:
    """The workloads, run against started workers through the broker in ``taskiq_tasks``."""

    def __init__(self, config: common.Config, module: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.tt = module
        self.loop = loop

    def sync(self, make: Callable[[T], Coroutine[Any, Any, common.Measurement]]) -> Any:
        """``repeat`` calls plain functions: run the coroutine on the driver's loop."""
        return lambda arg: self.loop.run_until_complete(make(arg))

    async def failed(self, task: AsyncTaskiqTask[Any], expected: Any, until: float) -> int:
        """Wait for one result: 0 if it is ``expected``, 1 if it failed or is wrong."""
        timeout = remaining(until)
        try:
            res = await task.wait_result(check_interval=CHECK_INTERVAL, timeout=timeout)
        except TaskiqResultTimeoutError as exc:
            raise TimeoutError("a result did not arrive") from exc
        except Exception:
            return 1
        return int(res.is_err or res.return_value != expected)

    async def collect(
        self, sent: Sequence[AsyncTaskiqTask[Any]], expect: Callable[[int], Any], until: float
    ) -> int:
        failures = 0
        for i, task in enumerate(sent):
            failures += await self.failed(task, expect(i), until)
        return failures

    async def batch(self, task: Any, n: int) -> common.Measurement:
        until = deadline(n)
        start = time.perf_counter()
        sent = await asyncio.gather(*(task.kiq(i) for i in range(n)))
        submitted = time.perf_counter()
        failures = await self.collect(sent, lambda i: i, until)
        end = time.perf_counter()
        return common.Measurement(n, end - start, failures, submit_seconds=submitted - start)

    async def per_call(self, n: int) -> common.Measurement:
        until = deadline(n)
        noop = self.tt.noop
        start = time.perf_counter()
        sent = [await noop.kiq(i) for i in range(n)]
        submitted = time.perf_counter()
        failures = await self.collect(sent, lambda i: i, until)
        end = time.perf_counter()
        return common.Measurement(n, end - start, failures, submit_seconds=submitted - start)

    async def w2(self, n: int) -> common.Measurement:
        noop = self.tt.noop
        latencies: list[float] = []
        failures = 0
        start = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            task = await noop.kiq(i)
            failures += await self.failed(task, i, time.monotonic() + ONE_TIMEOUT)
            latencies.append(time.perf_counter() - t0)
        return common.Measurement(n, time.perf_counter() - start, failures, latencies=latencies)

    async def w3(self, seconds: float) -> common.Measurement:
        noop = self.tt.noop
        latencies: list[float] = []
        failures = 0
        window: deque[tuple[int, float, AsyncTaskiqTask[Any]]] = deque()
        start = time.perf_counter()
        stop_at = start + seconds
        i = 0
        while window or i == 0:
            while len(window) < common.WINDOW and time.perf_counter() < stop_at:
                window.append((i, time.perf_counter(), await noop.kiq(i)))
                i += 1
            if not window:
                break
            k, t0, task = window.popleft()
            failures += await self.failed(task, k, time.monotonic() + ONE_TIMEOUT)
            latencies.append(time.perf_counter() - t0)
        end = time.perf_counter()
        return common.Measurement(len(latencies), end - start, failures, latencies=latencies)

    async def w5_inline(self, n: int) -> common.Measurement:
        until = deadline(n, per_task=0.2)
        echo = self.tt.echo
        start = time.perf_counter()
        sent = [await echo.kiq(tasks.payload(i)) for i in range(n)]
        submitted = time.perf_counter()
        failures = await self.collect(sent, expected_echo, until)
        end = time.perf_counter()
        return common.Measurement(n, end - start, failures, submit_seconds=submitted - start)

    def run(self) -> None:
        config, tt = self.config, self.tt
        if common.wants(config, "W1"):
            common.repeat(config, "W1", "batch", self.sync(lambda n: self.batch(tt.noop, n)))
            common.repeat(config, "W1", "per_call", self.sync(self.per_call))
        if common.wants(config, "W2"):
            common.repeat(config, "W2", "closed_loop", self.sync(self.w2), warmup=100)
        if common.wants(config, "W3"):
            common.repeat_window(config, "window", self.sync(self.w3))
        if common.wants(config, "W4"):
            common.repeat(config, "W4", "batch", self.sync(lambda n: self.batch(tt.busy, n)))
        if common.wants(config, "W5"):
            common.repeat(config, "W5", "inline", self.sync(self.w5_inline), warmup=20)
        if common.wants(config, "W5b"):
            common.skip("W5b", "shared", "Taskiq has no shared-object facility")


def start_workers(config: common.Config, env: dict[str, str]) -> Any:
    argv = [
        sys.executable, "-m", "taskiq", "worker", "bench.suite.drivers.taskiq_tasks:broker",
        "--workers", str(config.cores), "--log-level", "WARNING",
    ]  # fmt: skip
    return start_group(argv, env=env, stdout=sys.stderr.fileno())


def main() -> int:
    config = common.parse_config()
    exit_on_signals()
    server = RedisServer()
    workers = None
    loop = asyncio.new_event_loop()
    try:
        server.start()
        os.environ["BENCH_REDIS_URL"] = server.url
        from bench.suite.drivers import taskiq_tasks  # reads BENCH_REDIS_URL when imported

        workers = start_workers(config, dict(os.environ))
        WORKERS.append(workers)
        server.wait_members(
            taskiq_tasks.READY_KEY, config.cores, [workers], timeout=STARTUP_TIMEOUT
        )
        loop.run_until_complete(taskiq_tasks.broker.startup())
        common.log(f"taskiq workers ready: {config.cores} processes on {server.url}")
        common.meta(
            SYSTEM,
            {
                "taskiq": version("taskiq"),
                "taskiq-redis": version("taskiq-redis"),
                "redis-py": version("redis"),
                "redis-server": server.version,
            },
            broker="taskiq-redis ListQueueBroker (LPUSH/BRPOP), RedisAsyncResultBackend",
            workers=f"taskiq worker --workers {config.cores} (processes), --max-async-tasks 100",
            tasks="async def, run on each worker's event loop",
            serializer="pickle of the python-mode dump of messages and results (own formatter"
            " and result backend subclass: the default JSON-mode dump cannot carry bytes)",
            acks_late=False,
            delivery="at most once (Redis list, no acknowledgement); Redis without persistence",
            result_wait=f"polling: wait_result(check_interval={CHECK_INTERVAL})",
            results="keep_results=False: deleted by the GETDEL that reads them",
            w1_batch="no batch API: asyncio.gather of kiq() for all tasks, then wait in order",
            w1_per_call="await kiq() per task, then wait_result() per task in order",
            w3="window of WINDOW tasks, collected in submission order",
            w4="as W1 batch with tasks.busy",
            w5="await kiq() per task, then wait_result() per task in order",
        )
        Bench(config, taskiq_tasks, loop).run()
        common.log(server.summary())
        loop.run_until_complete(taskiq_tasks.broker.shutdown())
    finally:
        ignore_signals()
        stop_group(workers, grace=10.0)
        server.stop()
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
