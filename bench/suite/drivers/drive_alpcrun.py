"""alpcrun under the suite's workloads: a real grid of CLI processes, the SDK as the client.

The grid is :class:`bench.throughput.Grid` plus a central cache and a node agent: queue
manager, central cache, node agent and ``cores`` worker processes, each started through the
``alpcrun`` CLI with the project's interpreter, all on 127.0.0.1. The queue manager runs
without its journal (in memory). Every result is checked; see bench/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc

import alpcrun
from alpcrun.client import AsyncClient, AsyncSession, TaskInput
from alpcrun.config import ClientSettings
from bench.suite import common, peer, tasks
from bench.suite.common import BIG, SMALL, WINDOW, Config, Measurement
from bench.throughput import READY_TIMEOUT_S, Grid
from workers_sdk import TaskContext, Worker

SYSTEM = "alpcrun"
WORKER_SPEC = "bench.suite.drivers.drive_alpcrun:BenchWorker"
CLIENT_BATCH_TASKS: int = ClientSettings.model_fields["max_batch_tasks"].default
W4_BATCH_TASKS = 100
"""The client's default batch size: what W1 ``batch`` uses (the gRPC baseline's batch1000)."""
BIG_BATCH_TASKS = 4
"""Client batch size of W5 (4 x 1 MiB fills the default 4 MiB batch; the session window of
16 batches then keeps at most 64 MiB of payloads in flight)."""

RUN_TIMEOUT_S = 120.0
"""Longest one repetition may take; beyond, the workload is reported as an error."""
LOG_LEVEL = "warning"
"""Log level of every grid process (their logs are shown when the grid fails to start)."""
OP_NOOP, OP_BUSY, OP_ECHO, OP_PROBE, OP_SMALL, OP_PAYLOAD = b"nbepsP"
PAYLOAD_NODE = "bench"
"""The node name of the suite grid's machine in the payload catalog."""
PAYLOAD_RAM = "8GB"
"""RAM tier of the suite grid's node agent (W5 holds N inputs and N outputs of 1 MiB)."""
T = TypeVar("T")


class BenchWorker(Worker):
    """Runs the suite's task bodies; the first payload byte names the body, then ``x``."""

    async def handle(self, task: TaskContext) -> bytes:
        data = task.payload
        op = data[0]
        if op == OP_ECHO:
            return tasks.echo(data[1:])
        if op == OP_PAYLOAD:  # W5 through the payload store: the input reversed, as a payload
            async with task.open_async(task.refs[0]) as view:
                await task.put_async(view.memoryview()[::-1])
            return b""
        x = int.from_bytes(data[1:9], "little")
        if op in (OP_NOOP, OP_SMALL):
            return tasks.noop(x).to_bytes(8, "little")
        if op == OP_BUSY:
            return tasks.busy(x).to_bytes(8, "little")
        if op == OP_PROBE:
            return bytes((tasks.probe(task.shared_data(), x),))
        raise ValueError(f"unknown operation {op!r}")


def _task(op: int, x: int, pad: int = 0) -> bytes:
    return bytes((op,)) + x.to_bytes(8, "little") + b"\0" * pad


def _int(x: int) -> bytes:
    return x.to_bytes(8, "little")


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (each socket is held until all are bound)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


class SuiteGrid(Grid):
    """:class:`Grid` with a central cache and a node agent, and :class:`BenchWorker` workers."""

    def __init__(self, workers: int, log_dir: Path) -> None:
        super().__init__(workers, None, log_dir)
        # Three ports picked together, so no two of them can be the same one.
        self.port, cache_port, agent_port = _free_ports(3)
        self.address = f"127.0.0.1:{self.port}"
        self.cache_address = f"127.0.0.1:{cache_port}"
        self.agent_address = f"127.0.0.1:{agent_port}"
        self.payload_socket = str(log_dir / "payload.sock")

    def _server_args(self, command: str, address: str) -> list[str]:
        port = address.rsplit(":", 1)[1]
        return [
            *(command, "--host", "127.0.0.1", "--port", port, "--metrics-port", "0"),
            *("--api-key", self.api_key, "--log-level", LOG_LEVEL),
        ]

    def start(self) -> None:
        """Central cache and queue manager at once, then the node agent, then the workers."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        self._spawn("central-cache", self._server_args("central-cache", self.cache_address))
        qm = ["queue-manager", "--host", "127.0.0.1", "--port", str(self.port)]
        qm += ["--metrics-port", "0", "--api-key", self.api_key, "--log-level", LOG_LEVEL]
        self._spawn("queue-manager", qm)
        with grpc.insecure_channel(self.cache_address) as channel:
            self._wait_healthy(channel, deadline)
        agent = self._server_args("node-agent", self.agent_address)
        agent += ["--central-cache-addr", self.cache_address, "--queue-manager", self.address]
        agent += ["--node", PAYLOAD_NODE, "--ram-bytes", PAYLOAD_RAM]
        agent += ["--payload-socket", self.payload_socket]
        agent += ["--advertise-address", self.agent_address]
        self._spawn("node-agent", agent)
        self._env["ALPCRUNCH_WORKER_CENTRAL_CACHE"] = self.cache_address
        self._env["ALPCRUNCH_WORKER_NODE_AGENT"] = self.agent_address
        self._env["ALPCRUNCH_WORKER_NODE"] = PAYLOAD_NODE
        self._env["ALPCRUNCH_WORKER_PAYLOAD_SOCKET"] = self.payload_socket
        with grpc.insecure_channel(self.address) as channel:
            self._wait_healthy(channel, deadline)
            worker = ["worker", WORKER_SPEC, "--queue-manager", self.address]
            worker += ["--api-key", self.api_key, "--log-level", LOG_LEVEL]
            for i in range(self.workers):
                self._spawn(f"worker-{i}", worker)
            with grpc.insecure_channel(self.agent_address) as agent_channel:
                self._wait_healthy(agent_channel, deadline)
            self._wait_workers(channel, deadline)


@contextlib.contextmanager
def suite_grid(workers: int) -> Iterator[SuiteGrid]:
    """A started :class:`SuiteGrid` for the ``with`` block, stopped on every way out."""
    with tempfile.TemporaryDirectory(prefix="alpcrun-suite-") as log_dir:
        grid = SuiteGrid(workers, Path(log_dir))
        try:
            grid.start()
            yield grid
        except BaseException:
            for name, _ in grid.procs:
                tail = grid.log_tail(name)
                if tail:
                    common.log(f"--- last lines of {name} ---\n{tail}")
            raise
        finally:
            grid.stop()


# -- workloads -------------------------------------------------------------------------------


class Bench:
    """The client side: one client per batch size, a session per workload and variant."""

    def __init__(self, grid: SuiteGrid, runner: asyncio.Runner) -> None:
        self.grid = grid
        self.runner = runner
        self.clients: list[AsyncClient] = []
        self.sessions: list[AsyncSession] = []

    def run(self, coro: Awaitable[T]) -> T:
        """Run a coroutine on the driver's event loop; a stuck one fails after a while."""

        async def wrap() -> T:
            return await asyncio.wait_for(coro, RUN_TIMEOUT_S)

        return self.runner.run(wrap())

    def session(self, name: str, batch_tasks: int = CLIENT_BATCH_TASKS) -> AsyncSession:
        """A new session on a client with ``max_batch_tasks`` = ``batch_tasks``."""
        settings = ClientSettings(
            max_batch_tasks=batch_tasks,
            linger=0.0,
            central_cache=self.grid.cache_address,
            node=PAYLOAD_NODE,
            payload_socket=self.grid.payload_socket,
        )
        client = AsyncClient(self.grid.address, api_key=self.grid.api_key, settings=settings)
        self.clients.append(client)
        session = self.run(client.create_session(app_id=f"bench-{name}"))
        self.sessions.append(session)
        return session

    def close(self) -> None:
        """Close every session and client (errors ignored: the grid is stopped next)."""
        for session in self.sessions:
            with contextlib.suppress(Exception):
                self.run(asyncio.wait_for(session.close(), 10))
        for client in self.clients:
            with contextlib.suppress(Exception):
                self.run(asyncio.wait_for(client.close(), 10))


async def map_run(
    session: AsyncSession, payloads: Any, n: int, check: Callable[[int, bytes], bool]
) -> Measurement:
    """``session.map`` over ``payloads`` (n of them); each result checked exactly once."""
    seen = bytearray(n)
    good = 0
    start = time.perf_counter()
    async for result in session.map(payloads):
        i = result.index
        if result.ok and not seen[i] and check(i, result.payload):
            good += 1
        seen[i] = 1
    seconds = time.perf_counter() - start
    return Measurement(tasks=n, seconds=seconds, failures=n - good)


async def per_call_run(
    session: AsyncSession, payloads: list[bytes], expected: list[bytes]
) -> Measurement:
    """One ``session.submit`` per task, then every handle awaited."""
    n = len(payloads)
    start = time.perf_counter()
    handles = [await session.submit(p) for p in payloads]
    submitted = time.perf_counter() - start
    good = 0
    for i, handle in enumerate(handles):
        with contextlib.suppress(Exception):
            if await handle == expected[i]:
                good += 1
    seconds = time.perf_counter() - start
    return Measurement(tasks=n, seconds=seconds, failures=n - good, submit_seconds=submitted)


async def closed_loop(session: AsyncSession, n: int) -> Measurement:
    """W2: one task in flight at a time."""
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()
    for i in range(n):
        payload, want = _task(OP_NOOP, i), _int(i)
        t0 = time.perf_counter()
        try:
            out = await (await session.submit(payload))
        except Exception:
            out = b""
        latencies.append(time.perf_counter() - t0)
        failures += out != want
    return Measurement(n, time.perf_counter() - start, failures, latencies)


async def window_run(session: AsyncSession, seconds: float) -> Measurement:
    """W3: :data:`WINDOW` closed loops at once for ``seconds``."""
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()
    end = start + seconds

    async def slot(k: int) -> None:
        nonlocal failures
        i = k
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            try:
                out = await (await session.submit(_task(OP_NOOP, i)))
            except Exception:
                out = b""
            latencies.append(time.perf_counter() - t0)
            failures += out != _int(i)
            i += WINDOW

    await asyncio.gather(*(slot(k) for k in range(WINDOW)))
    return Measurement(len(latencies), time.perf_counter() - start, failures, latencies)


def run_workloads(config: Config, bench: Bench) -> None:
    """Every workload the orchestrator asked for, in order."""
    if common.wants(config, "W1"):
        w1(config, bench)
    if common.wants(config, "W2"):
        session = bench.session("w2")
        common.repeat(config, "W2", "closed_loop", lambda n: bench.run(closed_loop(session, n)))
    if common.wants(config, "W3"):
        session = bench.session("w3")
        common.repeat_window(config, "window", lambda s: bench.run(window_run(session, s)))
    if common.wants(config, "W4"):
        # Compute-bound tasks get batches of 0.1 s of work so both workers share the load evenly
        # to the end (the 1,000-task default suits sub-millisecond tasks): docs/client.md.
        session = bench.session("w4", batch_tasks=W4_BATCH_TASKS)

        def w4(n: int) -> Measurement:
            payloads = [_task(OP_BUSY, i) for i in range(n)]
            m = bench.run(map_run(session, payloads, n, lambda i, out: out == _int(i)))
            m.extra["efficiency"] = m.tasks / m.seconds / (config.cores / common.BUSY_SECONDS)
            return m

        common.repeat(config, "W4", "map", w4)
    if common.wants(config, "W5"):
        w5(config, bench)
    if common.wants(config, "W5b"):
        w5b(config, bench)


def w1(config: Config, bench: Bench) -> None:
    """W1: natural batching (map), one call per task, and 1 KiB inline payloads."""
    batch = bench.session("w1-batch")

    def run_batch(n: int) -> Measurement:
        payloads = [_task(OP_NOOP, i) for i in range(n)]
        expected = [_int(i) for i in range(n)]
        return bench.run(map_run(batch, payloads, n, lambda i, out: out == expected[i]))

    common.repeat(config, "W1", "batch", run_batch)
    per_call = bench.session("w1-per-call")

    def run_per_call(n: int) -> Measurement:
        payloads = [_task(OP_NOOP, i) for i in range(n)]
        return bench.run(per_call_run(per_call, payloads, [_int(i) for i in range(n)]))

    common.repeat(config, "W1", "per_call", run_per_call)
    small = bench.session("w1-inline-1k")

    def run_small(n: int) -> Measurement:
        payloads = [_task(OP_SMALL, i, SMALL - 9) for i in range(n)]
        expected = [_int(i) for i in range(n)]
        return bench.run(map_run(small, payloads, n, lambda i, out: out == expected[i]))

    common.repeat(config, "W1", "inline_1k", run_small)


def w5(config: Config, bench: Bench) -> None:
    """W5: 1 MiB in, the same reversed out, through the queue manager inline."""
    session = bench.session("w5", BIG_BATCH_TASKS)

    def run(n: int) -> Measurement:
        payloads = (bytes((OP_ECHO,)) + tasks.payload(i) for i in range(n))
        return bench.run(
            map_run(session, payloads, n, lambda i, out: out == tasks.payload(i)[::-1])
        )

    common.repeat(config, "W5", "inline", run, warmup=min(config.warmup, config.min_sizes["W5"]))
    stored = bench.session("w5-payload-store")

    def run_stored(n: int) -> Measurement:
        return bench.run(payload_store_run(stored, n))

    warmup = min(config.warmup, config.min_sizes["W5"])
    common.repeat(config, "W5", "payload_store", run_stored, warmup=warmup)


async def payload_store_run(session: AsyncSession, n: int) -> Measurement:
    """W5 through the payload store: put n inputs, map tasks that put the input reversed as
    their output, read every output back and check it; timed from the first put to the last
    check (the payloads are deleted afterwards, untimed)."""
    inputs = [tasks.payload(i) for i in range(n)]
    start = time.perf_counter()
    refs = await session.put_many(inputs)
    good = 0
    outputs = []
    async for result in session.map([TaskInput(bytes((OP_PAYLOAD,)), (r,)) for r in refs]):
        if not result.ok or len(result.refs) != 1:
            continue
        outputs.append(result.refs[0])
        async with session.open(result.refs[0]) as view:
            good += view.memoryview() == inputs[result.index][::-1]
    seconds = time.perf_counter() - start
    await session.delete([*refs, *outputs])
    return Measurement(tasks=n, seconds=seconds, failures=n - good)


def w5b(config: Config, bench: Bench) -> None:
    """W5b: one 1 MiB shared object (central cache + node agent); tasks read one byte of it."""
    session = bench.session("w5b")
    shared = random.Random(5).randbytes(BIG)
    bench.run(session.set_shared_data(shared))

    def run(n: int) -> Measurement:
        payloads = [_task(OP_PROBE, i) for i in range(n)]
        expected = [bytes((tasks.probe(shared, i),)) for i in range(n)]
        return bench.run(map_run(session, payloads, n, lambda i, out: out == expected[i]))

    common.repeat(config, "W5b", "shared", run)


def main() -> int:
    """Start the grid, run the workloads, stop everything."""
    config = common.parse_config()
    peer.interrupt_on_sigterm()
    common.meta(
        SYSTEM,
        {"alpcrun": alpcrun.__version__, "grpcio": grpc.__version__},
        workers=config.cores,
        worker_concurrency="worker default (2 batches)",
        client_batch_tasks=CLIENT_BATCH_TASKS,
        w5_batch_tasks=BIG_BATCH_TASKS,
        durability="in-memory queue manager (no journal); at-least-once redelivery",
        serializer="raw bytes",
        shared_data="central cache + node agent, memoised per worker process",
    )
    with suite_grid(config.cores) as grid, asyncio.Runner() as runner:
        common.log(f"grid up: queue manager {grid.address}, {config.cores} workers")
        bench = Bench(grid, runner)
        try:
            run_workloads(config, bench)
        finally:
            bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
