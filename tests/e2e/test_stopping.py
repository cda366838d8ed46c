"""End to end: graceful and forced stops of real worker and queue manager processes.

- SIGTERM or SIGINT drains a worker: DRAINING, the batches it holds finish and reach the
  client, exit 0.
- A second signal ends a worker at once, even while its handler blocks the event loop.
- Workers started with the exit-with-parent environment never outlive a SIGKILLed parent.
- SIGTERM to the queue manager refuses new sessions, lets in-flight work finish, exits 0.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from alpcrun import proto

from .conftest import Grid, list_workers, wait_healthy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
SLOW = "tests.e2e.workers:SlowWorker"


def alive(pid: int) -> bool:
    """True while pid runs (a zombie counts as gone), read from /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children(pid: int) -> list[int]:
    """Live child processes of pid, read from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def catches(pid: int, sig: signal.Signals) -> bool:
    """True while pid has a handler installed for sig (SigCgt in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    raise AssertionError("no SigCgt line")


def wait_for(predicate: Callable[[], bool], within: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {within}s")
        time.sleep(0.05)


async def wait_for_async(predicate: Callable[[], bool], within: float = 15, what: str = "") -> None:
    await asyncio.to_thread(wait_for, predicate, within, what or "condition")


class RawClient:
    """One session and its ClientStream, on raw stubs (nothing between the test and the wire)."""

    def __init__(self, channel: grpc.aio.Channel, api_key: str) -> None:
        self.stub = proto.QueueStub(channel)
        self.metadata = (("api_key", api_key),)
        self.requests: asyncio.Queue[proto.ClientStreamRequest] = asyncio.Queue()
        self.call: grpc.aio.StreamStreamCall | None = None

    async def open(self) -> None:
        session = await self.stub.CreateSession(
            proto.CreateSessionRequest(attributes=proto.SessionAttributes(app_id="stopping")),
            metadata=self.metadata,
        )

        async def requests() -> AsyncIterator[proto.ClientStreamRequest]:
            while True:
                yield await self.requests.get()

        self.call = self.stub.ClientStream(
            requests(), metadata=(*self.metadata, ("sessionid", session.id))
        )

    def submit(self, batch_id: str, *payloads: bytes) -> None:
        batch = proto.Batch(id=batch_id)
        for i, payload in enumerate(payloads):
            batch.tasks.add(id=f"{batch_id}-{i}", payload=payload)
        self.requests.put_nowait(proto.ClientStreamRequest(batch=batch))

    async def results(self, n: int, within: float = 15) -> dict[str, proto.Task]:
        got: dict[str, proto.Task] = {}

        async def collect() -> None:
            assert self.call is not None
            while len(got) < n:
                response = await self.call.read()
                assert isinstance(response, proto.ClientStreamResponse), response
                got.update((t.id, t) for t in response.results.tasks)

        await asyncio.wait_for(collect(), within)
        return got


@asynccontextmanager
async def raw_client(grid: Grid) -> AsyncIterator[RawClient]:
    async with grpc.aio.insecure_channel(grid.address) as channel:
        client = RawClient(channel, grid.api_key)
        await client.open()
        try:
            yield client
        finally:
            if client.call is not None:
                client.call.cancel()


def worker_states(grid: Grid) -> set[int]:
    return {w.state for w in list_workers(grid.address, grid.api_key)}


async def refused_session(client: RawClient) -> grpc.aio.AioRpcError:
    """Create sessions until the queue manager refuses one (it handles a signal meanwhile)."""
    request = proto.CreateSessionRequest(attributes=proto.SessionAttributes(app_id="new"))
    for _ in range(250):
        try:
            await client.stub.CreateSession(request, metadata=client.metadata)
        except grpc.aio.AioRpcError as exc:
            return exc
        await asyncio.sleep(0.02)
    raise AssertionError("the queue manager kept accepting new sessions")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_drains_worker_holding_batches_and_exits_zero(grid: Grid, sig):
    """A signalled worker reports DRAINING, finishes the batches it holds, exits 0."""
    grid.start_queue_manager()
    worker = grid.start_worker(SLOW)
    await asyncio.to_thread(grid.wait_workers, 1)
    async with raw_client(grid) as client:
        client.submit("b0", b"sleep:1.5")
        client.submit("b1", b"sleep:1.5")
        await wait_for_async(
            lambda: all(f"started b{i}-0" in grid.output(worker) for i in (0, 1)),
            what="both batches started",
        )
        worker.send_signal(sig)
        draining = proto.WorkerState.WORKER_STATE_DRAINING
        await wait_for_async(lambda: worker_states(grid) == {draining}, what="DRAINING")
        assert worker.poll() is None  # still finishing its batches
        got = await client.results(2)
    assert {k: (t.payload, t.HasField("error")) for k, t in got.items()} == {
        "b0-0": (b"sleep:1.5", False),
        "b1-0": (b"sleep:1.5", False),
    }
    assert await asyncio.to_thread(worker.wait, 15) == 0
    output = grid.output(worker)
    assert f"{sig.name}: draining" in output
    assert "Traceback" not in output
    await wait_for_async(lambda: not worker_states(grid), what="worker deregistered")


def test_second_signal_ends_worker_at_once_even_when_handle_blocks_the_loop(grid: Grid):
    """With the loop blocked by a handler, a first SIGTERM is noted and a second one kills."""
    grid.start_queue_manager()
    worker = grid.start_worker(SLOW)
    grid.wait_workers(1)

    async def submit_block() -> None:
        async with raw_client(grid) as client:
            client.submit("stuck", b"block")
            await wait_for_async(lambda: "started stuck-0" in grid.output(worker))

    asyncio.run(submit_block())
    assert catches(worker.pid, signal.SIGTERM)
    worker.send_signal(signal.SIGTERM)
    # The handler ran although the loop is blocked: it gave SIGTERM its default action back.
    wait_for(lambda: not catches(worker.pid, signal.SIGTERM), within=5, what="first signal seen")
    assert worker.poll() is None
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(5) == -signal.SIGTERM
    assert time.monotonic() - started < 2


def test_sigkilled_local_grid_leaves_no_worker_behind(grid: Grid):
    """`alpcrun local` killed with SIGKILL: its worker processes exit on their own."""
    cmd = [sys.executable, "-m", "alpcrun.cli.main", "local", "--workers", "2"]
    proc = grid._spawn([*cmd, "--port", str(grid.port), "--api-key", grid.api_key])
    wait_healthy(grid.address)
    grid.wait_workers(2)
    workers = children(proc.pid)
    assert len(workers) == 2
    proc.kill()
    proc.wait(5)
    wait_for(lambda: not any(alive(pid) for pid in workers), within=10, what="workers gone")


LAUNCHER = """
import os, subprocess, sys, time
env = dict(os.environ, ALPCRUNCH_PARENT_PID=str(os.getpid()))
cmd = [sys.executable, "-m", "workers_sdk", *sys.argv[1:]]
procs = [subprocess.Popen(cmd, env=env) for _ in range(2)]
print("PIDS", *(p.pid for p in procs), flush=True)
time.sleep(600)
"""


def test_workers_exit_when_any_launcher_setting_parent_pid_is_killed(grid: Grid):
    """Workers started with ALPCRUNCH_PARENT_PID drain and exit when that parent is SIGKILLed."""
    grid.start_queue_manager()
    launcher = grid._spawn([sys.executable, "-c", LAUNCHER, SLOW, "--queue-manager", grid.address])
    grid.wait_workers(2)
    match = re.search(r"^PIDS (\d+) (\d+)$", grid.output(launcher), re.MULTILINE)
    assert match is not None, grid.output(launcher)
    workers = [int(pid) for pid in match.groups()]
    assert all(alive(pid) for pid in workers)
    launcher.kill()
    launcher.wait(5)
    wait_for(lambda: not any(alive(pid) for pid in workers), within=10, what="workers gone")
    wait_for(lambda: not worker_states(grid), within=10, what="workers deregistered")
    assert "SIGTERM: draining" in grid.output(launcher)


async def test_sigterm_to_queue_manager_refuses_new_work_and_finishes_inflight(grid: Grid):
    """SIGTERM: new sessions are refused, the running batch's result arrives, exit 0."""
    qm = grid.start_queue_manager()
    worker = grid.start_worker(SLOW)
    await asyncio.to_thread(grid.wait_workers, 1)
    async with raw_client(grid) as client:
        client.submit("late", b"sleep:2")
        await wait_for_async(lambda: "started late-0" in grid.output(worker))
        qm.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        refused = await refused_session(client)
        assert refused.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in (refused.details() or "")
        got = await client.results(1)
    assert got["late-0"].payload == b"sleep:2"
    assert await asyncio.to_thread(qm.wait, 15) == 0
    assert time.monotonic() - signalled < 8  # well within the default 10s grace
    assert "Traceback" not in grid.output(qm)


def test_ctrl_c_to_local_grid_group_drains_workers_once(grid: Grid):
    """Ctrl-C (SIGINT to the terminal's process group) reaches only `alpcrun local`, whose
    single SIGTERM then drains each worker: no worker sees the SIGINT, none is killed."""
    cmd = [sys.executable, "-m", "alpcrun.cli.main", "local", "--workers", "2"]
    log = grid.logdir / "local-group.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*cmd, "--port", str(grid.port), "--api-key", grid.api_key],
            env=grid.env(),
            stdout=sink,
            stderr=sink,
            start_new_session=True,  # a process group of its own, as a shell job has
        )
    try:
        wait_healthy(grid.address)
        grid.wait_workers(2)
        workers = children(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_for(lambda: not any(alive(pid) for pid in workers), within=10, what="workers gone")
    output = log.read_text(errors="replace")
    assert "SIGINT: draining" not in output
    assert output.count("SIGTERM: draining") == 2
    assert output.count("worker stopped") == 2
