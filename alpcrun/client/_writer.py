"""The write side of a session's stream: one outgoing queue per call and the loop that drains it.

Batches, result acknowledgements and the half-close go through one queue, so the one write
loop of a call is the only task that writes to it. A new call gets a new queue that starts
with every unfinished batch again (:class:`~alpcrun.client._pending.Unfinished`); a batch
answered meanwhile is skipped when its turn comes.
"""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio

from alpcrun.client._batcher import PackedBatch
from alpcrun.client._pending import Unfinished
from alpcrun.proto import ClientStreamRequest, ClientStreamResponse, ResultAck

Call = grpc.aio.StreamStreamCall[ClientStreamRequest, ClientStreamResponse]
"""One ``ClientStream`` call."""
Out = PackedBatch | ClientStreamRequest | None
"""What the writer sends: a batch, an ack, or None to half-close."""


class Writer:
    """Writes a stream's batches and acks to its current call, across reconnects.

    :meth:`send` and :meth:`ack` never wait: they queue for the write loop of the current
    call, which :meth:`start` opens (and :meth:`stop` ends). :attr:`unwritten` counts the
    batches queued for the current call and not written yet; :meth:`wait_written` waits for
    it to reach zero. Once :meth:`close` is called the writer is done for good.

    Args:
        unfinished: The stream's batches with unanswered tasks: resent by every new call,
            and skipped once answered.
        name: Suffix of the write loop's task name (the session id).
    """

    __slots__ = (
        "_closed",
        "_drained",
        "_half_closed",
        "_name",
        "_queue",
        "_unfinished",
        "task",
        "unwritten",
    )

    def __init__(self, unfinished: Unfinished, name: str) -> None:
        self._unfinished = unfinished
        self._name = name
        self._queue: asyncio.Queue[Out] = asyncio.Queue()
        self._drained = asyncio.Event()
        self._half_closed = False
        self._closed = False
        self.unwritten = 0
        """Batches queued for the current call and not written yet."""
        self.task: asyncio.Task[None] | None = None
        """The write loop of the current (or last) call."""

    def send(self, batch: PackedBatch) -> None:
        """Queue a batch for the current call (or the next one, while reconnecting)."""
        self.unwritten += 1
        self._queue.put_nowait(batch)

    def ack(self, seq: int) -> None:
        """Queue the acknowledgement of the result message numbered ``seq``."""
        if not self._closed:
            self._queue.put_nowait(ClientStreamRequest(ack=ResultAck(seq=seq)))

    def half_close(self) -> None:
        """Half-close the call once everything queued before is written (and every later call)."""
        self._half_closed = True
        self._queue.put_nowait(None)

    def start(self, call: Call) -> asyncio.Task[None]:
        """Start writing to a new call: every unfinished batch first, then what comes.

        Args:
            call: The new call; the previous one's write loop must be stopped already.

        Returns:
            The call's write loop (also kept as :attr:`task`).
        """
        queue: asyncio.Queue[Out] = asyncio.Queue()
        self._queue = queue
        self.unwritten = 0
        for batch in self._unfinished:
            self.unwritten += 1
            queue.put_nowait(batch)
        if self._half_closed:
            queue.put_nowait(None)
        self.task = asyncio.create_task(self._run(call, queue), name=f"alpcrun-write-{self._name}")
        return self.task

    def stop(self) -> None:
        """Cancel the current call's write loop (what is queued waits for the next call)."""
        if self.task is not None:
            self.task.cancel()

    def close(self) -> None:
        """Stop for good: cancel the write loop, drop later acks, wake :meth:`wait_written`."""
        self._closed = True
        self._drained.set()
        self.stop()

    async def wait_written(self) -> None:
        """Wait until every batch queued so far is written to a call, or the writer closes."""
        while not self._closed and self.unwritten > 0:
            self._drained.clear()
            await self._drained.wait()

    async def _run(self, call: Call, queue: asyncio.Queue[Out]) -> None:
        unfinished = self._unfinished
        try:
            while (item := await queue.get()) is not None:
                if not isinstance(item, PackedBatch):
                    await call.write(item)
                    continue
                if item in unfinished:  # a resent batch may have been answered meanwhile
                    await call.write(item.request)
                if queue is self._queue:
                    self.unwritten -= 1
                    if self.unwritten == 0:
                        self._drained.set()
            await call.done_writing()
        except (grpc.RpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            return  # the call has ended; the reader reports how
