"""Chaos: real processes killed mid-run; no task is lost, duplicated or stuck."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import threading
import time

import grpc
import pytest

from alpcrun import proto
from alpcrun.client import AsyncClient
from alpcrun.errors import TaskFailed

from .conftest import Grid, list_workers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
PACED = "tests.e2e.workers:PacedEchoWorker"


def _stats(g: Grid) -> proto.Stats:
    with grpc.insecure_channel(g.address) as channel:
        return proto.AdminStub(channel).GetStats(
            proto.GetStatsRequest(), metadata=(("api_key", g.api_key),), timeout=5
        )


def _letters(g: Grid, session_id: str) -> list[proto.DeadLetter]:
    with grpc.insecure_channel(g.address) as channel:
        reply = proto.AdminStub(channel).ListDeadLetters(
            proto.ListDeadLettersRequest(session_id=session_id, include_payload=True),
            metadata=(("api_key", g.api_key),),
            timeout=5,
        )
        return list(reply.letters)


class _Killer(threading.Thread):
    """SIGKILLs a random worker process every ``every`` seconds and starts a replacement."""

    def __init__(self, grid: Grid, workers: list, every: float) -> None:
        super().__init__(daemon=True)
        self.grid, self.workers, self.every = grid, workers, every
        self.kills = 0
        self.stop = threading.Event()

    def _registered(self, proc: subprocess.Popen[bytes]) -> bool:
        """Whether the queue manager knows the worker (its pod defaults to the pid)."""
        pods = {w.pod for w in list_workers(self.grid.address, self.grid.api_key)}
        return str(proc.pid) in pods

    def run(self) -> None:
        rng = random.Random(7)
        while not self.stop.wait(self.every):
            victim = rng.choice(self.workers)
            # A replacement killed before it registered would be no lost worker to count.
            while not self._registered(victim):
                if self.stop.wait(0.05):
                    return
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            self.kills += 1
            self.workers[self.workers.index(victim)] = self.grid.start_worker(PACED)


async def test_50k_tasks_exactly_once_while_workers_are_sigkilled_and_restarted(grid: Grid):
    """Workers die by SIGKILL every 0.8 s: every one of 50,000 results arrives exactly once."""
    grid.start_queue_manager("--scheduler-interval", "0.2s")
    workers = [grid.start_worker(PACED) for _ in range(3)]
    grid.wait_workers(3)
    n = 50_000
    seen = bytearray(n)
    killer = _Killer(grid, workers, every=0.8)
    async with AsyncClient(grid.address, api_key=grid.api_key) as client:
        async with client.session(app_id="chaos", max_attempts=50) as session:
            killer.start()
            try:
                payloads = (f"task-{i:06d}".encode() for i in range(n))
                async for r in session.map(payloads):
                    assert r.ok, r.error
                    assert r.payload == f"task-{r.index:06d}".encode()[::-1]
                    seen[r.index] += 1
            finally:
                killer.stop.set()
                killer.join()
    doubled = n - seen.count(0) - seen.count(1)
    assert seen.count(1) == n, f"missing {seen.count(0)}, doubled {doubled}"
    stats = _stats(grid)
    assert killer.kills >= 3
    assert stats.workers_lost >= killer.kills - 1  # the last kill may still be in progress
    assert stats.retried_tasks > 0  # the kills really hit work in flight
    assert stats.dead_letters == 0


async def test_poison_task_is_dead_lettered_after_exactly_max_attempts(grid: Grid):
    """A task that always fails ends in the dead-letter queue after 3 attempts; the rest pass."""
    grid.start_queue_manager()
    grid.start_worker()
    grid.start_worker()
    grid.wait_workers(2)
    payloads = [f"ok-{i}".encode() for i in range(2000)]
    payloads[777] = b"fail:poison"
    async with AsyncClient(grid.address, api_key=grid.api_key) as client:
        async with client.session(app_id="poison", max_attempts=3) as session:
            results = [r async for r in session.map(payloads)]
            letters = _letters(grid, session.id)
    bad = [r for r in results if not r.ok]
    assert [r.index for r in bad] == [777]
    assert sum(1 for r in results if r.ok) == 1999
    assert len(results) == 2000
    (letter,) = letters
    assert letter.task.attempt == 3
    assert letter.task.error.reason == proto.ErrorReason.ERROR_REASON_ERROR
    assert letter.task.error.type == "ValueError"
    assert letter.task.payload == b"fail:poison"
    assert _stats(grid).retried_tasks == 2  # attempts 2 and 3 of the poison task, nothing else


async def test_hung_worker_is_declared_lost_within_worker_timeout(grid: Grid):
    """A worker whose loop is blocked stops heartbeating: lost within worker_timeout."""
    grid.env_extra["ALPCRUNCH_QM_HEARTBEAT_INTERVAL"] = "0.3s"
    grid.start_queue_manager("--worker-timeout", "2s", "--scheduler-interval", "0.2s")
    hung = grid.start_worker("tests.e2e.workers:SlowWorker")
    grid.wait_workers(1)
    (info,) = list_workers(grid.address, grid.api_key)
    try:
        async with AsyncClient(grid.address, api_key=grid.api_key) as client:
            async with client.session(app_id="hung", max_attempts=1) as session:
                handle = await session.submit(b"block")
                await session.flush()
                deadline = time.monotonic() + 20
                while "started" not in grid.output(hung) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a log file
                    await asyncio.sleep(0.05)
                started = time.monotonic()
                while any(w.id == info.id for w in list_workers(grid.address, grid.api_key)):
                    assert time.monotonic() - started < 2 + 0.2 + 2.0, "not declared lost"
                    await asyncio.sleep(0.05)
                detected = time.monotonic() - started
                with pytest.raises(TaskFailed) as failed:
                    await asyncio.wait_for(handle, 10)
                letters = _letters(grid, session.id)
    finally:
        hung.send_signal(signal.SIGKILL)
        hung.wait()
    assert detected >= 1.0  # not before its heartbeats really stopped
    assert failed.value.reason == "worker_lost" or "lost" in str(failed.value)
    (letter,) = letters
    assert letter.task.error.reason == proto.ErrorReason.ERROR_REASON_WORKER_LOST


async def _run_through_restarts(grid: Grid, journal: str, sig: signal.Signals, n: int) -> None:
    """Map ``n`` tasks while the queue manager is stopped with ``sig`` and restarted twice."""
    qm_args = ("--journal", journal, "--scheduler-interval", "0.2s", "--shutdown-grace", "1s")
    grid.start_queue_manager(*qm_args)
    grid.start_worker(PACED)
    grid.start_worker(PACED)
    grid.wait_workers(2)
    seen = bytearray(n)
    restarts = 0
    async with AsyncClient(grid.address, api_key=grid.api_key) as client:
        async with client.session(app_id="restart", max_attempts=10) as session:
            payloads = (f"task-{i:06d}".encode() for i in range(n))
            async for r in session.map(payloads):
                assert r.ok, r.error
                assert r.payload == f"task-{r.index:06d}".encode()[::-1]
                seen[r.index] += 1
                done = n - seen.count(0)
                if restarts < 2 and done >= (restarts + 1) * n // 3:
                    assert grid.qm is not None
                    grid.qm.send_signal(sig)
                    await asyncio.to_thread(grid.qm.wait, 30)
                    restarts += 1
                    grid.start_queue_manager(*qm_args)
    assert restarts == 2
    doubled = n - seen.count(0) - seen.count(1)
    assert seen.count(1) == n, f"missing {seen.count(0)}, doubled {doubled}"


async def test_client_survives_queue_manager_restarts_with_the_journal(grid: Grid, tmp_path):
    """SIGTERM, restart on the same journal, twice: the client gets every result exactly once."""
    await _run_through_restarts(grid, str(tmp_path / "qm.db"), signal.SIGTERM, 20_000)


async def test_sigkilled_queue_manager_with_the_journal_loses_nothing(grid: Grid, tmp_path):
    """SIGKILL mid-run, restart on the same journal, twice: nothing lost, nothing doubled."""
    await _run_through_restarts(grid, str(tmp_path / "qm.db"), signal.SIGKILL, 20_000)
