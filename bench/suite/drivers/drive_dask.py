"""Dask distributed driver: the suite's workloads on a ``LocalCluster`` started by this script.

Run by the orchestrator with the interpreter of ``.bench/venvs/dask`` (``dask[distributed]``
pinned in ``bench/suite/systems.py``):

    python bench/suite/drivers/drive_dask.py --config '<json of bench.suite.common.Config>'

``LocalCluster`` runs the scheduler in this process and ``cores`` nanny-managed worker processes
with one thread each, all on 127.0.0.1, dashboards off, logs at WARNING.

Serializer: msgpack for messages, cloudpickle (pickle protocol 5) for functions and arguments,
bytes as separate frames; the task functions travel by reference (``bench.suite.tasks``,
imported by the workers through ``PYTHONPATH``). ``pure=False`` everywhere: no result reuse.

Delivery guarantee: at-least-once while the scheduler lives (the tasks of a dead worker are
rescheduled, up to ``distributed.scheduler.allowed-failures``); state is in memory only.

Batch API (W1 batch, W4, W5b): ``client.map`` then ``wait`` and one
``client.gather``; per call (W1): one ``client.submit`` per task, results collected with
``as_completed(..., with_results=True)``. W3 and W5 keep :data:`common.WINDOW` tasks in flight
(``as_completed`` with ``add``). W5b scatters the shared object once with ``broadcast=True``.
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import dask
import distributed
from distributed import Client, LocalCluster, as_completed, wait

from bench.suite import common, peer, tasks

WAIT_SECONDS = 30.0
"""Longest wait for one task's result before the workload is declared hung."""
W2_WARMUP = 100
"""Warm-up tasks of W2 (one at a time: the default 500 would take seconds on slow peers)."""
W5_WARMUP = 20
"""Warm-up tasks of W5 (1 MiB each way)."""
CLOSE_SECONDS = 30
"""Longest wait for the client and the cluster to close."""


def budget(n: int, per_task: float = 0.01) -> float:
    """Longest wait for ``n`` tasks submitted together."""
    return WAIT_SECONDS + n * per_task


def batch(
    client: Client,
    fn: Callable[..., Any],
    args: list[list[Any]],
    expected: Callable[[int], Any],
    n: int,
) -> common.Measurement:
    """The batch API: ``client.map`` over ``args``, ``wait``, then one ``client.gather``."""
    start = time.perf_counter()
    futures = client.map(fn, *args, pure=False)
    submitted = time.perf_counter()
    wait(futures, timeout=budget(n))
    done = [i for i, f in enumerate(futures) if f.status == "finished"]
    results = client.gather([futures[i] for i in done])
    end = time.perf_counter()
    failures = (
        n - len(done) + sum(1 for i, r in zip(done, results, strict=True) if r != expected(i))
    )
    return common.Measurement(n, end - start, failures, submit_seconds=submitted - start)


def w1_per_call(client: Client, n: int) -> common.Measurement:
    """W1 per call: one ``client.submit`` per task, results collected as they complete."""
    start = time.perf_counter()
    futures = {client.submit(tasks.noop, i, pure=False): i for i in range(n)}
    submitted = time.perf_counter()
    failures = 0
    for future, result in as_completed(
        futures, with_results=True, raise_errors=False, timeout=budget(n)
    ):
        failures += future.status != "finished" or result != futures[future]
    end = time.perf_counter()
    return common.Measurement(n, end - start, failures, submit_seconds=submitted - start)


def w2(client: Client, n: int) -> common.Measurement:
    """W2: one task in flight at a time."""
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        future = client.submit(tasks.noop, i, pure=False)
        try:
            failures += future.result(timeout=WAIT_SECONDS) != i
        except TimeoutError:
            raise
        except Exception:  # the task failed: counted
            failures += 1
        latencies.append(time.perf_counter() - t0)
    return common.Measurement(n, time.perf_counter() - start, failures, latencies=latencies)


def windowed(
    client: Client,
    fn: Callable[[Any], Any],
    inputs: Iterator[tuple[Any, Any]],
    timeout: float,
) -> common.Measurement:
    """Keep :data:`common.WINDOW` tasks in flight until ``inputs`` runs out.

    ``inputs`` yields ``(argument, expected result)``; it decides when to stop (a count or a time).
    """
    pending: dict[Any, tuple[Any, float]] = {}
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()

    def submit() -> Any:
        for arg, expected in inputs:
            future = client.submit(fn, arg, pure=False)
            pending[future] = (expected, time.perf_counter())
            return future
        return None

    first = [f for f in (submit() for _ in range(common.WINDOW)) if f is not None]
    completed = as_completed(first, with_results=True, raise_errors=False, timeout=timeout)
    for future, result in completed:
        expected, t0 = pending.pop(future)
        latencies.append(time.perf_counter() - t0)
        failures += future.status != "finished" or result != expected
        new = submit()
        if new is not None:
            completed.add(new)
    end = time.perf_counter()
    return common.Measurement(len(latencies), end - start, failures, latencies=latencies)


def noop_for(seconds: float) -> Iterator[tuple[int, int]]:
    """W3 inputs: new tasks until ``seconds`` have passed."""
    stop_at = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < stop_at:
        yield i, i
        i += 1


class Payloads:
    """W5 inputs: a fresh 1 MiB payload per task (never the same object twice)."""

    def __init__(self) -> None:
        self.next = 0

    def inputs(self, n: int) -> Iterator[tuple[bytes, bytes]]:
        for _ in range(n):
            data = tasks.payload(self.next)
            self.next += 1
            yield data, data[::-1]


def run_workloads(config: common.Config, client: Client) -> None:
    if common.wants(config, "W1"):
        common.repeat(
            config,
            "W1",
            "batch",
            lambda n: batch(client, tasks.noop, [list(range(n))], identity, n),
        )
        common.repeat(config, "W1", "per_call", lambda n: w1_per_call(client, n))
    if common.wants(config, "W2"):
        common.repeat(config, "W2", "closed_loop", lambda n: w2(client, n), warmup=W2_WARMUP)
    if common.wants(config, "W3"):
        common.repeat_window(
            config,
            "window",
            lambda s: windowed(client, tasks.noop, noop_for(s), s + WAIT_SECONDS),
        )
    if common.wants(config, "W4"):
        common.repeat(
            config,
            "W4",
            "map",
            lambda n: common.with_efficiency(
                config, batch(client, tasks.busy, [list(range(n))], identity, n)
            ),
        )
    if common.wants(config, "W5"):
        payloads = Payloads()
        common.repeat(
            config,
            "W5",
            "inline",
            lambda n: windowed(client, tasks.echo, payloads.inputs(n), budget(n, 0.1)),
            warmup=W5_WARMUP,
        )
    if common.wants(config, "W5b"):
        w5b(config, client)


def w5b(config: common.Config, client: Client) -> None:
    """W5b: one object scattered to every worker once; each task reads one byte of it."""
    shared = random.Random(0).randbytes(common.BIG)
    ref = client.scatter(shared, broadcast=True, hash=False)
    common.repeat(
        config,
        "W5b",
        "shared",
        lambda n: batch(
            client, tasks.probe, [[ref] * n, list(range(n))], lambda i: tasks.probe(shared, i), n
        ),
    )
    ref.release()


def identity(i: int) -> int:
    return i


def main() -> int:
    config = common.parse_config()
    peer.interrupt_on_sigterm()
    peer.worker_environment()
    # 1 MiB arguments in W5 are the point of the workload, not a mistake to warn about.
    warnings.filterwarnings("ignore", message=".*[Ll]arge object.*")
    common.log(f"dask {distributed.__version__}: starting with {config.cores} workers")
    cluster = LocalCluster(
        n_workers=config.cores,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
        silence_logs=logging.WARNING,
    )
    try:
        client = Client(cluster)
        try:
            common.meta(
                "dask",
                {"dask": dask.__version__, "distributed": distributed.__version__},
                workers=f"{config.cores} worker processes (nanny), 1 thread each",
                address="127.0.0.1",
                serializer="msgpack + cloudpickle (pickle 5, bytes as frames); pure=False",
                delivery="at-least-once while the scheduler lives (reschedule on worker death); "
                "in memory only",
                batch_api="client.map + wait + client.gather",
                per_call="client.submit each, then as_completed(with_results=True)",
                w5=f"{common.WINDOW} tasks in flight (client.submit, as_completed)",
                w5b="client.scatter(broadcast=True) once, the future passed to every task",
            )
            run_workloads(config, client)
        finally:
            client.close(timeout=CLOSE_SECONDS)
    finally:
        cluster.close(timeout=CLOSE_SECONDS)
        common.log("dask: shut down")
        peer.reap()
    return 0


if __name__ == "__main__":
    peer.run(main)
