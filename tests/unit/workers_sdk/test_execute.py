"""The batch execute path shared by the runner and the harness."""

from __future__ import annotations

import asyncio
import threading

import pytest

from alpcrun.proto import Batch, ErrorReason
from workers_sdk import NonRetryableError, Retry, TaskContext, Worker, current
from workers_sdk._execute import MAX_ERROR_MESSAGE, BatchExecutor, run_batch_sync, task_error
from workers_sdk.context import BatchInfo


def make_batch(*payloads: bytes, session_id: str = "s-1", dispatch_id: int = 42) -> Batch:
    batch = Batch(id="b-1", session_id=session_id, dispatch_id=dispatch_id)
    for i, payload in enumerate(payloads):
        batch.tasks.add(id=f"t{i}", payload=payload)
    return batch


class SyncRecorder(Worker):
    def __init__(self) -> None:
        self.threads: list[str] = []
        self.seen: list[TaskContext] = []

    def handle(self, task: TaskContext) -> bytes:
        self.threads.append(threading.current_thread().name)
        self.seen.append(current())
        return task.payload[::-1]


class AsyncRecorder(Worker):
    def __init__(self) -> None:
        self.seen: list[TaskContext] = []

    async def handle(self, task: TaskContext) -> bytes:
        self.seen.append(current())
        await asyncio.sleep(0)
        return task.payload.upper()


class Mixed(Worker):
    def handle(self, task: TaskContext) -> bytes:
        match task.payload:
            case b"boom":
                raise ValueError("exploded")
            case b"never":
                raise NonRetryableError("bad input")
            case b"later":
                raise Retry("busy", after=2.5)
            case b"none":
                return None  # type: ignore[return-value]
            case b"bytearray":
                return bytearray(b"ba")  # type: ignore[return-value]
            case b"view":
                return memoryview(b"mv")  # type: ignore[return-value]
        return b"ok"


async def test_sync_handler_runs_whole_batch_in_one_executor_call(monkeypatch):
    """A sync handler runs in a pool thread, with one run_in_executor call per batch."""
    worker = SyncRecorder()
    executor = BatchExecutor(worker, threads=2)
    loop = asyncio.get_running_loop()
    calls = []
    original = loop.run_in_executor

    def counting(pool, fn, *args):
        calls.append(fn)
        return original(pool, fn, *args)

    monkeypatch.setattr(loop, "run_in_executor", counting)
    try:
        out = await executor.execute(make_batch(b"ab", b"cd", b"ef"), session_id="x", worker_id="w")
    finally:
        executor.close()
    assert len(calls) == 1
    assert [t.payload for t in out.tasks] == [b"ba", b"dc", b"fe"]
    assert all(name.startswith("worker-handle") for name in worker.threads)
    assert threading.current_thread().name not in worker.threads


async def test_async_handler_runs_on_the_loop_without_executor(monkeypatch):
    """An async handler is awaited on the loop; no executor is involved."""
    worker = AsyncRecorder()
    executor = BatchExecutor(worker, threads=1)
    loop = asyncio.get_running_loop()

    def refuse(*args):
        raise AssertionError("run_in_executor must not be used for async handlers")

    monkeypatch.setattr(loop, "run_in_executor", refuse)
    out = await executor.execute(make_batch(b"a", b"b"), session_id="x", worker_id="w")
    assert [t.payload for t in out.tasks] == [b"A", b"B"]


@pytest.mark.parametrize("worker_cls", [SyncRecorder, AsyncRecorder])
async def test_result_batch_mirrors_ids(worker_cls):
    """The result batch keeps id, session_id, dispatch_id and every task id, in order."""
    executor = BatchExecutor(worker_cls(), threads=1)
    try:
        out = await executor.execute(make_batch(b"a", b"b", b"c"), session_id="x", worker_id="w")
    finally:
        executor.close()
    assert (out.id, out.session_id, out.dispatch_id) == ("b-1", "s-1", 42)
    assert [t.id for t in out.tasks] == ["t0", "t1", "t2"]
    assert not any(t.HasField("error") for t in out.tasks)


@pytest.mark.parametrize("worker_cls", [SyncRecorder, AsyncRecorder])
async def test_current_is_the_running_task_and_reset_after(worker_cls):
    """current() inside handle is that task's context; it is unset after the batch."""
    worker = worker_cls()
    executor = BatchExecutor(worker, threads=1)
    try:
        batch = make_batch(b"a", b"b", session_id="")
        await executor.execute(batch, session_id="bound", worker_id="w-7")
    finally:
        executor.close()
    assert [c.task_id for c in worker.seen] == ["t0", "t1"]
    assert {c.session_id for c in worker.seen} == {"bound"}
    assert {c.worker_id for c in worker.seen} == {"w-7"}
    with pytest.raises(RuntimeError):
        current()


def test_per_task_errors_do_not_fail_batch_mates():
    """Each failure becomes that task's error; the other tasks still succeed."""
    raised: dict[str, Exception] = {}
    batch = make_batch(b"fine", b"boom", b"never", b"later", b"none", b"bytearray", b"view")
    out = run_batch_sync(Mixed().handle, batch, BatchInfo("b", "s", "w"), raised.__setitem__)
    by_id = {t.id: t for t in out.tasks}
    assert len(out.tasks) == 7
    assert by_id["t0"].payload == b"ok"
    assert not by_id["t0"].HasField("error")
    assert (by_id["t1"].error.type, by_id["t1"].error.message) == ("ValueError", "exploded")
    assert by_id["t1"].error.reason == ErrorReason.ERROR_REASON_ERROR
    assert by_id["t1"].payload == b""
    assert by_id["t2"].error.type == "NonRetryableError"
    assert by_id["t2"].error.reason == ErrorReason.ERROR_REASON_NON_RETRYABLE
    assert by_id["t3"].error.type == "Retry"
    assert by_id["t3"].error.reason == ErrorReason.ERROR_REASON_ERROR
    assert by_id["t3"].error.retry_after_ms == 2500
    assert by_id["t1"].error.retry_after_ms == 0
    assert by_id["t4"].error.type == "TypeError"
    assert "NoneType" in by_id["t4"].error.message
    assert by_id["t5"].payload == b"ba"
    assert by_id["t6"].payload == b"mv"
    assert set(raised) == {"t1", "t2", "t3", "t4"}
    assert isinstance(raised["t3"], Retry)
    assert raised["t3"].after_seconds == 2.5


def test_task_error_survives_hostile_exceptions():
    """A broken __str__, lone surrogates and huge messages still yield a valid TaskError."""

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert task_error(Unprintable()).message == "<unprintable Unprintable>"
    surrogate = task_error(ValueError("bad \udc80 text"))
    assert surrogate.message.startswith("bad ")
    surrogate.SerializeToString()
    assert len(task_error(ValueError("x" * 100_000)).message) == MAX_ERROR_MESSAGE


async def test_base_exceptions_propagate():
    """Cancellation raised inside an async handler is not swallowed as a task error."""

    class Cancels(Worker):
        async def handle(self, task: TaskContext) -> bytes:
            raise asyncio.CancelledError

    executor = BatchExecutor(Cancels(), threads=1)
    with pytest.raises(asyncio.CancelledError):
        await executor.execute(make_batch(b"a"), session_id="s", worker_id="w")


def test_retry_after_accepts_timedelta_and_none():
    """Retry.after_seconds converts a timedelta and keeps None."""
    import datetime

    assert Retry(after=datetime.timedelta(milliseconds=1500)).after_seconds == 1.5
    assert Retry().after_seconds is None
    assert isinstance(Retry(), Exception)
