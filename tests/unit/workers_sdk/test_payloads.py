"""Workers open the payloads their tasks reference and put outputs, in the harness (no server)."""

from __future__ import annotations

import numpy as np

from alpcrun.proto import ErrorReason, PayloadRef
from workers_sdk import TaskContext, Worker
from workers_sdk.testing import SyncWorkerHarness, WorkerHarness


class Scale(Worker):
    """Reads its input array, writes twice it as a payload, returns the sum."""

    def handle(self, task: TaskContext) -> bytes:
        (ref,) = task.refs
        with task.open(ref) as view:
            arr = view.array()
            assert not arr.flags.writeable
            task.put(arr * 2)
            return str(float(arr.sum())).encode()


class AsyncScale(Worker):
    """The async twin of :class:`Scale`."""

    async def handle(self, task: TaskContext) -> bytes:
        (ref,) = task.refs
        async with task.open_async(ref) as view:
            await task.put_async(view.array() * 2)
            return b"done"


class WrongColour(Worker):
    """Calls the sync payload API from an async handler."""

    async def handle(self, task: TaskContext) -> bytes:
        with task.open(task.refs[0]):
            return b""


async def test_a_sync_task_reads_its_array_and_its_result_carries_the_output():
    """The input comes back with dtype and shape; the output ref is on the result."""
    async with WorkerHarness(Scale()) as h:
        arr = np.arange(12, dtype=np.int32).reshape(3, 4)
        ref = h.payloads.add(arr)
        (result,) = await h.run_batch([b""], refs=[ref])
        assert result.payload == b"66.0"
        (out,) = result.refs
        got = np.frombuffer(h.payloads.get(out), dtype=np.int32).reshape(3, 4)
        assert np.array_equal(got, arr * 2)


async def test_an_async_task_uses_the_async_twins():
    """open_async and put_async work in async handlers."""
    async with WorkerHarness(AsyncScale()) as h:
        ref = h.payloads.add(np.ones(5))
        (result,) = await h.run_batch([b""], refs=[ref])
        assert result.ok
        assert len(result.refs) == 1


async def test_a_task_whose_payload_is_gone_fails_with_the_payload_reason():
    """Opening a payload that does not exist is a PAYLOAD_LOST failure, never retried."""
    async with WorkerHarness(Scale()) as h:
        gone = PayloadRef(payload_id="nope", version=1, size_bytes=8)
        (result,) = await h.run_batch([b""], refs=[gone])
        assert result.error is not None
        assert result.error.reason == ErrorReason.ERROR_REASON_PAYLOAD_LOST
        assert result.error.type == "PayloadLost"


async def test_the_sync_api_in_an_async_handler_is_a_clear_error():
    """An async handler calling task.open gets told to use open_async (no deadlock)."""
    async with WorkerHarness(WrongColour()) as h:
        ref = h.payloads.add(b"x")
        (result,) = await h.run_batch([b""], refs=[ref])
        assert isinstance(result.exception, RuntimeError)
        assert "open_async" in str(result.exception)


def test_the_blocking_harness_supports_payloads():
    """SyncWorkerHarness passes refs and exposes the in-memory payloads."""
    with SyncWorkerHarness(Scale()) as h:
        ref = h.payloads.add(np.array([1.5, 2.5]))
        assert h.run(b"", refs=[ref]) == b"4.0"


def test_tasks_without_payloads_are_unchanged():
    """A plain task has no refs and its result carries none."""

    class Echo(Worker):
        def handle(self, task: TaskContext) -> bytes:
            assert task.refs == ()
            return task.payload

    with SyncWorkerHarness(Echo()) as h:
        (result,) = h.run_batch([b"x"])
        assert result.refs == ()
        assert result.payload == b"x"


def test_a_strided_view_is_stored_as_its_bytes():
    """Putting a reversed memoryview stores the bytes in the view's order."""

    class Reverse(Worker):
        def handle(self, task: TaskContext) -> bytes:
            with task.open(task.refs[0]) as view:
                task.put(view.memoryview()[::-1])
            return b""

    with SyncWorkerHarness(Reverse()) as h:
        ref = h.payloads.add(b"abc")
        (result,) = h.run_batch([b""], refs=[ref])
        assert h.payloads.get(result.refs[0]) == b"cba"
