"""A flood against a real queue manager process: memory stays under its bounds, nothing is lost.

Three clients write task batches as fast as the queue manager reads them and a fourth never
reads its results, for a few seconds, against ``alpcrun queue-manager`` started with small
byte bounds and two ``alpcrun worker`` processes. The queue manager's resident memory
(``VmRSS``) is sampled all along and must stay within its configured bounds (charged bytes:
tasks and results held, plus one batch in flight per stream) over what it used before the
flood; then the clients stop, the fourth starts reading, and every task any of them wrote
gets exactly one result.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from pathlib import Path

import grpc
import grpc.aio
import pytest

from alpcrun import proto

from .conftest import Grid

pytestmark = pytest.mark.e2e
MIB = 1 << 20
BOUNDS = {
    "ALPCRUNCH_QM_MAX_PENDING_BYTES": str(64 * MIB),  # each session could hold the total 4x
    "ALPCRUNCH_QM_MAX_RESULT_BYTES": str(4 * MIB),
    "ALPCRUNCH_QM_MAX_TOTAL_BYTES": str(16 * MIB),
}
HELD_BOUND = 16 * MIB
"""Tasks and results the queue manager may hold (max_total_bytes)."""
TASKS, PAYLOAD = 40, 24 * 1024
"""Tasks per batch and payload bytes per task: batches of about 1 MiB."""
FLOODERS, FLOOD_S = 3, 6.0
SLACK = 3 * HELD_BOUND + 48 * MIB
"""Growth allowed over the resting queue manager: its byte bound three times over (Python
objects around the messages, serialized copies on their way to workers and clients, gRPC
buffers, allocator slack), plus room for the first batches every stream reads. Without the
bounds, three flooders push it past this within a second or two."""


def rss(pid: int) -> int:
    """Resident set size of a process in bytes (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RssSampler(threading.Thread):
    """Samples a process's RSS every 20 ms; keeps the peak, notes when it passes ``limit``."""

    def __init__(self, pid: int, limit: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.limit = limit
        self.peak = 0
        self.halt = threading.Event()
        self.exceeded = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.02):
            self.peak = max(self.peak, rss(self.pid))
            if self.peak > self.limit:
                self.exceeded.set()


def batch(prefix: str, n: int) -> proto.Batch:
    b = proto.Batch(id=f"{prefix}-{n}")
    for i in range(TASKS):
        b.tasks.add(id=f"{prefix}-{n}-{i}", payload=bytes([n % 256]) * PAYLOAD)
    return b


class Client:
    """One session's ClientStream, written as fast as the queue manager reads it (no acks)."""

    def __init__(self, stub: proto.QueueStub, md: tuple[tuple[str, str], ...], sid: str) -> None:
        self.sid = sid
        self.written: set[str] = set()
        self.results: collections.Counter[str] = collections.Counter()
        self.stop = asyncio.Event()
        self.reading = asyncio.Event()
        self.call = stub.ClientStream(self._requests(), metadata=(*md, ("sessionid", sid)))
        self.reader = asyncio.create_task(self._read())

    async def _requests(self):  # type: ignore[no-untyped-def]
        n = 0
        while not self.stop.is_set():
            n += 1
            b = batch(self.sid[-6:], n)
            self.written.update(t.id for t in b.tasks)
            yield proto.ClientStreamRequest(batch=b)  # returns once gRPC may send it

    async def _read(self) -> None:
        await self.reading.wait()
        async for response in self.call:
            for task in response.results.tasks:
                self.results[task.id] += 1

    def done(self) -> bool:
        return self.stop.is_set() and set(self.results) >= self.written


async def flood(grid: Grid, qm_pid: int) -> tuple[int, int, list[Client]]:
    md = (("api_key", grid.api_key),)
    async with grpc.aio.insecure_channel(grid.address) as channel:
        stub = proto.QueueStub(channel)
        attrs = proto.SessionAttributes(app_id="flood", max_inflight_batches_per_worker=2)
        sids = [
            (await stub.CreateSession(proto.CreateSessionRequest(attributes=attrs), metadata=md)).id
            for _ in range(FLOODERS + 1)
        ]
        await asyncio.sleep(0.5)
        before = rss(qm_pid)
        sampler = RssSampler(qm_pid, before + SLACK)
        sampler.start()
        channels = [grpc.aio.insecure_channel(grid.address) for _ in sids]  # a client each
        clients = [
            Client(proto.QueueStub(ch), md, sid) for ch, sid in zip(channels, sids, strict=True)
        ]
        for c in clients[:FLOODERS]:
            c.reading.set()  # the last one does not read while the flood lasts
        await asyncio.to_thread(sampler.exceeded.wait, FLOOD_S)
        for c in clients:
            c.stop.set()
        clients[-1].reading.set()
        deadline = time.monotonic() + 45
        while not sampler.exceeded.is_set() and time.monotonic() < deadline:
            if all(c.done() for c in clients):
                break
            await asyncio.sleep(0.1)
        sampler.halt.set()
        sampler.join()
        for c in clients:
            c.call.cancel()
            c.reader.cancel()
        for ch in channels:
            await ch.close()
        if sampler.exceeded.is_set():
            return before, sampler.peak, clients  # failed: no use draining the backlog
        stats = await proto.AdminStub(channel).GetStats(proto.GetStatsRequest(), metadata=md)
        assert stats.submitted_tasks == stats.completed_tasks, stats
        assert stats.failed_tasks == 0, stats
        return before, sampler.peak, clients


def test_a_flood_stays_under_the_bounds_and_every_accepted_task_completes(grid: Grid):
    """Three flooding clients and one that does not read: RSS stays bounded, nothing is lost."""
    grid.env_extra.update(BOUNDS)
    qm = grid.start_queue_manager("--scheduler-interval", "0.1s")
    for _ in range(2):  # slower than the clients write: the queue manager must hold the rest
        grid.start_worker(
            "tests.e2e.workers:ThrottledEchoWorker", "--concurrency", "1", "--threads", "1"
        )
    grid.wait_workers(2)
    before, peak, clients = asyncio.run(flood(grid, qm.pid))
    grown = peak - before
    written = sum(len(c.written) for c in clients)
    print(  # the figure the test is about, for -s runs
        f"\nqueue manager RSS {before / MIB:.0f} MiB at rest, peak {peak / MIB:.0f} MiB "
        f"(+{grown / MIB:.0f} MiB, allowed +{SLACK / MIB:.0f}); "
        f"{written} tasks ({written * PAYLOAD / MIB:.0f} MiB) written by {len(clients)} clients"
    )
    assert grown <= SLACK, f"grew {grown / MIB:.0f} MiB over {before / MIB:.0f} MiB"
    assert written * PAYLOAD > 2 * HELD_BOUND  # the flood wrote more than the bound holds
    for c in clients:
        assert set(c.results) == c.written, f"{len(c.written - set(c.results))} tasks lost"
        assert max(c.results.values()) == 1  # exactly once
    assert qm.poll() is None
