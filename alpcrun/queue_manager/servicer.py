"""grpc.aio servicer of alpcrun.v1.Queue: decode, call the core, encode. No policy here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio

from alpcrun.constants import MD_ACKS, MD_SESSION_ID, MD_WORKER_ID
from alpcrun.errors import AlpcrunError, InvalidArgument, Unavailable
from alpcrun.proto import (
    Batch,
    ClientStreamRequest,
    ClientStreamResponse,
    CloseSessionRequest,
    CloseSessionResponse,
    CreateSessionRequest,
    DeadLettersRequest,
    GetSessionRequest,
    QueueServicer,
    Session,
    UpdateSessionRequest,
    WorkerInstruction,
    WorkerState,
    WorkerStatus,
)
from alpcrun.proto.status import abort_with
from alpcrun.queue_manager.convert import session_to_proto
from alpcrun.queue_manager.core import QueueCore
from alpcrun.queue_manager.records import SessionRecord, WorkerRecord
from alpcrun.queue_manager.streams import ClientStreamOutlet, QueueOutlet

Context = grpc.aio.ServicerContext[Any, Any]
_LETTERS_PER_BATCH = 1000
_LETTER_BYTES_PER_BATCH = 1 << 20
"""A dead-letter batch closes at this many tasks or bytes, whichever comes first."""


def _metadata_value(context: Context, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        if item[0] == key:
            return str(item[1])
    return None


def _metadata(context: Context, key: str) -> str:
    value = _metadata_value(context, key)
    if value is None:
        raise InvalidArgument(f"missing {key!r} metadata", field=key)
    return value


class _Failure:
    """The first error raised by a stream's reader task, handed to its writer."""

    error: AlpcrunError | None = None


class QueueService(QueueServicer):
    """The queue service over a :class:`QueueCore`."""

    def __init__(self, core: QueueCore) -> None:
        self.core = core
        self.accepting = True

    def _check_open(self) -> None:
        if not self.accepting:
            raise Unavailable("the queue manager is shutting down")

    async def CreateSession(self, request: CreateSessionRequest, context: Context) -> Session:
        """Create a session."""
        try:
            self._check_open()
            return session_to_proto(self.core.create_session(request.attributes))
        except AlpcrunError as exc:
            await abort_with(context, exc)

    async def GetSession(self, request: GetSessionRequest, context: Context) -> Session:
        """Read a session."""
        try:
            return session_to_proto(self.core.session(request.session_id))
        except AlpcrunError as exc:
            await abort_with(context, exc)

    async def UpdateSession(self, request: UpdateSessionRequest, context: Context) -> Session:
        """Change a session's attributes live."""
        try:
            return session_to_proto(
                self.core.update_session(request.session_id, request.attributes)
            )
        except AlpcrunError as exc:
            await abort_with(context, exc)

    async def CloseSession(
        self, request: CloseSessionRequest, context: Context
    ) -> CloseSessionResponse:
        """Close a session."""
        try:
            record, discarded = self.core.close_session(request.session_id)
            return CloseSessionResponse(session=session_to_proto(record), discarded_tasks=discarded)
        except AlpcrunError as exc:
            await abort_with(context, exc)

    async def ClientStreamDeadLetters(
        self, request: DeadLettersRequest, context: Context
    ) -> AsyncIterator[Batch]:
        """Stream a snapshot of the session's dead letters."""
        try:
            record = self.core.session(request.session_id)
        except AlpcrunError as exc:
            await abort_with(context, exc)
        batch = Batch(session_id=record.id)
        size = 0
        for entry in record.dead_letters:
            batch.tasks.append(entry.task)
            size += entry.task.ByteSize()
            if len(batch.tasks) >= _LETTERS_PER_BATCH or size >= _LETTER_BYTES_PER_BATCH:
                yield batch
                batch, size = Batch(session_id=record.id), 0
        if batch.tasks:
            yield batch

    # ------------------------------------------------------------------ client stream
    async def ClientStream(  # type: ignore[override]  # writes via context.write
        self, request_iterator: AsyncIterator[ClientStreamRequest], context: Context
    ) -> None:
        """Task batches up, result batches down."""
        outlet = ClientStreamOutlet()
        failure = _Failure()
        try:
            self._check_open()
            record = self.core.attach_client(_metadata(context, MD_SESSION_ID), outlet)
        except AlpcrunError as exc:
            await abort_with(context, exc)
        acks = _metadata_value(context, MD_ACKS) == "1"
        reader = asyncio.create_task(self._read_client(record, request_iterator, outlet, failure))
        try:
            await self._write_client(record, outlet, context, failure, acks=acks)
        finally:
            reader.cancel()
            self.core.detach_client(record.id, outlet)
        if failure.error is not None:
            await abort_with(context, failure.error)
        if outlet.superseded:
            await context.abort(grpc.StatusCode.ABORTED, "superseded by a newer client stream")

    async def _read_client(
        self,
        record: SessionRecord,
        requests: AsyncIterator[ClientStreamRequest],
        outlet: ClientStreamOutlet,
        failure: _Failure,
    ) -> None:
        core = self.core
        try:
            async for request in requests:
                if request.HasField("ack"):
                    core.ack_results(record, request.ack.seq)
                    continue
                if not request.HasField("batch"):
                    raise InvalidArgument("a request must carry a batch or an ack", field="batch")
                self._check_open()
                core.submit(record, request.batch)
                while not core.has_room(record) and not outlet.closed:
                    outlet.room.clear()  # backpressure: stop reading until workers drain
                    await outlet.room.wait()
        except AlpcrunError as exc:
            failure.error = exc
            outlet.wakeup.set()

    async def _write_client(
        self,
        record: SessionRecord,
        outlet: ClientStreamOutlet,
        context: Context,
        failure: _Failure,
        *,
        acks: bool,
    ) -> None:
        results = record.results
        while failure.error is None and not outlet.superseded:
            while (head := results.peek()) is not None and record.client is outlet:
                seq, batch = head
                await context.write(ClientStreamResponse(results=batch, seq=seq))
                if record.client is outlet:
                    self.core.results_written(record, seq, keep=acks)
            if outlet.closed:
                return
            outlet.wakeup.clear()
            if not results.undelivered:
                await outlet.wakeup.wait()

    # ------------------------------------------------------------------ workers
    async def WorkerUpdate(  # type: ignore[override]  # writes via context.write
        self, request_iterator: AsyncIterator[WorkerStatus], context: Context
    ) -> None:
        """Registration and heartbeats up, instructions down."""
        try:
            self._check_open()
            first = await anext(aiter(request_iterator), None)
            if first is None or not first.HasField("register"):
                raise InvalidArgument("the first message must be a registration", field="register")
        except AlpcrunError as exc:
            await abort_with(context, exc)
        outlet: QueueOutlet[WorkerInstruction] = QueueOutlet()
        worker = self.core.register_worker(first.register, outlet)
        reader = asyncio.create_task(self._read_status(worker, request_iterator, outlet))
        try:
            await context.send_initial_metadata(((MD_WORKER_ID, worker.id),))
            while (items := await outlet.next_batch()) is not None:
                for instruction in items:
                    await context.write(instruction)
        finally:
            reader.cancel()
            self.core.worker_lost(worker.id)

    async def _read_status(
        self,
        worker: WorkerRecord,
        requests: AsyncIterator[WorkerStatus],
        outlet: QueueOutlet[WorkerInstruction],
    ) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            async for status in requests:
                if status.HasField("heartbeat"):
                    draining = status.heartbeat.state == WorkerState.WORKER_STATE_DRAINING
                    self.core.heartbeat(worker.id, draining=draining)
        outlet.close()

    async def WorkerStream(  # type: ignore[override]  # writes via context.write
        self, request_iterator: AsyncIterator[Batch], context: Context
    ) -> None:
        """Task batches down, result batches up."""
        outlet: QueueOutlet[Batch] = QueueOutlet()
        failure = _Failure()
        try:
            self._check_open()
            worker_id = _metadata(context, MD_WORKER_ID)
            worker = self.core.open_worker_stream(
                worker_id, _metadata(context, MD_SESSION_ID), outlet
            )
        except AlpcrunError as exc:
            await abort_with(context, exc)
        reader = asyncio.create_task(self._read_results(worker, request_iterator, outlet, failure))
        try:
            while (items := await outlet.next_batch()) is not None:
                for batch in items:
                    await context.write(batch)
        finally:
            reader.cancel()
            self.core.worker_stream_closed(worker_id, outlet)
        if failure.error is not None:
            await abort_with(context, failure.error)

    async def _read_results(
        self,
        worker: WorkerRecord,
        requests: AsyncIterator[Batch],
        outlet: QueueOutlet[Batch],
        failure: _Failure,
    ) -> None:
        try:
            async for batch in requests:
                self.core.worker_results(worker, batch)
        except AlpcrunError as exc:
            failure.error = exc
        outlet.close()
