"""End to end: real queue manager and worker processes, the client SDK, signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from alpcrun import proto
from alpcrun.client import AsyncClient
from alpcrun.errors import PermissionDenied, Unauthenticated

from .conftest import ROOT, Grid, wait_healthy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def test_100k_tasks_through_two_worker_processes(running_grid: Grid):
    """100,000 tasks come back exactly once each, correct, through 2 worker processes."""
    n = 100_000
    seen = bytearray(n)
    async with AsyncClient(running_grid.address, api_key=running_grid.api_key) as client:
        async with client.session(app_id="e2e") as session:
            payloads = (f"task-{i:06d}".encode() for i in range(n))
            async for r in session.map(payloads):
                assert r.ok, r.error
                assert r.payload == f"task-{r.index:06d}".encode()[::-1]
                seen[r.index] += 1
    assert seen.count(1) == n
    workers = {w.id: w.completed_batches for w in _workers(running_grid)}
    assert len(workers) == 2
    assert all(v > 0 for v in workers.values())


def _workers(g: Grid):
    from .conftest import list_workers

    return list_workers(g.address, g.api_key)


async def test_failing_task_is_dead_lettered_while_batch_mates_succeed(running_grid: Grid):
    """A task raising in handle is dead-lettered with its error text; its batch-mates succeed."""
    payloads = [b"ok-1", b"fail:poison", b"ok-2", b"ok-3"]
    async with AsyncClient(running_grid.address, api_key=running_grid.api_key) as client:
        async with client.session(app_id="e2e-dlq") as session:
            results = {r.index: r async for r in session.map(payloads)}
            dead = await session.dead_letters()
    assert [results[i].payload for i in (0, 2, 3)] == [b"1-ko", b"2-ko", b"3-ko"]
    bad = results[1]
    assert not bad.ok
    assert "cannot handle fail:poison" in bad.error.message
    assert bad.error.type == "ValueError"
    assert [d.task_id for d in dead] == [bad.task_id]
    assert "cannot handle fail:poison" in dead[0].error.message


async def test_wrong_and_missing_api_keys_are_refused(running_grid: Grid):
    """No key: UNAUTHENTICATED; wrong key: PERMISSION_DENIED — from the SDK and on the wire."""
    with pytest.raises(PermissionDenied):
        async with AsyncClient(running_grid.address, api_key="wrong") as client:
            await client.create_session(app_id="x")
    async with grpc.aio.insecure_channel(running_grid.address) as channel:
        stub = proto.QueueStub(channel)
        req = proto.CreateSessionRequest(attributes=proto.SessionAttributes(app_id="x"))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.CreateSession(req)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await proto.AdminStub(channel).GetStats(
                proto.GetStatsRequest(), metadata=(("api_key", "nope"),)
            )
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(Unauthenticated):
        async with AsyncClient(running_grid.address, api_key=None) as client:
            await client.create_session(app_id="x")


def test_sigterm_stops_queue_manager_and_worker_cleanly(grid: Grid):
    """SIGTERM makes a worker drain and exit 0, and the queue manager stop and exit 0."""
    qm = grid.start_queue_manager()
    worker = grid.start_worker()
    grid.wait_workers(1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    qm.send_signal(signal.SIGTERM)
    assert qm.wait(30) == 0
    assert "Traceback" not in grid.output(qm)
    assert "Traceback" not in grid.output(worker)


def test_worker_refused_with_wrong_key_exits_non_zero(grid: Grid):
    """A worker with a wrong API key fails fast with a clear message instead of retrying forever."""
    grid.start_queue_manager()
    proc = grid.start_worker("tests.e2e.workers:EchoWorker", "--api-key", "wrong")
    assert proc.wait(30) != 0
    assert "api_key" in grid.output(proc)


def test_cli_help_and_grpc_reflection_lists_services(running_grid: Grid):
    """`alpcrun --help` works and generic gRPC tools list the services by reflection."""
    out = subprocess.run(
        [sys.executable, "-m", "alpcrun.cli.main", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    assert "queue-manager" in out
    assert "demo" in out
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(running_grid.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"alpcrun.v1.Queue", "alpcrun.v1.Admin", "grpc.health.v1.Health"} <= names


def _children(pid: int) -> list[int]:
    """Live (non-zombie) child processes of pid, read from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_on_local_grid_leaves_no_process_behind(grid: Grid):
    """`alpcrun local` serves a grid; SIGINT stops it and every worker process it started."""
    cmd = [
        sys.executable,
        "-m",
        "alpcrun.cli.main",
        "local",
        "--workers",
        "2",
        "--port",
        str(grid.port),
        "--api-key",
        grid.api_key,
    ]
    proc = grid._spawn(cmd)
    wait_healthy(grid.address)
    grid.wait_workers(2)
    children = _children(proc.pid)
    assert len(children) == 2
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    deadline = time.monotonic() + 10
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [c for c in children if _alive(c)]


def test_status_command_lists_sessions_and_workers(running_grid: Grid):
    """`alpcrun status --json` shows a created session and both registered workers."""
    import json

    with grpc.insecure_channel(running_grid.address) as channel:
        session = proto.QueueStub(channel).CreateSession(
            proto.CreateSessionRequest(attributes=proto.SessionAttributes(app_id="seen")),
            metadata=(("api_key", running_grid.api_key),),
        )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "alpcrun.cli.main",
            "status",
            "--json",
            "--queue-manager",
            running_grid.address,
            "--api-key",
            running_grid.api_key,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    report = json.loads(out)
    assert [s["session"]["id"] for s in report["sessions"]["sessions"]] == [session.id]
    assert len(report["workers"]["workers"]) == 2
