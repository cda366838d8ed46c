"""WorkerRunner against a real in-process queue manager (port 0), driven by raw stubs."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from alpcrun import proto
from alpcrun.config import WorkerSettings
from alpcrun.errors import PermissionDenied, Unauthenticated
from alpcrun.queue_manager import QueueManager
from alpcrun.testing import running_queue_manager
from workers_sdk import NonRetryableError, TaskContext, Worker, WorkerRunner, current
from workers_sdk.runner import RunnerState

pytestmark = pytest.mark.integration
KEY = "runner-key"
MD = (("api_key", KEY),)
ROOT = Path(__file__).resolve().parents[2]


class Upper(Worker):
    """Uppercases payloads; b'boom' fails retryably, b'never' for good."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def setup(self) -> None:
        self.events.append("setup")

    async def teardown(self) -> None:
        self.events.append("teardown")

    async def handle(self, task: TaskContext) -> bytes:
        if task.payload == b"boom":
            raise ValueError("boom!")
        if task.payload == b"never":
            raise NonRetryableError("never works")
        assert current() is task
        return task.payload.upper()


class SyncUpper(Upper):
    def handle(self, task: TaskContext) -> bytes:  # type: ignore[override]
        return task.payload.upper()


class Slow(Upper):
    """Blocks in handle until released; tells the test when it started."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, task: TaskContext) -> bytes:
        self.started.set()
        await self.release.wait()
        return b"slow:" + task.payload


def settings(address: str, *, api_key: str | None = KEY, **overrides: object) -> WorkerSettings:
    values: dict[str, object] = {
        "queue_manager": address,
        "api_key": api_key,
        "concurrency": 2,
        "reconnect_delay": 0.05,
        "drain_timeout": 5.0,
        "node": "node-a",
        "pod": "pod-a",
        "labels": {"zone": "test"},
    }
    values.update(overrides)
    return WorkerSettings(**values)  # type: ignore[arg-type]


async def wait_until(predicate, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running(runner: WorkerRunner) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        runner.request_stop()
        await asyncio.wait_for(asyncio.shield(task), 15)


class Client:
    """A stub-only client: one session, one ClientStream."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = proto.QueueStub(channel)
        self.requests: asyncio.Queue[proto.ClientStreamRequest | None] = asyncio.Queue()
        self.session_id = ""
        self.call: (
            grpc.aio.StreamStreamCall[proto.ClientStreamRequest, proto.ClientStreamResponse] | None
        ) = None

    async def open(self) -> str:
        session = await self.stub.CreateSession(
            proto.CreateSessionRequest(attributes=proto.SessionAttributes(app_id="runner")),
            metadata=MD,
        )
        self.session_id = session.id

        async def reqs() -> AsyncIterator[proto.ClientStreamRequest]:
            while (r := await self.requests.get()) is not None:
                yield r

        self.call = self.stub.ClientStream(reqs(), metadata=(*MD, ("sessionid", session.id)))
        return session.id

    async def submit(self, batch_id: str, payloads: list[bytes]) -> None:
        batch = proto.Batch(id=batch_id)
        for i, payload in enumerate(payloads):
            batch.tasks.add(id=f"{batch_id}-{i}", payload=payload)
        await self.requests.put(proto.ClientStreamRequest(batch=batch))

    async def results(self, n: int, within: float = 10.0) -> dict[str, proto.Task]:
        assert self.call is not None
        got: dict[str, proto.Task] = {}

        async def collect() -> None:
            assert self.call is not None
            while len(got) < n:
                response = await self.call.read()
                assert isinstance(response, proto.ClientStreamResponse)
                for t in response.results.tasks:
                    assert t.id not in got
                    got[t.id] = t

        await asyncio.wait_for(collect(), within)
        return got

    async def close(self) -> None:
        request = proto.CloseSessionRequest(session_id=self.session_id)
        await self.stub.CloseSession(request, metadata=MD)
        if self.call is not None:
            self.call.cancel()


@pytest.mark.parametrize("worker_cls", [Upper, SyncUpper])
async def test_runner_processes_every_task_and_drains(worker_cls):
    """Every task gets exactly one result with the right payload or error; stop drains cleanly."""
    async with running_queue_manager(api_key=KEY) as qm:
        worker = worker_cls()
        runner = WorkerRunner(worker, settings(qm.address))
        async with running(runner) as run_task, grpc.aio.insecure_channel(qm.address) as channel:
            await wait_until(lambda: len(qm.core.workers) == 1)
            (record,) = qm.core.workers.values()
            assert (record.node, record.pod) == ("node-a", "pod-a")
            assert record.labels == {"zone": "test"}
            assert record.concurrency == 2
            client = Client(channel)
            await client.open()
            for b in range(10):
                payloads = [f"task-{b}-{i}".encode() for i in range(50)]
                if b == 3 and worker_cls is Upper:
                    payloads[7], payloads[8] = b"boom", b"never"
                await client.submit(f"b{b}", payloads)
            got = await client.results(500)
            assert got["b0-0"].payload == b"TASK-0-0"
            assert got["b9-49"].payload == b"TASK-9-49"
            if worker_cls is Upper:
                assert got["b3-7"].error.type == "ValueError"
                assert got["b3-7"].error.message == "boom!"
                assert got["b3-8"].error.reason == proto.ErrorReason.ERROR_REASON_NON_RETRYABLE
                assert got["b3-6"].payload == b"TASK-3-6"
            stats = runner.statistics()
            assert stats.batches_done >= 10
            assert stats.tasks_failed >= (2 if worker_cls is Upper else 0)
            assert stats.worker_id == record.id
            await client.close()
        assert run_task.done()
        assert run_task.exception() is None
        assert worker.events == ["setup", "teardown"]
        assert runner.statistics().state is RunnerState.STOPPED
        await wait_until(lambda: not qm.core.workers)


async def test_unbind_returns_to_idle_and_a_new_session_binds():
    """After its session closes the worker goes idle and serves the next session."""
    async with running_queue_manager(api_key=KEY) as qm:
        runner = WorkerRunner(Upper(), settings(qm.address))
        async with running(runner), grpc.aio.insecure_channel(qm.address) as channel:
            first = Client(channel)
            await first.open()
            await first.submit("a", [b"one"])
            assert (await first.results(1))["a-0"].payload == b"ONE"
            await first.close()
            await wait_until(lambda: runner.statistics().state is RunnerState.IDLE)
            second = Client(channel)
            await second.open()
            await second.submit("b", [b"two"])
            assert (await second.results(1))["b-0"].payload == b"TWO"
            assert runner.statistics().session_id == second.session_id
            await second.close()


async def test_stop_finishes_the_inflight_batch_and_sends_its_result():
    """A stop while a batch runs lets it finish; its result reaches the client."""
    async with running_queue_manager(api_key=KEY) as qm:
        worker = Slow()
        runner = WorkerRunner(worker, settings(qm.address))
        run_task = asyncio.create_task(runner.run())
        async with grpc.aio.insecure_channel(qm.address) as channel:
            client = Client(channel)
            await client.open()
            await client.submit("s", [b"x", b"y"])
            await asyncio.wait_for(worker.started.wait(), 10)
            runner.request_stop()
            await wait_until(lambda: runner.statistics().state is RunnerState.DRAINING)
            await wait_until(lambda: all(w.draining for w in qm.core.workers.values()))
            assert not run_task.done()
            worker.release.set()
            got = await client.results(2)
            assert got["s-0"].payload == b"slow:x"
            await asyncio.wait_for(run_task, 10)
            await client.close()
        assert worker.events == ["setup", "teardown"]


async def test_drain_timeout_abandons_a_stuck_batch():
    """A handler stuck past drain_timeout is cancelled; run() still returns and tears down."""
    async with running_queue_manager(api_key=KEY) as qm:
        worker = Slow()
        runner = WorkerRunner(worker, settings(qm.address, drain_timeout=0.2))
        run_task = asyncio.create_task(runner.run())
        async with grpc.aio.insecure_channel(qm.address) as channel:
            client = Client(channel)
            await client.open()
            await client.submit("stuck", [b"x"])
            await asyncio.wait_for(worker.started.wait(), 10)
            loop = asyncio.get_running_loop()
            started = loop.time()
            runner.request_stop()
            await asyncio.wait_for(run_task, 10)
            assert loop.time() - started < 3
            await client.close()
        assert worker.events == ["setup", "teardown"]
        assert runner.statistics().batches_done == 0


@pytest.mark.parametrize(
    ("api_key", "error"), [("wrong-key", PermissionDenied), (None, Unauthenticated)]
)
async def test_auth_failure_is_fatal(api_key, error):
    """A refused API key ends run() with the mapped error, after teardown."""
    async with running_queue_manager(api_key=KEY) as qm:
        worker = Upper()
        runner = WorkerRunner(worker, settings(qm.address, api_key=api_key))
        with pytest.raises(error):
            await asyncio.wait_for(runner.run(), 10)
        assert worker.events == ["setup", "teardown"]


async def test_unreachable_queue_manager_is_retried_until_stopped():
    """With nothing listening, the runner keeps retrying and still stops cleanly."""
    async with running_queue_manager(api_key=KEY) as qm:
        address = qm.address
    worker = Upper()
    runner = WorkerRunner(worker, settings(address))
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0.3)
    assert not task.done()
    assert runner.statistics().state is RunnerState.CONNECTING
    runner.request_stop()
    await asyncio.wait_for(task, 10)
    assert worker.events == ["setup", "teardown"]


async def test_reconnects_and_registers_again_after_a_restart():
    """When the queue manager restarts on the same port the worker registers anew."""
    async with running_queue_manager(api_key=KEY) as qm:
        port = qm.port
        runner = WorkerRunner(Upper(), settings(qm.address))
        task = asyncio.create_task(runner.run())
        await wait_until(lambda: len(qm.core.workers) == 1)
        assert runner.statistics().worker_id in qm.core.workers
    try:
        await wait_until(lambda: runner.statistics().state is RunnerState.CONNECTING)
        async with running_queue_manager(api_key=KEY, port=port) as qm2:
            assert isinstance(qm2, QueueManager)
            await wait_until(lambda: len(qm2.core.workers) == 1)
            await wait_until(lambda: runner.statistics().state is RunnerState.IDLE)
            assert runner.statistics().worker_id in qm2.core.workers
            runner.request_stop()
            await asyncio.wait_for(task, 10)
    finally:
        runner.request_stop()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder holding `projworker.py`."""
    (tmp_path / "projworker.py").write_text(
        "from workers_sdk import Worker\n"
        "class Echo(Worker):\n"
        "    async def handle(self, task):\n"
        "        return task.payload\n"
    )
    return tmp_path


async def test_cli_worker_registers_and_exits_zero_on_sigterm(project):
    """`python -m workers_sdk mod:Class` run from a project folder exits 0 after SIGTERM."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALPCRUNCH_API_KEY": KEY}
    async with running_queue_manager(api_key=KEY) as qm:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "workers_sdk",
            "projworker:Echo",
            "--queue-manager",
            qm.address,
            "--label",
            "role=echo",
            "--log-level",
            "debug",
            cwd=project,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await wait_until(lambda: len(qm.core.workers) == 1, within=20)
            (record,) = qm.core.workers.values()
            assert record.labels == {"role": "echo"}
            proc.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(proc.communicate(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, output.decode()
        assert b"SIGTERM: draining" in output
        await wait_until(lambda: not qm.core.workers)
