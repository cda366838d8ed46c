"""A journal that cannot write: UNAVAILABLE and NOT_SERVING instead of hanging, then recovery.

One test fails every write of a real queue manager's journal; the other fills a real (2 MiB
free at the end) tmpfs under it, which needs root to mount, and skips where it cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alpcrun import proto
from alpcrun.client import AsyncClient
from alpcrun.config import ClientSettings, WorkerSettings
from alpcrun.constants import MD_SESSION_ID
from alpcrun.testing import running_queue_manager
from workers_sdk import TaskContext, Worker, WorkerRunner

from .sim import until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
KEY = "disk-key"
MD = (("api_key", KEY),)
KIB, MIB = 1 << 10, 1 << 20


class Echo(Worker):
    """Answers ``b"done:" + payload``."""

    async def handle(self, task: TaskContext) -> bytes:
        return b"done:" + task.payload


@contextlib.asynccontextmanager
async def echo_workers(address: str, n: int = 2) -> AsyncIterator[None]:
    runners = [
        WorkerRunner(
            Echo(),
            WorkerSettings(
                queue_manager=address,
                api_key=KEY,
                concurrency=4,
                reconnect_delay=0.05,
                drain_timeout=2.0,
                node="node",
                pod=f"pod-{i}",
            ),
        )
        for i in range(n)
    ]
    tasks = [asyncio.create_task(runner.run()) for runner in runners]
    try:
        yield
    finally:
        for runner in runners:
            runner.request_stop()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)


async def health(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return int(reply.status)


async def until_health(channel: grpc.aio.Channel, status: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while (now := await health(channel)) != status:
        assert time.monotonic() < deadline, f"health stayed {now}, wanted {status}"
        await asyncio.sleep(0.05)


async def create_session(channel: grpc.aio.Channel) -> proto.Session:
    return await proto.QueueStub(channel).CreateSession(
        proto.CreateSessionRequest(attributes=proto.SessionAttributes(app_id="disk")),
        metadata=MD,
        timeout=10,
    )


async def refused_unavailable(channel: grpc.aio.Channel, path: str) -> None:
    """CreateSession is answered UNAVAILABLE, naming the journal, well before its deadline."""
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await create_session(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
    assert path in (refused.value.details() or "")
    assert time.monotonic() - started < 5


async def test_calls_that_need_the_journal_are_unavailable_while_it_cannot_write(tmp_path):
    """Writes failing: CreateSession and batches UNAVAILABLE at once, NOT_SERVING; then back."""
    path = str(tmp_path / "qm.db")
    async with running_queue_manager(api_key=KEY, journal=path) as qm:
        assert qm.journal is not None
        async with grpc.aio.insecure_channel(qm.address) as channel:
            session = await create_session(channel)
            write = qm.journal._write

            def full(rows) -> None:
                raise sqlite3.OperationalError("database or disk is full")

            qm.journal._write = full  # type: ignore[method-assign]
            await refused_unavailable(channel, path)  # the write it waits for fails
            await until_health(channel, health_pb2.HealthCheckResponse.NOT_SERVING)
            await refused_unavailable(channel, path)  # refused before any change
            call = proto.QueueStub(channel).ClientStream(
                metadata=(*MD, (MD_SESSION_ID, session.id)), timeout=10
            )
            batch = proto.Batch(id="b1", session_id=session.id)
            batch.tasks.add(id="t1", payload=b"x")
            await call.write(proto.ClientStreamRequest(batch=batch))
            with pytest.raises(grpc.aio.AioRpcError) as stream:
                await call.read()
            assert stream.value.code() == grpc.StatusCode.UNAVAILABLE
            assert qm.core.sessions[session.id].submitted == 0  # nothing accepted unjournaled
            qm.journal._write = write  # type: ignore[method-assign]
            await until_health(channel, health_pb2.HealthCheckResponse.SERVING)
            await create_session(channel)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (skips where mounting one is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; return it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (1 * MIB, 64 * KIB, 4 * KIB, 512, 1):
            data = b"\0" * chunk
            while _wrote(fd, data):
                pass
    finally:
        os.close(fd)
    return filler


def _wrote(fd: int, data: bytes) -> bool:
    """Write ``data``; False once the filesystem is full."""
    try:
        os.write(fd, data)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        return False
    return True


def empty_write_ahead_log(path: str) -> None:
    """Checkpoint the journal into its database and cut its log to nothing."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0
    assert os.path.getsize(f"{path}-wal") == 0


async def test_a_full_disk_recovers_when_less_room_is_freed_than_the_backlog(small_disk):
    """Results held while the disk is full are written once 2 MiB are free, though 4 MiB wait."""
    path = str(small_disk / "qm.db")
    n = 1000
    payloads = [bytes([i % 251]) * (4 * KIB) for i in range(n)]
    async with running_queue_manager(
        api_key=KEY, journal=path, journal_max_transaction_bytes=64 * KIB
    ) as qm:
        journal = qm.journal
        assert journal is not None
        settings = ClientSettings(queue_manager=qm.address, api_key=KEY, max_batch_tasks=64)
        async with (
            AsyncClient(settings=settings) as client,
            grpc.aio.insecure_channel(qm.address) as channel,
        ):
            session = await client.create_session(app_id="disk")
            handles = [await session.submit(p) for p in payloads]
            await session.flush()
            record = qm.core.sessions[session.id]
            await until(lambda: record.queue.tasks == n and journal.backlog_bytes == 0)
            await journal.sync()
            empty_write_ahead_log(path)  # from now on every write needs room on the disk
            filler = fill(small_disk)
            async with echo_workers(qm.address):
                await until(lambda: journal.failure is not None, within=30)
                assert "full" in journal.failure
                await until_health(channel, health_pb2.HealthCheckResponse.NOT_SERVING)
                await refused_unavailable(channel, path)
                await until(
                    lambda: record.completed == n, within=60, state=lambda: record.completed
                )
                assert not any(h.done() for h in handles)  # nothing unjournaled reached it
                assert journal.backlog_bytes > 2 * MIB + 1 * MIB
                os.truncate(filler, filler.stat().st_size - 2 * MIB)
                results = await asyncio.wait_for(asyncio.gather(*handles), 60)
            assert results == [b"done:" + p for p in payloads]
            await until_health(channel, health_pb2.HealthCheckResponse.SERVING)
            await create_session(channel)
            assert journal.failure is None
            await session.close()
