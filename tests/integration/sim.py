"""Simulated workers and a raw client speaking the wire protocol, for many-worker tests.

Hundreds of :class:`SimWorker` share a few channels in one event loop; each registers with
labels, follows BIND/UNBIND, and answers every batch after ``delay`` seconds by echoing the
payloads. A :class:`Ledger` counts executions and results per task id, so tests can prove
that nothing was lost or delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import grpc

from alpcrun import proto


class Ledger:
    """Executions (worker side) and deliveries (client side) per task id."""

    def __init__(self) -> None:
        self.executed: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()
        self.binds: Counter[str] = Counter()
        """BIND instructions per session id."""


class SimWorker:
    """One raw-protocol worker: WorkerUpdate for instructions, WorkerStream per bind."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        metadata: Sequence[tuple[str, str]],
        ledger: Ledger,
        *,
        labels: dict[str, str] | None = None,
        delay: float = 0.01,
    ) -> None:
        self.stub = proto.QueueStub(channel)
        self.metadata = tuple(metadata)
        self.ledger = ledger
        self.labels = labels or {}
        self.delay = delay
        self.id = ""
        self.session_id = ""
        self._streams: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Register and follow instructions until cancelled."""
        outbox: asyncio.Queue[proto.WorkerStatus] = asyncio.Queue()
        outbox.put_nowait(
            proto.WorkerStatus(
                register=proto.WorkerRegistration(
                    node="sim", pod="sim", labels=self.labels, concurrency=1
                )
            )
        )

        async def statuses() -> AsyncIterator[proto.WorkerStatus]:
            while True:
                yield await outbox.get()

        call = self.stub.WorkerUpdate(statuses(), metadata=self.metadata)
        try:
            async for instr in call:
                if instr.type == proto.WorkerInstruction.TYPE_REGISTERED:
                    self.id = instr.worker_id
                elif instr.type == proto.WorkerInstruction.TYPE_BIND:
                    self.session_id = instr.session_id
                    self.ledger.binds[instr.session_id] += 1
                    task = asyncio.create_task(self._serve(instr.session_id))
                    self._streams.add(task)
                    task.add_done_callback(self._streams.discard)
                elif instr.type == proto.WorkerInstruction.TYPE_UNBIND:
                    self.session_id = ""  # the server ends the stream once in-flight is answered
        finally:
            call.cancel()
            for task in list(self._streams):
                task.cancel()

    async def _serve(self, session_id: str) -> None:
        results: asyncio.Queue[proto.Batch | None] = asyncio.Queue()

        async def outgoing() -> AsyncIterator[proto.Batch]:
            while (b := await results.get()) is not None:
                yield b

        md = (*self.metadata, ("sessionid", session_id), ("workerid", self.id))
        call = self.stub.WorkerStream(outgoing(), metadata=md)
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for batch in call:
                await asyncio.sleep(self.delay)
                out = proto.Batch(id=batch.id, dispatch_id=batch.dispatch_id)
                for t in batch.tasks:
                    self.ledger.executed[t.id] += 1
                    out.tasks.add(id=t.id, payload=t.payload)
                await results.put(out)
        await results.put(None)


class RawClient:
    """A session's ClientStream with acks: send batches, count results per task id."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        metadata: Sequence[tuple[str, str]],
        session_id: str,
        ledger: Ledger,
    ) -> None:
        self.ledger = ledger
        self.session_id = session_id
        self.received = 0
        self._requests: asyncio.Queue[proto.ClientStreamRequest | None] = asyncio.Queue()
        md = (*metadata, ("sessionid", session_id), ("acks", "1"))
        self.call = proto.QueueStub(channel).ClientStream(self._gen(), metadata=md)
        self.reader = asyncio.create_task(self._read())

    async def _gen(self) -> AsyncIterator[proto.ClientStreamRequest]:
        while (r := await self._requests.get()) is not None:
            yield r

    def send(self, batches: int, tasks: int, prefix: str) -> list[str]:
        """Queue ``batches`` batches of ``tasks`` tasks; return the task ids."""
        ids = []
        for b in range(batches):
            batch = proto.Batch(id=f"{prefix}-b{b}")
            for t in range(tasks):
                tid = f"{prefix}-{b}-{t}"
                ids.append(tid)
                batch.tasks.add(id=tid, payload=tid.encode())
            self._requests.put_nowait(proto.ClientStreamRequest(batch=batch))
        return ids

    async def _read(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            async for response in self.call:
                for t in response.results.tasks:
                    assert t.payload == t.id.encode()
                    self.ledger.delivered[t.id] += 1
                    self.received += 1
                self._requests.put_nowait(
                    proto.ClientStreamRequest(ack=proto.ResultAck(seq=response.seq))
                )

    async def wait_for(self, n: int, within: float) -> None:
        """Wait until ``n`` results arrived."""
        await until(lambda: self.received >= n, within, state=lambda: self.received)

    def cut(self) -> None:
        """Drop the stream abruptly (as a lost connection would)."""
        self.call.cancel()
        self.reader.cancel()


async def until(predicate, within: float = 10.0, interval: float = 0.02, state=None) -> None:
    """Poll ``predicate`` (core state has no events to wait on) until it is true.

    On timeout, fail with ``state()`` if given.
    """
    try:
        async with asyncio.timeout(within):
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"timed out; state: {state() if state else '-'}") from None
