"""grpc.aio servicer of alpcrun.v1.Queue: decode, call the core, encode. No policy here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from alpcrun.constants import (
    MAX_ID_LENGTH,
    MAX_LABELS,
    MAX_MESSAGE_BYTES,
    MAX_NAME_LENGTH,
    MD_ACKS,
    MD_API_KEY,
    MD_SESSION_ID,
    MD_WORKER_ID,
)
from alpcrun.errors import AlpcrunError, InvalidArgument, ResourceExhausted, Unavailable
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
    WorkerRegistration,
    WorkerState,
    WorkerStatus,
)
from alpcrun.proto.status import abort_with
from alpcrun.queue_manager.attributes import check_printable
from alpcrun.queue_manager.convert import session_to_proto
from alpcrun.queue_manager.core import QueueCore
from alpcrun.queue_manager.records import SessionRecord, WorkerRecord
from alpcrun.queue_manager.streams import ClientStreamOutlet, QueueOutlet

Context = grpc.aio.ServicerContext[Any, Any]
_LETTERS_PER_BATCH = 1000
_LETTER_BYTES_PER_BATCH = 1 << 19
"""A dead-letter batch closes at this many tasks or bytes (or half the message limit),
whichever comes first; a single larger letter travels alone."""
FORWARD_HEADROOM_BYTES = 1024
"""Room a batch needs under the message limit to be forwarded: the session id and dispatch id
the queue manager adds to a task batch; the batch id, session id, seq and wrapper it adds to
a result batch."""
_FORWARD_BYTES_PER_TASK = 3
"""And per task: the attempt number set on a redelivered or failed task."""
_NO_STATE = WorkerState.WORKER_STATE_UNSPECIFIED
"""A heartbeat in this state says nothing about the session the worker serves."""


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


def _malformed(exc: DecodeError) -> InvalidArgument:
    """A streamed message that does not decode (gRPC raises it from the request iterator)."""
    return InvalidArgument(f"a message does not decode: {exc}")


def _check_registration(reg: WorkerRegistration) -> None:
    """Bound what a worker registration makes the queue manager keep (DESIGN §11)."""
    labels = reg.labels
    if len(labels) > MAX_LABELS or any(
        not k or len(k) > MAX_ID_LENGTH or len(v) > MAX_ID_LENGTH for k, v in labels.items()
    ):
        raise InvalidArgument(
            f"at most {MAX_LABELS} labels, keys 1..{MAX_ID_LENGTH} chars, values at most "
            f"{MAX_ID_LENGTH}",
            field="register.labels",
        )
    for key, value in labels.items():
        check_printable(key, "register.labels")
        check_printable(value, "register.labels")
    for name, value in (("node", reg.node), ("pod", reg.pod)):
        if len(value) > MAX_NAME_LENGTH:
            raise InvalidArgument(
                f"{len(value)} characters long; at most {MAX_NAME_LENGTH}",
                field=f"register.{name}",
            )
        check_printable(value, f"register.{name}")


def _check_forwardable(batch: Batch, limit: int, what: str) -> int:
    """A batch the queue manager could not forward without passing the message limit is refused.

    Accepted, it would fail every dispatch (a task batch) or every client stream the session
    opens (a result batch).
    """
    size = batch.ByteSize()
    if size + FORWARD_HEADROOM_BYTES + _FORWARD_BYTES_PER_TASK * len(batch.tasks) > limit:
        raise ResourceExhausted(
            f"{what} {batch.id[:MAX_ID_LENGTH]!r} of {size} bytes and {len(batch.tasks)} tasks "
            f"cannot be forwarded within the {limit}-byte message limit; leave "
            f"{FORWARD_HEADROOM_BYTES} bytes plus {_FORWARD_BYTES_PER_TASK} per task of room"
        )
    return size


class _Failure:
    """The first error raised by a stream's reader task, handed to its writer."""

    error: AlpcrunError | None = None


async def _no_sync() -> None:
    return None


class QueueService(QueueServicer):
    """The queue service over a :class:`QueueCore`.

    Args:
        core: The core.
        sync: Awaited before answering a session change (the journal's write), so a session
            a client was told about survives a crash.
        max_message_bytes: The server's message size limit (``max_message_bytes`` setting):
            task and result batches that could not be forwarded within it are refused.
    """

    def __init__(
        self,
        core: QueueCore,
        sync: Callable[[], Awaitable[None]] = _no_sync,
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.core = core
        self.accepting = True
        self._sync = sync
        self.max_message_bytes = max_message_bytes

    def _check_open(self) -> None:
        if not self.accepting:
            raise Unavailable("the queue manager is shutting down")

    def _check_journal(self) -> None:
        """Refuse a change while the journal cannot write it (it would never be acknowledged)."""
        if (failure := self.core.journal.failure) is not None:
            raise Unavailable(failure)

    async def CreateSession(self, request: CreateSessionRequest, context: Context) -> Session:
        """Create a session."""
        try:
            self._check_open()
            self._check_journal()
            record = self.core.create_session(
                request.attributes, _metadata_value(context, MD_API_KEY) or ""
            )
            await self._sync()
        except AlpcrunError as exc:
            await abort_with(context, exc)
        return session_to_proto(record)

    async def GetSession(self, request: GetSessionRequest, context: Context) -> Session:
        """Read a session."""
        try:
            return session_to_proto(self.core.session(request.session_id))
        except AlpcrunError as exc:
            await abort_with(context, exc)

    async def UpdateSession(self, request: UpdateSessionRequest, context: Context) -> Session:
        """Change a session's attributes live."""
        try:
            self._check_journal()
            record = self.core.update_session(request.session_id, request.attributes)
            await self._sync()
        except AlpcrunError as exc:
            await abort_with(context, exc)
        return session_to_proto(record)

    async def CloseSession(
        self, request: CloseSessionRequest, context: Context
    ) -> CloseSessionResponse:
        """Close a session."""
        try:
            self._check_journal()
            record, discarded = self.core.close_session(request.session_id)
            await self._sync()
        except AlpcrunError as exc:
            await abort_with(context, exc)
        return CloseSessionResponse(session=session_to_proto(record), discarded_tasks=discarded)

    async def ClientStreamDeadLetters(
        self, request: DeadLettersRequest, context: Context
    ) -> AsyncIterator[Batch]:
        """Stream a snapshot of the session's dead letters."""
        try:
            record = self.core.session(request.session_id)
        except AlpcrunError as exc:
            await abort_with(context, exc)
        budget = min(_LETTER_BYTES_PER_BATCH, self.max_message_bytes // 2)
        batch = Batch(session_id=record.id)
        size = 0
        for entry in record.dead_letters:
            letter = entry.task.ByteSize() + 8  # with its tag and length prefix
            if batch.tasks and (len(batch.tasks) >= _LETTERS_PER_BATCH or size + letter > budget):
                yield batch
                batch, size = Batch(session_id=record.id), 0
            batch.tasks.append(entry.task)
            size += letter
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
                self._check_journal()
                size = _check_forwardable(request.batch, self.max_message_bytes, "batch")
                core.submit(record, request.batch, size)
                while not core.has_room(record) and not outlet.closed:
                    outlet.room.clear()  # backpressure: stop reading until workers drain
                    await outlet.room.wait()
        except AlpcrunError as exc:
            failure.error = exc
            outlet.wakeup.set()
        except DecodeError as exc:
            failure.error = _malformed(exc)
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
            if results.peek() is None:
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
            _check_registration(first.register)
            outlet: QueueOutlet[WorkerInstruction] = QueueOutlet()
            worker = self.core.register_worker(first.register, outlet)
        except AlpcrunError as exc:
            await abort_with(context, exc)
        except DecodeError as exc:
            await abort_with(context, _malformed(exc))
        failure = _Failure()
        reader = asyncio.create_task(self._read_status(worker, request_iterator, outlet, failure))
        try:
            await context.send_initial_metadata(((MD_WORKER_ID, worker.id),))
            while (items := await outlet.next_batch()) is not None:
                for instruction in items:
                    await context.write(instruction)
        finally:
            reader.cancel()
            self.core.worker_lost(worker.id)
        if failure.error is not None:
            await abort_with(context, failure.error)

    async def _read_status(
        self,
        worker: WorkerRecord,
        requests: AsyncIterator[WorkerStatus],
        outlet: QueueOutlet[WorkerInstruction],
        failure: _Failure,
    ) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            try:
                async for status in requests:
                    if status.HasField("heartbeat"):
                        beat = status.heartbeat
                        self.core.heartbeat(
                            worker.id,
                            draining=beat.state == WorkerState.WORKER_STATE_DRAINING,
                            serving=None if beat.state == _NO_STATE else beat.session_id,
                        )
            except DecodeError as exc:
                failure.error = _malformed(exc)
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
                size = _check_forwardable(batch, self.max_message_bytes, "result batch")
                self.core.worker_results(worker, batch, size)
        except AlpcrunError as exc:
            failure.error = exc
        except DecodeError as exc:
            failure.error = _malformed(exc)
        outlet.close()
