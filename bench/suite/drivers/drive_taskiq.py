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
import sys
from collections.abc import Awaitable
from importlib.metadata import version
from typing import Any

from taskiq import AsyncTaskiqTask
from taskiq.exceptions import TaskiqResultTimeoutError

from bench.suite import common, peer
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


class Bench(peer.AsyncQueueBench):
    """The workloads, run against started workers through the broker in ``taskiq_tasks``."""

    system = "Taskiq"

    def __init__(self, config: common.Config, module: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(config, loop, module.noop, module.busy, module.echo)

    def send(self, task: Any, arg: Any) -> Awaitable[AsyncTaskiqTask[Any]]:
        return task.kiq(arg)

    async def failed(self, task: AsyncTaskiqTask[Any], expected: Any, until: float) -> int:
        """Wait for one result: 0 if it is ``expected``, 1 if it failed or is wrong."""
        timeout = peer.remaining(until)
        try:
            res = await task.wait_result(check_interval=CHECK_INTERVAL, timeout=timeout)
        except TaskiqResultTimeoutError as exc:
            raise TimeoutError("a result did not arrive") from exc
        except Exception:
            return 1
        return int(res.is_err or res.return_value != expected)


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
        peer.WORKERS.append(workers)
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
