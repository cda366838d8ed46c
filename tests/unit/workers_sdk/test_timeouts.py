"""Per-task timeouts and attempt numbers through BatchExecutor and WorkerHarness."""

from __future__ import annotations

import asyncio
import datetime
import time

import pytest

from alpcrun.proto import Batch, ErrorReason, WorkerInstruction
from workers_sdk import Retry, TaskContext, TaskTimeout, Worker, WorkerHarness, current
from workers_sdk._execute import BatchExecutor
from workers_sdk._session import SessionSpec
from workers_sdk.testing import SyncWorkerHarness

LIMIT = 0.5
"""Generous enough for the quick tasks on a loaded machine, short enough for a fast test."""
TIMEOUT = ErrorReason.ERROR_REASON_TIMEOUT


def make_batch(*payloads: bytes) -> Batch:
    batch = Batch(id="b-1", session_id="s-1", dispatch_id=1)
    for i, payload in enumerate(payloads):
        batch.tasks.add(id=f"t{i}", payload=payload)
    return batch


class AsyncSlow(Worker):
    """b"hang" waits forever (recording its cancellation); b"stubborn" ignores it."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []
        self.deadlines: list[float | None] = []

    async def handle(self, task: TaskContext) -> bytes:
        self.deadlines.append(current().deadline)
        if task.payload == b"hang":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled.append(task.task_id)
                raise
        if task.payload == b"stubborn":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                return b"too late"
        if task.payload == b"block":
            # Blocks the loop on purpose: the timeout cannot fire meanwhile.
            time.sleep(LIMIT + 0.2)  # noqa: ASYNC251 - the behaviour under test
        if task.payload == b"own-timeout":
            raise TimeoutError("upstream did not answer")
        return task.payload.upper()


class SyncSlow(Worker):
    """b"slow" overruns the limit and returns; b"slow-fail" overruns and raises."""

    def __init__(self) -> None:
        self.deadlines: list[float | None] = []

    def handle(self, task: TaskContext) -> bytes:
        self.deadlines.append(task.deadline)
        if task.payload.startswith(b"slow"):
            time.sleep(LIMIT + 0.2)
            if task.payload == b"slow-fail":
                raise ValueError("failed late")
        return task.payload.upper()


async def test_async_handler_is_cancelled_at_the_limit_and_batch_mates_continue():
    """A hung async task fails with TIMEOUT once its limit passes; the others succeed."""
    worker = AsyncSlow()
    executor = BatchExecutor(worker, threads=1)
    started = time.monotonic()
    out = await executor.execute(
        make_batch(b"a", b"hang", b"b"), session_id="s", worker_id="w", task_timeout=LIMIT
    )
    assert time.monotonic() - started < 5
    a, hung, b = out.tasks
    assert (a.payload, b.payload) == (b"A", b"B")
    assert not a.HasField("error")
    assert hung.error.reason == TIMEOUT
    assert hung.error.type == "TaskTimeout"
    assert f"task_timeout of {LIMIT:g}s" in hung.error.message
    assert hung.payload == b""
    assert worker.cancelled == ["t1"]


class Paced(Worker):
    """b"nap" sleeps a third of the limit; b"hang" waits forever; b"both" waits forever while
    an outside cancel lands in the same loop turn as the timeout's own."""

    async def handle(self, task: TaskContext) -> bytes:
        if task.payload == b"nap":
            await asyncio.sleep(LIMIT / 3)
        elif task.payload == b"hang":
            await asyncio.sleep(30)
        elif task.payload == b"both":
            loop = asyncio.get_running_loop()
            me = asyncio.current_task()
            assert me is not None

            def block_then_cancel() -> None:
                # Blocks the loop past the limit, so the timeout's timer is due on the next
                # turn, right after the outside cancel queued here: one CancelledError for two.
                time.sleep(0.2)
                loop.call_soon(me.cancel)

            loop.call_soon(block_then_cancel)
            await asyncio.sleep(30)
        return task.payload


async def test_each_task_gets_its_own_full_limit_within_a_long_batch():
    """Tasks that together outlast the limit all succeed; a later hang still gets its full limit."""
    async with WorkerHarness(Paced(), task_timeout=LIMIT) as h:
        results = await h.run_batch([b"nap"] * 5 + [b"hang"])
    assert [r.payload for r in results[:5]] == [b"nap"] * 5
    hung = results[5]
    assert hung.error is not None
    assert hung.error.reason == TIMEOUT
    assert isinstance(hung.exception, TaskTimeout)
    assert hung.exception.elapsed >= LIMIT


async def test_outside_cancellation_of_a_timed_batch_propagates():
    """Cancelling the batch from outside raises CancelledError; it is not turned into a timeout."""
    executor = BatchExecutor(Paced(), threads=1)
    run = asyncio.create_task(
        executor.execute(make_batch(b"hang"), session_id="s", worker_id="w", task_timeout=5)
    )
    await asyncio.sleep(0.05)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run


async def test_outside_cancellation_during_a_timeout_is_not_swallowed():
    """A cancel that arrives together with the timeout's still cancels the batch."""
    executor = BatchExecutor(Paced(), threads=1)
    run = asyncio.create_task(
        executor.execute(make_batch(b"both", b"a"), session_id="s", worker_id="w", task_timeout=0.1)
    )
    with pytest.raises(asyncio.CancelledError):
        await run
    assert run.cancelled()


async def test_nothing_fires_after_a_timed_batch():
    """Once a timed batch is over no timer is left to cancel the caller."""
    async with WorkerHarness(Paced(), task_timeout=0.1) as h:
        assert await h.run(b"quick") == b"quick"
        await asyncio.sleep(0.3)
        assert await h.run(b"again") == b"again"


async def test_async_handler_swallowing_cancellation_still_times_out():
    """A handler that catches the cancellation and returns is reported as timed out anyway."""
    async with WorkerHarness(AsyncSlow(), task_timeout=LIMIT) as h:
        (result,) = await h.run_batch([b"stubborn"])
    assert result.payload is None
    assert result.error is not None
    assert result.error.reason == TIMEOUT
    assert isinstance(result.exception, TaskTimeout)


async def test_async_handler_blocking_the_loop_past_the_limit_times_out():
    """An async handler that blocks the loop past the limit is late even though not cancelled."""
    async with WorkerHarness(AsyncSlow(), task_timeout=LIMIT) as h:
        (result,) = await h.run_batch([b"block"])
    assert result.error is not None
    assert result.error.reason == TIMEOUT
    assert "discarded" in result.error.message


async def test_handler_own_timeout_error_is_an_ordinary_error():
    """A TimeoutError raised by the handler itself is a retryable error, not TIMEOUT."""
    async with WorkerHarness(AsyncSlow(), task_timeout=LIMIT) as h:
        (result,) = await h.run_batch([b"own-timeout"])
    assert result.error is not None
    assert result.error.reason == ErrorReason.ERROR_REASON_ERROR
    assert result.error.type == "TimeoutError"


async def test_sync_overrun_is_reported_as_timeout_and_its_result_discarded():
    """A sync task that ran past the limit fails with TIMEOUT; its batch-mates succeed."""
    executor = BatchExecutor(SyncSlow(), threads=1)
    try:
        out = await executor.execute(
            make_batch(b"a", b"slow", b"b"), session_id="s", worker_id="w", task_timeout=LIMIT
        )
    finally:
        executor.close()
    a, slow, b = out.tasks
    assert (a.payload, b.payload) == (b"A", b"B")
    assert slow.payload == b""
    assert slow.error.reason == TIMEOUT
    assert slow.error.type == "TaskTimeout"
    assert f"longer than the task_timeout of {LIMIT:g}s" in slow.error.message


async def test_sync_overrun_that_raised_keeps_the_handler_error_as_cause():
    """A late exception is replaced by TaskTimeout, which keeps it as its __cause__."""
    async with WorkerHarness(SyncSlow(), task_timeout=datetime.timedelta(seconds=LIMIT)) as h:
        with pytest.raises(TaskTimeout) as info:
            await h.run(b"slow-fail")
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.limit == LIMIT
    assert info.value.elapsed > LIMIT


@pytest.mark.parametrize("worker_cls", [AsyncSlow, SyncSlow])
async def test_deadline_is_start_plus_limit_and_none_without_a_timeout(worker_cls):
    """TaskContext.deadline is time.monotonic() at the start plus the limit, else None."""
    worker = worker_cls()
    async with WorkerHarness(worker, task_timeout=30) as h:
        before = time.monotonic()
        await h.run(b"x")
        after = time.monotonic()
    async with WorkerHarness(worker) as h:
        await h.run(b"y")
    timed, untimed = worker.deadlines
    assert timed is not None
    assert before + 30 <= timed <= after + 30
    assert untimed is None


@pytest.mark.parametrize("task_timeout", [None, 0])
async def test_without_a_limit_slow_tasks_succeed_on_the_plain_path(task_timeout):
    """No limit (None, or 0 as on the wire) runs the plain path: plain contexts, no timeout."""
    seen: list[TaskContext] = []

    class Record(SyncSlow):
        def handle(self, task: TaskContext) -> bytes:
            seen.append(task)
            return super().handle(task)

    executor = BatchExecutor(Record(), threads=1)
    try:
        out = await executor.execute(
            make_batch(b"slow"), session_id="s", worker_id="w", task_timeout=task_timeout
        )
    finally:
        executor.close()
    assert out.tasks[0].payload == b"SLOW"
    assert type(seen[0]) is TaskContext


def test_sync_harness_accepts_a_task_timeout():
    """SyncWorkerHarness enforces task_timeout like the async harness."""
    with SyncWorkerHarness(SyncSlow(), task_timeout=LIMIT) as h:
        quick, slow = h.run_batch([b"q", b"slow"])
    assert quick.payload == b"Q"
    assert slow.error is not None
    assert slow.error.reason == TIMEOUT


@pytest.mark.parametrize("bad", [0, -1, datetime.timedelta(0)])
def test_harness_refuses_a_non_positive_timeout(bad):
    """A task_timeout of zero or less is refused with a ValueError."""
    with pytest.raises(ValueError, match="positive"):
        WorkerHarness(SyncSlow(), task_timeout=bad)


class FlakyOnce(Worker):
    """Asks for a retry on its first attempt and succeeds on later ones."""

    async def handle(self, task: TaskContext) -> bytes:
        if task.attempt == 1:
            raise Retry("warming up", after=0.5)
        return f"ok on attempt {task.attempt}".encode()


async def test_harness_reports_attempt_numbers():
    """Each HarnessResult carries the attempt the handler saw; a Retry carries its delay."""
    async with WorkerHarness(FlakyOnce()) as h:
        (first,) = await h.run_batch([b"x"])
        (second,) = await h.run_batch([b"x"], attempt=2)
        with pytest.raises(ValueError, match="1-based"):
            await h.run_batch([b"x"], attempt=0)
    assert first.attempt == 1
    assert first.error is not None
    assert (first.error.type, first.error.retry_after_ms) == ("Retry", 500)
    assert first.error.reason == ErrorReason.ERROR_REASON_ERROR
    assert second.attempt == 2
    assert second.payload == b"ok on attempt 2"


@pytest.mark.parametrize(("ms", "seconds"), [(0, None), (1500, 1.5), (2**32 - 1, 4294967.295)])
def test_bind_task_timeout_ms_becomes_the_session_spec_timeout(ms, seconds):
    """BIND's task_timeout_ms (0 meaning none) is carried into the session pump's spec."""
    instr = WorkerInstruction(
        type=WorkerInstruction.TYPE_BIND,
        session_id="s-7",
        max_inflight_batches=3,
        task_timeout_ms=ms,
    )
    spec = SessionSpec.from_bind(instr, "w-1")
    assert spec == SessionSpec("s-7", "w-1", 3, task_timeout=seconds)
