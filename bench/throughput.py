"""Throughput and latency of a real local grid: queue manager + N workers + one client.

Every component runs as a separate OS process, started through the ``alpcrun`` CLI exactly as
an operator would start it::

    python bench/throughput.py                 # 2 workers, 100,000 tasks, batch sizes 1,100,1000
    python bench/throughput.py --quick         # a few seconds
    python bench/throughput.py --json out.json

See bench/README.md for what is measured and the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# Run from a checkout: the repository's own packages win over whatever else is installed.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import grpc  # noqa: E402 - after the sys.path fix above
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from alpcrun.client import AsyncClient  # noqa: E402
from alpcrun.config import ClientSettings  # noqa: E402
from alpcrun.lifeline import PARENT_PID_ENV  # noqa: E402
from alpcrun.proto import AdminStub, ListWorkersRequest  # noqa: E402
from workers_sdk import TaskContext, Worker  # noqa: E402

PAYLOAD_BYTES = 8
LATENCY_WARMUP = 200
BATCH1_MAX_TASKS = 5000
STOP_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 60.0
TARGET_TASKS_PER_S = 50_000
TARGET_P50_MS = 1.5


class NoopWorker(Worker):
    """Returns its payload unchanged: all that is measured is the grid's own overhead."""

    async def handle(self, task: TaskContext) -> bytes:
        return task.payload


# -- the grid's processes ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Grid:
    """The queue manager and worker processes; :meth:`stop` always ends every one of them.

    Children run in their own session, so a Ctrl-C in the terminal reaches only this script,
    which then stops them in order (SIGTERM, SIGKILL after a timeout). On Linux they also get
    SIGTERM if this script dies without cleaning up.
    """

    def __init__(
        self, workers: int, concurrency: int | None, log_dir: Path, *, journal: bool = False
    ) -> None:
        self.workers = workers
        self.concurrency = concurrency
        self.journal = journal
        self.log_dir = log_dir
        self.api_key = secrets.token_hex(16)  # never starts with "-" (read as a flag)
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._env = dict(os.environ)
        self._env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        self._env.pop("ALPCRUNCH_CONFIG", None)  # flags only: a stray config must not skew it
        # Each child arms its own parent-death signal after exec: a preexec_fn would run
        # Python between fork and exec in a process whose gRPC threads are live (a worker
        # spawned that way while a channel was open aborted in grpc's epoll poller).
        self._env[PARENT_PID_ENV] = str(os.getpid())

    def _spawn(self, name: str, args: Sequence[str]) -> None:
        cmd = [sys.executable, "-m", "alpcrun.cli.main", *args]
        with open(self.log_dir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((name, proc))

    def start(self) -> None:
        """Start the queue manager, wait for its health check, start the workers, wait for them."""
        qm_args = ["queue-manager", "--host", "127.0.0.1", "--port", str(self.port)]
        qm_args += ["--metrics-port", "0", "--api-key", self.api_key, "--log-level", "warning"]
        if self.journal:
            qm_args += ["--journal", str(self.log_dir / "journal.db")]
        self._spawn("queue-manager", qm_args)
        deadline = time.monotonic() + READY_TIMEOUT_S
        with grpc.insecure_channel(self.address) as channel:
            self._wait_healthy(channel, deadline)
            worker_args = ["worker", "bench.throughput:NoopWorker", "--queue-manager", self.address]
            worker_args += ["--api-key", self.api_key, "--log-level", "warning"]
            if self.concurrency is not None:
                worker_args += ["--concurrency", str(self.concurrency)]
            for i in range(self.workers):
                self._spawn(f"worker-{i}", worker_args)
            self._wait_workers(channel, deadline)

    def _check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {proc.returncode}\n{self.log_tail(name)}"
                )

    def _wait_healthy(self, channel: grpc.Channel, deadline: float) -> None:
        stub = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        while True:
            self._check_alive()
            with contextlib.suppress(grpc.RpcError):
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0).status == serving:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"queue manager not healthy within {READY_TIMEOUT_S:.0f}s")
            time.sleep(0.05)

    def _wait_workers(self, channel: grpc.Channel, deadline: float) -> None:
        stub = AdminStub(channel)
        metadata = (("api_key", self.api_key),)
        while True:
            self._check_alive()
            reply = stub.ListWorkers(ListWorkersRequest(), metadata=metadata, timeout=5.0)
            if len(reply.workers) >= self.workers:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(reply.workers)}/{self.workers} workers registered "
                    f"within {READY_TIMEOUT_S:.0f}s"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM every process (workers first), SIGKILL whatever is left after a timeout."""
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for _, proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        self.procs = []

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The last lines a process wrote."""
        path = self.log_dir / f"{name}.log"
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def running_grid(workers: int, concurrency: int | None, *, journal: bool = False) -> Iterator[Grid]:
    """Start a grid for the ``with`` block; its processes are ended on every way out."""
    with tempfile.TemporaryDirectory(prefix="alpcrun-bench-") as log_dir:
        grid = Grid(workers, concurrency, Path(log_dir), journal=journal)
        try:
            grid.start()
            yield grid
        except Exception:
            for name, _ in grid.procs:
                tail = grid.log_tail(name)
                if tail:
                    print(f"--- last lines of {name} ---\n{tail}", file=sys.stderr)
            raise
        finally:
            grid.stop()


# -- measurements --------------------------------------------------------------------------


@dataclass(frozen=True)
class ThroughputResult:
    batch_size: int
    tasks: int
    seconds: float
    tasks_per_second: float


@dataclass(frozen=True)
class LatencyResult:
    samples: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


def _client(grid: Grid, batch_size: int) -> AsyncClient:
    settings = ClientSettings(max_batch_tasks=batch_size, linger=0.0)
    return AsyncClient(grid.address, api_key=grid.api_key, settings=settings)


async def measure_throughput(grid: Grid, batch_size: int, tasks: int) -> ThroughputResult:
    """Map ``tasks`` no-op tasks in one session; check each result arrived once, unchanged."""
    payloads = [i.to_bytes(PAYLOAD_BYTES, "little") for i in range(tasks)]
    seen = bytearray(tasks)
    failed = wrong = 0
    async with (
        _client(grid, batch_size) as client,
        client.session(app_id=f"bench-b{batch_size}") as session,
    ):
        start = time.perf_counter()
        async for result in session.map(payloads):
            if not result.ok:
                failed += 1
            elif result.payload != payloads[result.index]:
                wrong += 1
            seen[result.index] = min(seen[result.index] + 1, 255)
        seconds = time.perf_counter() - start
    missing = seen.count(0)
    duplicated = tasks - missing - seen.count(1)
    if failed or wrong or missing or duplicated:
        raise AssertionError(
            f"batch size {batch_size}: {failed} failed, {wrong} wrong, {missing} missing, "
            f"{duplicated} duplicated results out of {tasks}"
        )
    return ThroughputResult(batch_size, tasks, seconds, tasks / seconds)


async def measure_latency(grid: Grid, samples: int) -> LatencyResult:
    """Closed loop: submit one task, await its result, repeat; after a warm-up."""
    times: list[float] = []
    async with _client(grid, 1000) as client, client.session(app_id="bench-latency") as session:
        for i in range(LATENCY_WARMUP + samples):
            start = time.perf_counter()
            out = await (await session.submit(b"x"))
            elapsed = time.perf_counter() - start
            if out != b"x":
                raise AssertionError(f"latency round trip returned {out!r}")
            if i >= LATENCY_WARMUP:
                times.append(elapsed * 1000.0)
    q = statistics.quantiles(times, n=100, method="inclusive")
    return LatencyResult(
        samples=samples,
        p50_ms=statistics.median(times),
        p90_ms=q[89],
        p99_ms=q[98],
        mean_ms=statistics.fmean(times),
        max_ms=max(times),
    )


async def _warm_up(grid: Grid) -> None:
    """One small map so connections, thread pools and caches are hot before timing."""
    await measure_throughput(grid, 100, 1000)


async def run_benchmark(
    grid: Grid, batch_sizes: Sequence[int], tasks: int, latency_samples: int
) -> tuple[list[ThroughputResult], LatencyResult | None]:
    """Every throughput run, then the latency run."""
    await _warm_up(grid)
    throughput = []
    for batch_size in batch_sizes:
        n = min(tasks, BATCH1_MAX_TASKS) if batch_size == 1 else tasks
        throughput.append(await measure_throughput(grid, batch_size, n))
        print(
            f"  batch size {batch_size}: {throughput[-1].tasks_per_second:,.0f} tasks/s", flush=True
        )
    latency = await measure_latency(grid, latency_samples) if latency_samples > 0 else None
    return throughput, latency


# -- reporting -----------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    """What the figures depend on."""
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "grpcio": grpc.__version__,
    }


def format_table(
    workers: int, throughput: Sequence[ThroughputResult], latency: LatencyResult | None
) -> str:
    """The results as a small text table, with the targets checked."""
    lines = [
        f"{'batch size':>10}  {'tasks':>9}  {'seconds':>8}  {'tasks/s':>10}",
        *(
            f"{r.batch_size:>10,}  {r.tasks:>9,}  {r.seconds:>8.3f}  {r.tasks_per_second:>10,.0f}"
            for r in throughput
        ),
    ]
    if latency is not None:
        lines += [
            "",
            f"single-task round trip ({latency.samples:,} samples, {workers} workers):",
            f"  p50 {latency.p50_ms:.3f} ms   p90 {latency.p90_ms:.3f} ms   "
            f"p99 {latency.p99_ms:.3f} ms   mean {latency.mean_ms:.3f} ms   "
            f"max {latency.max_ms:.3f} ms",
        ]
    lines.append("")
    big = [r for r in throughput if r.batch_size == 1000]
    if big:
        ok = big[0].tasks_per_second >= TARGET_TASKS_PER_S
        lines.append(
            f"target >= {TARGET_TASKS_PER_S:,} tasks/s at batch size 1000: "
            f"{'met' if ok else 'NOT met'} ({big[0].tasks_per_second:,.0f})"
        )
    if latency is not None:
        ok = latency.p50_ms <= TARGET_P50_MS
        lines.append(
            f"target p50 <= {TARGET_P50_MS} ms: {'met' if ok else 'NOT met'} "
            f"({latency.p50_ms:.3f} ms)"
        )
    return "\n".join(lines)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="batches per worker at once (worker default)"
    )
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks per throughput run")
    parser.add_argument(
        "--batch-sizes", default="1,100,1000", help="comma-separated client batch sizes"
    )
    parser.add_argument(
        "--latency-samples", type=int, default=2000, help="timed round trips (0 skips latency)"
    )
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the results here")
    parser.add_argument(
        "--journal",
        action="store_true",
        help="run the queue manager with its SQLite journal (in the run's temporary directory)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2,000 tasks, 200 latency samples, batch sizes 100,1000",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.latency_samples, args.batch_sizes = 2000, 200, "100,1000"
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--batch-sizes takes comma-separated integers, got {args.batch_sizes!r}")
    if not args.batch_sizes or min(args.batch_sizes) < 1 or max(args.batch_sizes) > 100_000:
        parser.error("batch sizes must lie in 1..100000")
    if args.workers < 1 or args.tasks < 1 or args.latency_samples < 0:
        parser.error("--workers and --tasks must be at least 1, --latency-samples at least 0")
    return args


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    # SIGTERM takes the same clean-up path as Ctrl-C: the grid's finally block.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    facts = machine_facts()
    print(
        f"alpcrun bench: {args.workers} workers, journal {'on' if args.journal else 'off'}, "
        f"{facts['cpu_count']} CPUs, "
        f"Python {facts['python']}, {facts['platform']}",
        flush=True,
    )
    try:
        with running_grid(args.workers, args.concurrency, journal=args.journal) as grid:
            throughput, latency = asyncio.run(
                run_benchmark(grid, args.batch_sizes, args.tasks, args.latency_samples)
            )
    except KeyboardInterrupt:
        print("\ninterrupted; every process started was stopped", file=sys.stderr)
        return 130
    print()
    print(format_table(args.workers, throughput, latency))
    if args.json is not None:
        report = {
            "benchmark": "throughput",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": facts,
            "config": {
                "workers": args.workers,
                "concurrency": args.concurrency,
                "journal": args.journal,
                "tasks": args.tasks,
                "batch_sizes": args.batch_sizes,
                "latency_samples": args.latency_samples,
                "payload_bytes": PAYLOAD_BYTES,
            },
            "throughput": [asdict(r) for r in throughput],
            "latency": asdict(latency) if latency is not None else None,
            "targets": {"tasks_per_second_b1000": TARGET_TASKS_PER_S, "p50_ms": TARGET_P50_MS},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
