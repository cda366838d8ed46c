"""Fixtures that spawn the real ``alpcrun`` processes and always clean them up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from alpcrun import proto

ROOT = Path(__file__).resolve().parents[2]
KEY = "e2e-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Grid:
    port: int
    logdir: Path
    api_key: str = KEY
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    qm: subprocess.Popen[bytes] | None = None
    logs: dict[int, Path] = field(default_factory=dict)
    env_extra: dict[str, str] = field(default_factory=dict)

    def _spawn(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = self.logdir / f"proc-{len(self.procs)}.log"
        with log.open("wb") as sink:  # a file, not a pipe: a chatty child never blocks
            proc = subprocess.Popen(cmd, env=self.env(), stderr=sink, stdout=sink)
        self.procs.append(proc)
        self.logs[proc.pid] = log
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT)
        env["ALPCRUNCH_API_KEY"] = self.api_key
        env.update(self.env_extra)
        return env

    def start_queue_manager(self, *extra: str) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable,
            "-m",
            "alpcrun.cli.main",
            "queue-manager",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--metrics-port",
            "0",
            *extra,
        ]
        self.qm = self._spawn(cmd)
        wait_healthy(self.address)
        return self.qm

    def start_worker(
        self, spec: str = "tests.e2e.workers:EchoWorker", *extra: str
    ) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable,
            "-m",
            "alpcrun.cli.main",
            "worker",
            spec,
            "--queue-manager",
            self.address,
            "--concurrency",
            "2",
            *extra,
        ]
        return self._spawn(cmd)

    def wait_workers(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(list_workers(self.address, self.api_key)) >= n:
                return
            time.sleep(0.1)
        raise AssertionError(f"{n} workers did not register in {timeout}s")

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait_healthy(address: str, timeout: float = 30) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise AssertionError(f"queue manager at {address} not healthy in {timeout}s")


def list_workers(address: str, key: str) -> list[proto.WorkerInfo]:
    with grpc.insecure_channel(address) as channel:
        reply = proto.AdminStub(channel).ListWorkers(
            proto.ListWorkersRequest(), metadata=(("api_key", key),), timeout=5
        )
        return list(reply.workers)


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[Grid]:
    g = Grid(port=free_port(), logdir=tmp_path)
    try:
        yield g
    finally:
        g.stop_all()


@pytest.fixture
def running_grid(grid: Grid) -> Grid:
    grid.start_queue_manager()
    grid.start_worker()
    grid.start_worker()
    grid.wait_workers(2)
    return grid
