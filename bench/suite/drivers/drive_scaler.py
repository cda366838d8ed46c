"""OpenGRIS Scaler driver: the suite's workloads on a ``SchedulerClusterCombo`` started here.

Run by the orchestrator with the interpreter of ``.bench/venvs/scaler`` (``opengris-scaler``
pinned in ``bench/suite/systems.py``):

    python bench/suite/drivers/drive_scaler.py --config '<json of bench.suite.common.Config>'

``SchedulerClusterCombo`` starts the object storage server, the scheduler and a native worker
manager with ``cores`` worker processes, all on 127.0.0.1 (ports picked free), logs at WARNING on
stderr; one ``Client`` connects to it.

Serializer: Scaler's default serializer (cloudpickle); the task functions travel by reference
(``bench.suite.tasks``, imported by the workers through ``PYTHONPATH``). Every argument and
result is an object in the object storage server; the client deduplicates identical content,
so every task here gets an argument no other task had.

Delivery guarantee: a task whose worker disconnects is rerouted to another worker (at-least-once),
a task whose processor dies under it is reported failed (``failedWorkerDied``), not retried;
state is in memory only.

Batch API (W1 batch, W4, W5b): ``client.map`` (blocking; run in a thread so that it
can be timed out); per call (W1): one ``client.submit`` per task, results collected with
done callbacks as they complete. W3 and W5 keep :data:`common.WINDOW` tasks in flight. W5b
sends the shared object once with ``client.send_object`` and passes its reference to every task.

Scaler's worker processes log at INFO on stdout whatever the combo is told, so the records go to
a duplicate of stdout and the processes started here get stderr as their stdout. ``client.map``
disconnects its client when a task raises: that repetition becomes an error record (failures
inside a batch cannot be counted one by one) and the next one runs on a new client.
"""

from __future__ import annotations

import itertools
import os
import queue
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from typing import Any

from scaler import Client, SchedulerClusterCombo

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


def bounded(call: Callable[[], Any], timeout: float) -> Any:
    """``call()`` in a daemon thread, waiting at most ``timeout`` seconds for it."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="scaler-map", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer in {timeout:.0f}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


class Fresh:
    """Arguments no earlier task had (the client would not upload repeated content again)."""

    def __init__(self) -> None:
        self.counter = itertools.count()

    def ints(self, n: int) -> list[int]:
        return [next(self.counter) for _ in range(n)]


def batch(
    client: Client,
    fn: Callable[..., Any],
    args: list[list[Any]],
    expected: list[Any],
) -> common.Measurement:
    """The batch API: one blocking ``client.map`` over ``args``."""
    n = len(expected)
    start = time.perf_counter()
    results = bounded(lambda: client.map(fn, *args), budget(n))
    end = time.perf_counter()
    failures = abs(n - len(results)) + sum(
        1 for r, e in zip(results, expected, strict=False) if r != e
    )
    return common.Measurement(n, end - start, failures)


class Completed:
    """Futures in the order they complete, each with its result fetched.

    ``concurrent.futures.as_completed`` and ``wait`` miscount Scaler's futures (they are done
    before their result object arrives, and then report completion a second time), so this
    collects them with done callbacks instead; a callback also makes the client fetch the result
    as soon as the task is done.
    """

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def watch(self, future: Any) -> Any:
        future.add_done_callback(self.queue.put)
        return future

    def next(self, timeout: float) -> Any:
        timeout = max(0.0, timeout)
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no result in the last {timeout:.0f}s") from None


def outcome(future: Any, expected: Any) -> bool:
    """Whether a completed task returned ``expected`` (a failed task is counted, not raised)."""
    try:
        return future.result(timeout=WAIT_SECONDS) == expected
    except TimeoutError:
        raise
    except Exception:  # the task failed: counted
        return False


def w1_per_call(client: Client, xs: list[int]) -> common.Measurement:
    """W1 per call: one ``client.submit`` per task, results collected as they complete."""
    n = len(xs)
    completed = Completed()
    deadline = time.monotonic() + budget(n)
    start = time.perf_counter()
    futures = {completed.watch(client.submit(tasks.noop, x)): x for x in xs}
    submitted = time.perf_counter()
    failures = 0
    for _ in range(n):
        future = completed.next(deadline - time.monotonic())
        failures += not outcome(future, futures[future])
    end = time.perf_counter()
    return common.Measurement(n, end - start, failures, submit_seconds=submitted - start)


def w2(client: Client, xs: list[int]) -> common.Measurement:
    """W2: one task in flight at a time."""
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()
    for x in xs:
        t0 = time.perf_counter()
        failures += not outcome(client.submit(tasks.noop, x), x)
        latencies.append(time.perf_counter() - t0)
    return common.Measurement(len(xs), time.perf_counter() - start, failures, latencies=latencies)


def windowed(
    client: Client, fn: Callable[[Any], Any], inputs: Iterator[tuple[Any, Any]]
) -> common.Measurement:
    """Keep :data:`common.WINDOW` tasks in flight until ``inputs`` runs out.

    ``inputs`` yields ``(argument, expected result)``; it decides when to stop (a count or a time).
    """
    pending: dict[Any, tuple[Any, float]] = {}
    completed = Completed()
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()

    def submit() -> None:
        for arg, expected in inputs:
            pending[completed.watch(client.submit(fn, arg))] = (expected, time.perf_counter())
            return

    for _ in range(common.WINDOW):
        submit()
    while pending:
        future = completed.next(WAIT_SECONDS)
        expected, t0 = pending.pop(future)
        failures += not outcome(future, expected)
        latencies.append(time.perf_counter() - t0)
        submit()
    end = time.perf_counter()
    return common.Measurement(len(latencies), end - start, failures, latencies=latencies)


def noop_for(fresh: Fresh, seconds: float) -> Iterator[tuple[int, int]]:
    """W3 inputs: new tasks until ``seconds`` have passed."""
    stop_at = time.perf_counter() + seconds
    while time.perf_counter() < stop_at:
        x = next(fresh.counter)
        yield x, x


def payloads(fresh: Fresh, n: int) -> Iterator[tuple[bytes, bytes]]:
    """W5 inputs: a new 1 MiB payload per task and its expected (reversed) result."""
    for x in fresh.ints(n):
        data = tasks.payload(x)
        yield data, data[::-1]


class Session:
    """The client, replaced by a new one after a failed repetition.

    ``client.map`` disconnects its client when a task raises; the next workload needs another.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.client = Client(address=address)
        self.shared: tuple[Client, Any] | None = None

    def guard(
        self, run: Callable[[Any], common.Measurement]
    ) -> Callable[[Any], common.Measurement]:
        """``run``, reconnecting when it raises (the exception still becomes an error record)."""

        def guarded(arg: Any) -> common.Measurement:
            try:
                return run(arg)
            except Exception:
                self.reconnect()
                raise

        return guarded

    def reconnect(self) -> None:
        common.log("scaler: reconnecting the client")
        self.client.disconnect()
        self.client = Client(address=self.address)

    def send_shared(self, obj: bytes) -> Any:
        """The reference of ``obj`` sent (once per client) with ``client.send_object``."""
        if self.shared is None or self.shared[0] is not self.client:
            self.shared = (self.client, self.client.send_object(obj, name="w5b-shared"))
        return self.shared[1]


def run_workloads(config: common.Config, session: Session) -> None:
    fresh = Fresh()
    if common.wants(config, "W1"):

        def w1_batch(n: int) -> common.Measurement:
            xs = fresh.ints(n)
            return batch(session.client, tasks.noop, [xs], xs)

        common.repeat(config, "W1", "batch", session.guard(w1_batch))
        common.repeat(
            config,
            "W1",
            "per_call",
            session.guard(lambda n: w1_per_call(session.client, fresh.ints(n))),
        )
    if common.wants(config, "W2"):
        common.repeat(
            config,
            "W2",
            "closed_loop",
            session.guard(lambda n: w2(session.client, fresh.ints(n))),
            warmup=W2_WARMUP,
        )
    if common.wants(config, "W3"):
        common.repeat_window(
            config,
            "window",
            session.guard(lambda s: windowed(session.client, tasks.noop, noop_for(fresh, s))),
        )
    if common.wants(config, "W4"):

        def w4(n: int) -> common.Measurement:
            xs = fresh.ints(n)
            return common.with_efficiency(config, batch(session.client, tasks.busy, [xs], xs))

        common.repeat(config, "W4", "map", session.guard(w4))
    if common.wants(config, "W5"):
        common.repeat(
            config,
            "W5",
            "inline",
            session.guard(lambda n: windowed(session.client, tasks.echo, payloads(fresh, n))),
            warmup=W5_WARMUP,
        )
    if common.wants(config, "W5b"):
        shared = random.Random(0).randbytes(common.BIG)

        def w5b(n: int) -> common.Measurement:
            xs = fresh.ints(n)
            ref = session.send_shared(shared)
            expected = [tasks.probe(shared, x) for x in xs]
            return batch(session.client, tasks.probe, [[ref] * n, xs], expected)

        common.repeat(config, "W5b", "shared", session.guard(w5b))


def records_on_private_stdout() -> None:
    """Keep the records on the real stdout and give every process started later stderr as stdout.

    Scaler's worker processes configure their logging with the defaults (INFO on stdout)
    whatever the combo was asked for; their lines must not mix with the records.
    """
    sys.stdout.flush()
    records = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = records


def main() -> int:
    config = common.parse_config()
    peer.interrupt_on_sigterm()
    peer.worker_environment()
    records_on_private_stdout()
    scaler_version = version("opengris-scaler")
    common.log(f"scaler {scaler_version}: starting with {config.cores} workers")
    combo = SchedulerClusterCombo(
        n_workers=config.cores,
        logging_paths=("/dev/stderr",),  # stdout carries the records
        logging_level="WARNING",
    )
    try:
        session = Session(combo.get_address())
        try:
            common.meta(
                "scaler",
                {"opengris-scaler": scaler_version},
                workers=f"{config.cores} worker processes (native worker manager)",
                address=combo.get_address(),
                serializer="cloudpickle (default serializer); arguments and results as objects "
                "in the object storage server, identical content uploaded once",
                delivery="tasks of a lost worker rerouted; a crashed processor fails its task "
                "(failedWorkerDied, no retry); in memory only",
                batch_api="client.map (blocking)",
                per_call="client.submit each, results taken as they complete (done callbacks)",
                w5=f"{common.WINDOW} tasks in flight (client.submit, done callbacks)",
                w5b="client.send_object once, the reference passed to every task",
            )
            run_workloads(config, session)
        finally:
            session.client.disconnect()
    finally:
        combo.shutdown()
        common.log("scaler: shut down")
        peer.reap()
    return 0


if __name__ == "__main__":
    peer.run(main)
