"""Benchmark driver for Celery on a Redis broker (see bench/suite/common.py for the contract).

How the peer runs: a private ``redis-server`` (loopback, no RDB/AOF persistence) is broker and
result backend; one ``celery worker --pool prefork -c <cores>`` (process-based pool, one task at a
time per child, ``worker_prefetch_multiplier`` 4, gossip/mingle/heartbeat off) runs the tasks of
``bench.suite.drivers.celery_tasks``. The client is Celery's synchronous API in this process.

Serializer: pickle for tasks and results (enabled explicitly; JSON cannot carry bytes).
Delivery: ``task_acks_late`` off (Celery's default: acknowledged when a worker takes the task, so
at most once if a worker dies mid-task); Redis keeps everything in memory only. Results reach the
client through the Redis backend's pub/sub (no polling interval).

Workloads: W1 ``batch`` is ``group(...).apply_async()`` collected with ``join_native``; W1
``per_call`` is one ``apply_async`` per task, then one ``get()`` per result. W2 is a closed loop of
``delay().get()``. W3 keeps WINDOW tasks in flight and collects in submission order. W4 is W1
``batch`` with 1 ms CPU tasks. W5 ``inline`` sends 1 MiB in and out per task and collects with one
``get()`` per result (``join_native`` has hung with 1 MiB results). W5b is skipped. Every result is
checked; results are deleted from Redis after each repetition, outside the timed part.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import celery
import kombu
import redis
from celery import group
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from bench.suite import common, peer, tasks
from bench.suite.redis_server import (
    RedisServer,
    exit_on_signals,
    ignore_signals,
    start_group,
    stop_group,
)

SYSTEM = "celery"
PREFETCH = 4
ACKS_LATE = False
STARTUP_TIMEOUT = 90.0
W2_TIMEOUT = 10.0
"""Most seconds to wait for one W2/W3 result before the repetition is an error."""


class Bench:
    """The workloads, run against a started worker through the app in ``celery_tasks``."""

    def __init__(self, config: common.Config, app_module: Any) -> None:
        self.config = config
        self.ct = app_module
        self.backend = app_module.app.backend

    def forget(self, results: Iterable[AsyncResult]) -> None:
        """Delete results from Redis (outside the timed part: W5 would fill memory)."""
        client = self.backend.client
        keys = [self.backend.get_key_for_task(r.id) for r in results]
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])

    def collect(
        self, results: Sequence[AsyncResult], check: Callable[[int, Any], bool], until: float
    ) -> int:
        """One ``get()`` per result, in order; returns the failures."""
        failures = 0
        for i, result in enumerate(results):
            timeout = peer.remaining(until)
            try:
                value = result.get(timeout=timeout)
            except CeleryTimeout as exc:
                raise TimeoutError(f"result {i} of {len(results)} did not arrive") from exc
            except Exception:
                failures += 1
                continue
            failures += not check(i, value)
        return failures

    def w1_batch(self, task: Any, n: int) -> common.Measurement:
        until = peer.deadline(n)
        start = time.perf_counter()
        res = group(task.s(i) for i in range(n)).apply_async()
        submitted = time.perf_counter()
        try:
            values = res.join_native(timeout=peer.remaining(until), propagate=False)
        except CeleryTimeout as exc:
            raise TimeoutError(f"group of {n} did not complete") from exc
        end = time.perf_counter()
        failures = sum(v != i for i, v in enumerate(values)) + (n - len(values))
        self.forget(res.results)
        return common.Measurement(n, end - start, failures, submit_seconds=submitted - start)

    def w1_per_call(self, n: int) -> common.Measurement:
        until = peer.deadline(n)
        noop = self.ct.noop
        start = time.perf_counter()
        results = [noop.apply_async((i,)) for i in range(n)]
        submitted = time.perf_counter()
        failures = self.collect(results, lambda i, v: v == i, until)
        end = time.perf_counter()
        self.forget(results)
        return common.Measurement(n, end - start, failures, submit_seconds=submitted - start)

    def w2(self, n: int) -> common.Measurement:
        noop = self.ct.noop
        latencies: list[float] = []
        results: list[AsyncResult] = []
        failures = 0
        start = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            result = noop.delay(i)
            failures += self._get(result, i)
            latencies.append(time.perf_counter() - t0)
            results.append(result)
        end = time.perf_counter()
        self.forget(results)
        return common.Measurement(n, end - start, failures, latencies=latencies)

    @staticmethod
    def _get(result: AsyncResult, expected: Any) -> int:
        try:
            value = result.get(timeout=W2_TIMEOUT)
        except CeleryTimeout as exc:
            raise TimeoutError("a result did not arrive") from exc
        except Exception:
            return 1
        return int(value != expected)

    def w3(self, seconds: float) -> common.Measurement:
        """WINDOW in flight; the oldest is collected first (completion is nearly FIFO here)."""
        noop = self.ct.noop
        latencies: list[float] = []
        done: list[AsyncResult] = []
        failures = 0
        window: deque[tuple[int, float, AsyncResult]] = deque()
        start = time.perf_counter()
        stop_at = start + seconds
        i = 0
        while window or i == 0:
            while len(window) < common.WINDOW and time.perf_counter() < stop_at:
                window.append((i, time.perf_counter(), noop.delay(i)))
                i += 1
            if not window:
                break
            k, t0, result = window.popleft()
            failures += self._get(result, k)
            latencies.append(time.perf_counter() - t0)
            done.append(result)
        end = time.perf_counter()
        self.forget(done)
        return common.Measurement(len(done), end - start, failures, latencies=latencies)

    def w5_inline(self, n: int) -> common.Measurement:
        until = peer.deadline(n, per_task=0.2)
        echo = self.ct.echo
        start = time.perf_counter()
        results = [echo.apply_async((tasks.payload(i),)) for i in range(n)]
        submitted = time.perf_counter()
        failures = self.collect(results, lambda i, v: v == tasks.echoed(i), until)
        end = time.perf_counter()
        self.forget(results)
        return common.Measurement(n, end - start, failures, submit_seconds=submitted - start)

    def run(self) -> None:
        ct = self.ct
        peer.run_queued(
            self.config,
            "Celery",
            w1_batch=lambda n: self.w1_batch(ct.noop, n),
            w1_per_call=self.w1_per_call,
            w2=self.w2,
            w3=self.w3,
            w4=lambda n: self.w1_batch(ct.busy, n),
            w5=self.w5_inline,
        )


def start_worker(config: common.Config, env: dict[str, str]) -> Any:
    argv = [
        sys.executable, "-m", "celery", "-A", "bench.suite.drivers.celery_tasks", "worker",
        "--pool", "prefork", "--concurrency", str(config.cores),
        "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--hostname", f"bench-{os.getpid()}@localhost",
    ]  # fmt: skip
    return start_group(argv, env=env, stdout=sys.stderr.fileno())


def main() -> int:
    config = common.parse_config()
    exit_on_signals()
    server = RedisServer()
    worker = None
    try:
        server.start()
        env = {
            **os.environ,
            "BENCH_REDIS_URL": server.url,
            "BENCH_CELERY_PREFETCH": str(PREFETCH),
            "BENCH_CELERY_ACKS_LATE": "1" if ACKS_LATE else "0",
            # Celery refuses pickle to a worker running as root unless forced (bench boxes often
            # run everything as root; the worker only ever sees this run's own messages)
            "C_FORCE_ROOT": "1",
        }
        os.environ.update({k: env[k] for k in env if k.startswith("BENCH_")})
        from bench.suite.drivers import celery_tasks  # reads BENCH_* when imported

        worker = start_worker(config, env)
        peer.WORKERS.append(worker)
        ready = config.cores + 1  # the pool children and the consumer
        server.wait_members(celery_tasks.READY_KEY, ready, [worker], timeout=STARTUP_TIMEOUT)
        common.log(f"celery worker ready: {config.cores} prefork children on {server.url}")
        common.meta(
            SYSTEM,
            {
                "celery": celery.__version__,
                "kombu": kombu.__version__,
                "redis-py": redis.__version__,
                "redis-server": server.version,
            },
            broker="redis (list queue), result backend redis (pub/sub + GET)",
            workers=f"1 celery worker, prefork pool, {config.cores} child processes",
            serializer="pickle (tasks and results)",
            acks_late=ACKS_LATE,
            worker_prefetch_multiplier=PREFETCH,
            delivery="at most once (acks_late off); Redis without persistence (no RDB, no AOF)",
            w1_batch="group(...).apply_async(), collected with GroupResult.join_native()",
            w1_per_call="apply_async() per task, then AsyncResult.get() per task",
            w3="window of WINDOW tasks, collected in submission order",
            w4="as W1 batch with tasks.busy",
            w5="apply_async() per task, AsyncResult.get() per task (join_native hung here)",
            result_wait="AsyncResult.get() on the Redis backend waits on pub/sub, not by polling",
        )
        Bench(config, celery_tasks).run()
        common.log(server.summary())
    finally:
        ignore_signals()
        stop_group(worker, grace=10.0)
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
