"""Ray driver: the suite's workloads on a single-node Ray cluster started by this script.

Run by the orchestrator with the interpreter of ``.bench/venvs/ray`` (``ray`` pinned in
``bench/suite/systems.py``), in its own network namespace where only loopback is up:

    python bench/suite/drivers/drive_ray.py --config '<json of bench.suite.common.Config>'

``ray.init`` starts the GCS, a raylet and ``cores`` worker processes (``num_cpus=cores``, one task
at a time each) bound to 127.0.0.1, dashboard off, logs at WARNING and not forwarded to the driver.

Serializer: Ray's pickle protocol 5 with cloudpickle; the task functions travel by reference
(``bench.suite.tasks``, imported by the workers through ``PYTHONPATH``). Arguments and results
above 100 KiB go through the shared-memory object store (W5's 1 MiB payloads), smaller ones inline.

Delivery guarantee: at-least-once while the driver lives (a task whose worker dies is retried,
``max_retries=3`` by default); ownership and objects are in memory only, nothing is persisted.

Batch API (W1 batch, W4, W5b): a list of ``f.remote(...)`` then one
``ray.get(list)``; per call (W1): the same submissions, then one ``ray.get(ref)`` per task.
W5 keeps :data:`common.WINDOW` tasks in flight (1 MiB in and out each).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from bench.suite import common, peer, tasks

WAIT_SECONDS = 30.0
"""Longest wait for one task's result before the workload is declared hung."""
W2_WARMUP = 100
"""Warm-up tasks of W2 (one at a time: the default 500 would take seconds on slow peers)."""
W5_WARMUP = 20
"""Warm-up tasks of W5 (1 MiB each way)."""


def budget(n: int, per_task: float = 0.01) -> float:
    """Longest wait for ``n`` tasks submitted together."""
    return WAIT_SECONDS + n * per_task


class Remote:
    """The task bodies as Ray remote functions."""

    def __init__(self) -> None:
        self.noop = ray.remote(tasks.noop)
        self.busy = ray.remote(tasks.busy)
        self.echo = ray.remote(tasks.echo)
        self.probe = ray.remote(tasks.probe)


FAILED = object()
"""The result of a task that raised (it is counted once, as a failure)."""


def get_all(refs: list[Any], timeout: float) -> tuple[list[Any], int]:
    """Results of ``refs`` in order (:data:`FAILED` for a failed task) and the number of those."""
    try:
        return ray.get(refs, timeout=timeout), 0
    except GetTimeoutError:
        raise
    except RayError:
        pass
    results: list[Any] = []
    failures = 0
    for ref in refs:
        try:
            results.append(ray.get(ref, timeout=timeout))
        except GetTimeoutError:
            raise
        except RayError:
            results.append(FAILED)
            failures += 1
    return results, failures


def batch(
    submit: Callable[[int], Any], expected: Callable[[int], Any], n: int
) -> common.Measurement:
    """The batch API: submit ``n`` tasks, then one ``ray.get`` of the whole list."""
    start = time.perf_counter()
    refs = [submit(i) for i in range(n)]
    submitted = time.perf_counter()
    results, failures = get_all(refs, budget(n))
    end = time.perf_counter()
    failures += sum(1 for i, r in enumerate(results) if r is not FAILED and r != expected(i))
    return common.Measurement(n, end - start, failures, submit_seconds=submitted - start)


def w1_per_call(fns: Remote, n: int) -> common.Measurement:
    """W1 per call: submit every task, then one ``ray.get`` per task."""
    deadline = time.monotonic() + budget(n)
    start = time.perf_counter()
    refs = [fns.noop.remote(i) for i in range(n)]
    submitted = time.perf_counter()
    failures = 0
    for i, ref in enumerate(refs):
        try:
            failures += ray.get(ref, timeout=max(0.0, deadline - time.monotonic())) != i
        except GetTimeoutError:
            raise
        except RayError:
            failures += 1
    end = time.perf_counter()
    return common.Measurement(n, end - start, failures, submit_seconds=submitted - start)


def w2(fns: Remote, n: int) -> common.Measurement:
    """W2: one task in flight at a time."""
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        try:
            failures += ray.get(fns.noop.remote(i), timeout=WAIT_SECONDS) != i
        except GetTimeoutError:
            raise
        except RayError:
            failures += 1
        latencies.append(time.perf_counter() - t0)
    return common.Measurement(n, time.perf_counter() - start, failures, latencies=latencies)


def windowed(
    submit: Callable[[int], Any],
    check: Callable[[int, Any], bool],
    *,
    count: int | None = None,
    seconds: float | None = None,
) -> common.Measurement:
    """Keep :data:`common.WINDOW` tasks in flight: ``count`` tasks, or new ones for ``seconds``.

    ``submit(i)`` submits task ``i`` and returns its ref; ``check(i, result)`` validates it.
    """
    pending: dict[Any, tuple[int, float]] = {}
    latencies: list[float] = []
    failures = 0
    issued = 0
    start = time.perf_counter()
    stop_at = start + seconds if seconds is not None else None

    def more() -> bool:
        if count is not None:
            return issued < count
        return stop_at is not None and time.perf_counter() < stop_at

    while len(pending) < common.WINDOW and more():
        pending[submit(issued)] = (issued, time.perf_counter())
        issued += 1
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_SECONDS)
        if not ready:
            raise TimeoutError(f"no result in {WAIT_SECONDS}s with {len(pending)} tasks in flight")
        for ref in ready:
            i, t0 = pending.pop(ref)
            try:
                ok = check(i, ray.get(ref, timeout=WAIT_SECONDS))
            except GetTimeoutError:
                raise
            except RayError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            failures += not ok
            if more():
                pending[submit(issued)] = (issued, time.perf_counter())
                issued += 1
    end = time.perf_counter()
    return common.Measurement(issued, end - start, failures, latencies=latencies)


class Payloads:
    """W5 inputs: a fresh 1 MiB payload per task (never the same object twice)."""

    def __init__(self) -> None:
        self.next = 0
        self.inputs: dict[int, bytes] = {}

    def run(self, fns: Remote, n: int) -> common.Measurement:
        base = self.next
        self.next += n

        def submit(i: int) -> Any:
            data = tasks.payload(base + i)
            self.inputs[i] = data
            return fns.echo.remote(data)

        def check(i: int, result: Any) -> bool:
            return result == self.inputs.pop(i)[::-1]

        try:
            return windowed(submit, check, count=n)
        finally:
            self.inputs.clear()


def run_workloads(config: common.Config, fns: Remote) -> None:
    if common.wants(config, "W1"):
        common.repeat(config, "W1", "batch", lambda n: batch(fns.noop.remote, identity, n))
        common.repeat(config, "W1", "per_call", lambda n: w1_per_call(fns, n))
    if common.wants(config, "W2"):
        common.repeat(config, "W2", "closed_loop", lambda n: w2(fns, n), warmup=W2_WARMUP)
    if common.wants(config, "W3"):
        common.repeat_window(
            config, "window", lambda s: windowed(fns.noop.remote, equal_to_index, seconds=s)
        )
    if common.wants(config, "W4"):
        common.repeat(
            config,
            "W4",
            "map",
            lambda n: common.with_efficiency(config, batch(fns.busy.remote, identity, n)),
        )
    if common.wants(config, "W5"):
        payloads = Payloads()
        common.repeat(config, "W5", "inline", lambda n: payloads.run(fns, n), warmup=W5_WARMUP)
    if common.wants(config, "W5b"):
        shared = random.Random(0).randbytes(common.BIG)
        ref = ray.put(shared)
        common.repeat(
            config,
            "W5b",
            "shared",
            lambda n: batch(
                lambda i: fns.probe.remote(ref, i), lambda i: tasks.probe(shared, i), n
            ),
        )
        del ref


def identity(i: int) -> int:
    return i


def equal_to_index(i: int, result: Any) -> bool:
    return result == i


def main() -> int:
    config = common.parse_config()
    peer.interrupt_on_sigterm()
    peer.worker_environment()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # workers inherit it: no usage reporting
    common.log(f"ray {ray.__version__}: starting with {config.cores} workers")
    ray.init(
        num_cpus=config.cores,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    try:
        common.meta(
            "ray",
            {"ray": ray.__version__},
            workers=f"{config.cores} worker processes (num_cpus={config.cores})",
            address="127.0.0.1 (own network namespace)",
            serializer="pickle 5 + cloudpickle; args/results > 100 KiB via the object store",
            delivery="at-least-once while the driver lives (max_retries=3); in memory only",
            batch_api="[f.remote(i) ...] + ray.get(list)",
            per_call="f.remote(i) each, then ray.get(ref) each",
            w5=f"{common.WINDOW} tasks in flight",
            w5b="ray.put once, the ref passed to every task",
        )
        run_workloads(config, Remote())
    finally:
        ray.shutdown()
        common.log("ray: shut down")
        peer.reap()
    return 0


if __name__ == "__main__":
    peer.run(main)
