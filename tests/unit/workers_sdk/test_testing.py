"""WorkerHarness: running handle() without a server, async and sync twins."""

from __future__ import annotations

import asyncio

import pytest

from alpcrun.proto import ErrorReason
from workers_sdk import NonRetryableError, TaskContext, Worker, WorkerHarness, current
from workers_sdk.testing import SyncWorkerHarness


class Upper(Worker):
    def __init__(self) -> None:
        self.events: list[str] = []

    async def setup(self) -> None:
        self.events.append("setup")

    async def teardown(self) -> None:
        self.events.append("teardown")

    async def handle(self, task: TaskContext) -> bytes:
        await asyncio.sleep(0)
        if task.payload == b"boom":
            raise ValueError("no upper for boom")
        return task.payload.upper()


class SyncEcho(Worker):
    def handle(self, task: TaskContext) -> bytes:
        if task.payload == b"bad":
            raise NonRetryableError("cannot ever work")
        if task.payload == b"int":
            return 5  # type: ignore[return-value]
        return current().session_id.encode() + b":" + task.payload


async def test_async_worker_run_returns_bytes_and_calls_hooks():
    """run() returns the handler's bytes; setup and teardown run once around the block."""
    worker = Upper()
    async with WorkerHarness(worker) as h:
        assert worker.events == ["setup"]
        assert await h.run(b"abc") == b"ABC"
    assert worker.events == ["setup", "teardown"]


async def test_sync_worker_sees_harness_session():
    """A sync worker runs through the executor and sees the harness session id."""
    async with WorkerHarness(SyncEcho(), session_id="sess-9") as h:
        assert await h.run(b"x") == b"sess-9:x"


async def test_run_reraises_the_handler_exception():
    """run() raises exactly the exception the handler raised."""
    async with WorkerHarness(Upper()) as h:
        with pytest.raises(ValueError, match="no upper for boom"):
            await h.run(b"boom")


async def test_wrong_return_type_raises_type_error_naming_it():
    """A non-bytes result surfaces as a TypeError naming the returned type."""
    async with WorkerHarness(SyncEcho()) as h:
        with pytest.raises(TypeError, match="int"):
            await h.run(b"int")


async def test_run_batch_reports_each_task():
    """run_batch gives one result per payload, in order, with errors as the runner sends them."""
    async with WorkerHarness(SyncEcho(), session_id="s") as h:
        results = await h.run_batch([b"a", b"bad", b"int", b"b"])
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[0].payload == b"s:a"
    assert results[3].payload == b"s:b"
    assert results[1].payload is None
    assert results[1].error is not None
    assert results[1].error.reason == ErrorReason.ERROR_REASON_NON_RETRYABLE
    assert results[1].error.type == "NonRetryableError"
    assert isinstance(results[1].exception, NonRetryableError)
    assert results[2].error is not None
    assert results[2].error.type == "TypeError"
    assert len({r.task_id for r in results}) == 4


async def test_attempt_is_passed_to_the_context():
    """The attempt given to run() is what the handler sees."""

    class Attempt(Worker):
        async def handle(self, task: TaskContext) -> bytes:
            return str(task.attempt).encode()

    async with WorkerHarness(Attempt()) as h:
        assert await h.run(b"", attempt=3) == b"3"
        assert await h.run(b"") == b"1"


async def test_running_outside_the_context_manager_fails():
    """Using the harness without `async with` raises a RuntimeError that says how."""
    with pytest.raises(RuntimeError, match="async with"):
        await WorkerHarness(Upper()).run(b"x")


async def test_teardown_runs_even_when_the_block_raises():
    """teardown() is called when the body of `async with` fails."""
    worker = Upper()
    with pytest.raises(KeyError):
        async with WorkerHarness(worker):
            raise KeyError("x")
    assert worker.events == ["setup", "teardown"]


def test_sync_twin_runs_without_an_event_loop():
    """SyncWorkerHarness runs an async worker from plain sync code."""
    worker = Upper()
    with SyncWorkerHarness(worker) as h:
        assert h.run(b"abc") == b"ABC"
        results = h.run_batch([b"x", b"boom"])
    assert [r.ok for r in results] == [True, False]
    assert worker.events == ["setup", "teardown"]
