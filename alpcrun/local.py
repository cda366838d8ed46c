"""LocalGrid: a complete grid on loopback — in-process servers plus worker processes.

The queue manager (with the payload catalog), the central cache and a node agent (the one
node's shared-data cache and payload store, node ``local``, its payload socket in a scratch
directory) run in this process; the workers are child processes pointed at all three.

Used by ``alpcrun local`` and ``alpcrun demo``. Worker processes arm a parent-death
signal (Linux, see ``alpcrun.lifeline``) so they never outlive the process that started them,
and are stopped with SIGTERM (then SIGKILL after a timeout) when the grid exits. They run in
their own session, so a Ctrl-C in the terminal reaches only this process, which then drains
them with one SIGTERM (a second signal would make them exit without draining).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

from pydantic import SecretStr

from alpcrun.cache.app import CentralCacheServer, NodeAgent
from alpcrun.config import CentralCacheSettings, NodeAgentSettings, QueueManagerSettings
from alpcrun.errors import AlpcrunError
from alpcrun.lifeline import PARENT_PID_ENV
from alpcrun.queue_manager.app import QueueManager

log = logging.getLogger("alpcrun.local")
DEMO_WORKER = "alpcrun.demo.worker:MonteCarloWorker"
LOCAL_NODE = "local"
"""The node name of a local grid's machine in the payload catalog."""


class LocalGrid:
    """Queue manager (in this process) + ``workers`` worker processes on 127.0.0.1."""

    def __init__(
        self,
        *,
        workers: int = 2,
        worker_spec: str = DEMO_WORKER,
        port: int = 0,
        api_key: str | None = None,
        concurrency: int = 2,
        metrics_port: int | None = 0,
        worker_log_level: str = "info",
    ) -> None:
        self.api_key = api_key or secrets.token_urlsafe(16)
        self.worker_spec = worker_spec
        self.n_workers = workers
        self.concurrency = concurrency
        self.worker_log_level = worker_log_level
        settings = QueueManagerSettings(
            host="127.0.0.1", port=port, metrics_port=metrics_port, api_key=SecretStr(self.api_key)
        )
        self.queue_manager = QueueManager(settings=settings)
        key = SecretStr(self.api_key)
        self.central_cache = CentralCacheServer(
            settings=CentralCacheSettings(host="127.0.0.1", port=0, metrics_port=None, api_key=key)
        )
        self.node_agent: NodeAgent | None = None
        self.processes: list[subprocess.Popen[bytes]] = []
        self._scratch = tempfile.TemporaryDirectory(prefix="alpcrun-local-")
        self.node = LOCAL_NODE
        """The node name of this machine in the payload catalog."""
        self.payload_socket = str(Path(self._scratch.name) / "payload.sock")
        """The node agent's payload socket (clients on this machine read payloads zero-copy)."""

    @property
    def address(self) -> str:
        """Queue manager address."""
        return self.queue_manager.address

    def _spawn_worker(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["ALPCRUNCH_API_KEY"] = self.api_key
        env.pop("ALPCRUNCH_API_KEY_FILE", None)  # the grid's key, not one from a file
        env.setdefault("PYTHONPATH", os.getcwd())
        env[PARENT_PID_ENV] = str(os.getpid())
        env["ALPCRUNCH_WORKER_CENTRAL_CACHE"] = self.central_cache.address
        if self.node_agent is not None:
            env["ALPCRUNCH_WORKER_NODE_AGENT"] = self.node_agent.address
            env["ALPCRUNCH_WORKER_NODE_READ_PATH"] = self.node_agent.read_address or "off"
            env["ALPCRUNCH_WORKER_NODE"] = self.node
            env["ALPCRUNCH_WORKER_PAYLOAD_SOCKET"] = self.payload_socket
        cmd = [
            sys.executable,
            "-m",
            "workers_sdk",
            self.worker_spec,
            "--queue-manager",
            self.address,
            "--concurrency",
            str(self.concurrency),
            "--log-level",
            self.worker_log_level,
        ]
        return subprocess.Popen(cmd, env=env, start_new_session=True)

    async def start(self, *, ready_timeout: float = 60.0) -> None:
        """Start the queue manager and the workers; wait until every worker registered."""
        await self.queue_manager.start()
        await self.central_cache.start()
        self.node_agent = NodeAgent(
            settings=NodeAgentSettings(
                host="127.0.0.1",
                port=0,
                metrics_port=None,
                read_port=0,
                api_key=SecretStr(self.api_key),
                central_cache_addr=self.central_cache.address,
                queue_manager=self.queue_manager.address,
                node=self.node,
                payload_socket=self.payload_socket,
            )
        )
        await self.node_agent.start()
        assert self.node_agent.payloads is not None
        await asyncio.wait_for(self.node_agent.payloads.registered.wait(), ready_timeout)
        self.processes = [self._spawn_worker() for _ in range(self.n_workers)]
        deadline = asyncio.get_running_loop().time() + ready_timeout
        while len(self.queue_manager.core.workers) < self.n_workers:
            dead = [p for p in self.processes if p.poll() is not None]
            if dead:
                raise AlpcrunError(
                    f"a worker process exited with code {dead[0].returncode} at start"
                )
            if asyncio.get_running_loop().time() > deadline:
                raise AlpcrunError(f"workers did not register within {ready_timeout:.0f}s")
            await asyncio.sleep(0.05)

    async def stop(self, *, kill_after: float = 10.0) -> None:
        """SIGTERM the workers (SIGKILL after ``kill_after`` s), then stop the queue manager."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + kill_after
        for proc in self.processes:
            while proc.poll() is None and loop.time() < deadline:  # noqa: ASYNC110 - polls a child
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.processes = []
        await self.queue_manager.stop(grace=0)
        if self.node_agent is not None:
            await self.node_agent.stop(grace=0)
        await self.central_cache.stop(grace=0)
        self._scratch.cleanup()

    async def __aenter__(self) -> LocalGrid:
        try:
            await self.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
