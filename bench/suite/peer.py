"""What the peer drivers share: their processes, signals and waits.

Standard library only: imported by drivers running in each peer's own virtual environment (the
orchestrator puts the repository root on ``PYTHONPATH``). ``psutil`` is imported by :func:`reap`
alone, when it is called: only the Ray, Dask and Scaler environments have it.

The Ray, Dask and Scaler drivers start their system in-process and stop it with its own API,
then :func:`reap` what is left; SIGTERM becomes :class:`KeyboardInterrupt`
(:func:`interrupt_on_sigterm`, :func:`run`). The Celery, Taskiq and arq drivers start their
workers with :mod:`bench.suite.redis_server`, bound every wait with :func:`deadline` and
:func:`remaining` and run the same workloads (:func:`run_queued`); the Taskiq and arq drivers,
asyncio clients both, run them the same way (:class:`AsyncQueueBench`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from types import FrameType
from typing import Any

from bench.suite import common, tasks

ROOT = str(Path(__file__).resolve().parents[2])
"""The repository root (worker processes import ``bench.suite.tasks`` from it)."""


def worker_environment() -> None:
    """Worker processes inherit this environment: the repository root on PYTHONPATH."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if ROOT not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, *paths])


def reap(grace: float = 5.0) -> None:
    """Stop what is left of the processes this driver started (a peer that did not shut down).

    multiprocessing's resource tracker is left alone: it exits with this process.
    """
    import psutil  # Ray's own copy (ray/thirdparty_files) is on sys.path once ray is imported

    left = [
        p
        for p in psutil.Process().children(recursive=True)
        if "resource_tracker" not in " ".join(_cmdline(p))
    ]
    if not left:
        return
    common.log(f"{len(left)} processes left after shutdown: terminating them")
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(left, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def _cmdline(p: Any) -> list[str]:
    try:
        return p.cmdline()
    except Exception:  # gone, or not ours to read
        return []


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def interrupt_on_sigterm() -> None:
    """SIGTERM raises :class:`KeyboardInterrupt`, so that ``finally`` blocks stop the peer."""
    signal.signal(signal.SIGTERM, _interrupt)


def run(main: Callable[[], int]) -> None:
    """Exit with ``main()``'s status, or with 130 after SIGTERM or ^C."""
    try:
        sys.exit(main())
    except KeyboardInterrupt as exc:  # SIGTERM or ^C: everything was stopped on the way out
        common.log(f"interrupted ({exc})")
        sys.exit(130)


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


ONE_TIMEOUT = 10.0
"""Most seconds to wait for one W2/W3 result before the repetition is an error."""

Run = Callable[[Any], common.Measurement]


def run_queued(
    config: common.Config,
    system: str,
    *,
    w1_batch: Run,
    w1_per_call: Run,
    w2: Run,
    w3: Run,
    w4: Run,
    w5: Run,
) -> None:
    """The workloads of a task queue without a shared-object facility (W5b is skipped)."""
    if common.wants(config, "W1"):
        common.repeat(config, "W1", "batch", w1_batch)
        common.repeat(config, "W1", "per_call", w1_per_call)
    if common.wants(config, "W2"):
        common.repeat(config, "W2", "closed_loop", w2, warmup=100)
    if common.wants(config, "W3"):
        common.repeat_window(config, "window", w3)
    if common.wants(config, "W4"):
        common.repeat(config, "W4", "batch", w4)
    if common.wants(config, "W5"):
        common.repeat(config, "W5", "inline", w5, warmup=20)
    if common.wants(config, "W5b"):
        common.skip("W5b", "shared", f"{system} has no shared-object facility")


class AsyncQueueBench(abc.ABC):
    """The workloads through a task queue's asyncio client, results awaited in submission order.

    A subclass gives :meth:`send` (submit one task, its handle back) and :meth:`failed`; the
    tasks ``noop``, ``busy`` and ``echo`` are whatever :meth:`send` takes. W1 ``batch`` sends
    every task concurrently (at most ``submit_window`` at a time when it is set), W1 ``per_call``
    and W5 one after another; W2 is a closed loop, W3 a window of :data:`common.WINDOW`.
    """

    system = ""
    """The peer's name in what it cannot do."""
    submit_window: int | None = None
    """Most sends in flight in ``batch``; ``None``: all at once."""

    def __init__(
        self,
        config: common.Config,
        loop: asyncio.AbstractEventLoop,
        noop: Any,
        busy: Any,
        echo: Any,
    ) -> None:
        self.config = config
        self.loop = loop
        self.noop = noop
        self.busy = busy
        self.echo = echo

    @abc.abstractmethod
    def send(self, task: Any, arg: Any) -> Awaitable[Any]:
        """Submit ``task(arg)``; the handle of its result."""

    @abc.abstractmethod
    async def failed(self, handle: Any, expected: Any, until: float) -> int:
        """Wait for one result: 0 if it is ``expected``, 1 if it failed or is wrong.

        Raises :class:`TimeoutError` when it has not come by ``until`` (``time.monotonic()``).
        """

    def after_run(self) -> None:  # noqa: B027 - an optional hook, a no-op by design
        """Called after every run, outside the timed part (nothing by default)."""

    def sync(self, make: Callable[[Any], Coroutine[Any, Any, common.Measurement]]) -> Run:
        """``repeat`` calls plain functions: run the coroutine on the driver's loop."""

        def run(arg: Any) -> common.Measurement:
            measurement = self.loop.run_until_complete(make(arg))
            self.after_run()
            return measurement

        return run

    def run(self) -> None:
        run_queued(
            self.config,
            self.system,
            w1_batch=self.sync(lambda n: self.batch(self.noop, n)),
            w1_per_call=self.sync(self.per_call),
            w2=self.sync(self.w2),
            w3=self.sync(self.w3),
            w4=self.sync(lambda n: self.batch(self.busy, n)),
            w5=self.sync(self.w5_inline),
        )

    async def collect(self, sent: list[Any], expect: Callable[[int], Any], until: float) -> int:
        failures = 0
        for i, handle in enumerate(sent):
            failures += await self.failed(handle, expect(i), until)
        return failures

    async def batch(self, task: Any, n: int) -> common.Measurement:
        until = deadline(n)
        window = asyncio.Semaphore(self.submit_window) if self.submit_window else None

        async def send(i: int) -> Any:
            if window is None:
                return await self.send(task, i)
            async with window:
                return await self.send(task, i)

        start = time.perf_counter()
        sent = await asyncio.gather(*(send(i) for i in range(n)))
        submitted = time.perf_counter()
        failures = await self.collect(sent, lambda i: i, until)
        end = time.perf_counter()
        return common.Measurement(n, end - start, failures, submit_seconds=submitted - start)

    async def per_call(self, n: int) -> common.Measurement:
        until = deadline(n)
        start = time.perf_counter()
        sent = [await self.send(self.noop, i) for i in range(n)]
        submitted = time.perf_counter()
        failures = await self.collect(sent, lambda i: i, until)
        end = time.perf_counter()
        return common.Measurement(n, end - start, failures, submit_seconds=submitted - start)

    async def w2(self, n: int) -> common.Measurement:
        latencies: list[float] = []
        failures = 0
        start = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            handle = await self.send(self.noop, i)
            failures += await self.failed(handle, i, time.monotonic() + ONE_TIMEOUT)
            latencies.append(time.perf_counter() - t0)
        return common.Measurement(n, time.perf_counter() - start, failures, latencies=latencies)

    async def w3(self, seconds: float) -> common.Measurement:
        latencies: list[float] = []
        failures = 0
        window: deque[tuple[int, float, Any]] = deque()
        start = time.perf_counter()
        stop_at = start + seconds
        i = 0
        while window or i == 0:
            while len(window) < common.WINDOW and time.perf_counter() < stop_at:
                window.append((i, time.perf_counter(), await self.send(self.noop, i)))
                i += 1
            if not window:
                break
            k, t0, handle = window.popleft()
            failures += await self.failed(handle, k, time.monotonic() + ONE_TIMEOUT)
            latencies.append(time.perf_counter() - t0)
        end = time.perf_counter()
        return common.Measurement(len(latencies), end - start, failures, latencies=latencies)

    async def w5_inline(self, n: int) -> common.Measurement:
        until = deadline(n, per_task=0.2)
        start = time.perf_counter()
        sent = [await self.send(self.echo, tasks.payload(i)) for i in range(n)]
        submitted = time.perf_counter()
        failures = await self.collect(sent, tasks.echoed, until)
        end = time.perf_counter()
        return common.Measurement(n, end - start, failures, submit_seconds=submitted - start)
