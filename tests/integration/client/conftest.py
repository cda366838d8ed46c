"""A fake in-process Queue server for the client SDK tests, and client factory fixtures.

The fake answers every task with its payload reversed, fails tasks whose payload is
``b"boom"`` (and keeps them as dead letters), aborts the client stream with UNAVAILABLE on a
``b"kill"`` task, and records the metadata and batches it sees. ``withhold`` makes it read
batches without answering them; ``repeat_as`` makes it write every answer a second time, under
that batch id (``""``: the same one), as a server that runs a batch twice would.
``unavailable[name] = n`` answers the next ``n`` calls of method ``name`` with UNAVAILABLE
(after they were received, as a queue manager going down mid-call would).
"""

from __future__ import annotations

import asyncio
import time

import grpc
import grpc.aio
import pytest

from alpcrun.client import AsyncClient
from alpcrun.config import ClientSettings
from alpcrun.proto import (
    Batch,
    ClientStreamResponse,
    CloseSessionResponse,
    ErrorReason,
    QueueServicer,
    QueueType,
    Session,
    SessionState,
    Task,
    TaskError,
    UpdateSessionRequest,
    add_queue_servicer,
)
from alpcrun.proto.channel import server_options

BOOM = b"boom"
KILL = b"kill"


class _Abort(Exception):
    """Raised inside the fake's stream pump to end the call with a status."""


class _FakeSession:
    def __init__(self, info: Session) -> None:
        self.info = info
        self.closed = asyncio.Event()
        self.dead: list[Task] = []
        self.preload: list[Task] = []


class FakeQueue(QueueServicer):
    """A minimal Queue servicer: echoes payloads reversed, fails b"boom"."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.address = ""
        self.sessions: dict[str, _FakeSession] = {}
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.batches: list[tuple[float, str, int, int]] = []  # (time, batch id, tasks, priority)
        self.update_requests: list[UpdateSessionRequest] = []
        self.withhold = False
        self.repeat_as: str | None = None
        self.unavailable: dict[str, int] = {}
        self.received = 0
        self.answered = 0

    # -- helpers ----------------------------------------------------------------------

    async def _enter(self, name, context) -> dict[str, str]:
        md = {m.key: m.value for m in context.invocation_metadata() or ()}
        self.calls.append((name, md))
        if self.unavailable.get(name, 0) > 0:
            self.unavailable[name] -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "fake server going down")
        if self.api_key is not None:
            if "api_key" not in md:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no api_key")
            if md["api_key"] != self.api_key:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "wrong api_key")
        return md

    async def _session(self, session_id, context) -> _FakeSession:
        session = self.sessions.get(session_id)
        if session is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"session {session_id} not found")
        assert session is not None
        return session

    def metadata_of(self, name: str) -> list[dict[str, str]]:
        return [md for call, md in self.calls if call == name]

    def answer(self, batch: Batch, session: _FakeSession) -> ClientStreamResponse:
        response = ClientStreamResponse()
        out = response.results
        out.id = batch.id
        # Results come back in reverse order, so completion order differs from input order.
        for task in reversed(batch.tasks):
            result = out.tasks.add(id=task.id)
            if task.payload == BOOM:
                result.error.CopyFrom(
                    TaskError(
                        message="boom!",
                        type="ValueError",
                        reason=ErrorReason.ERROR_REASON_NON_RETRYABLE,
                    )
                )
                session.dead.append(result)
            else:
                result.payload = task.payload[::-1]
        self.answered += len(batch.tasks)
        return response

    # -- unary calls ------------------------------------------------------------------

    async def CreateSession(self, request, context):
        await self._enter("CreateSession", context)
        attrs = request.attributes
        resolved = type(attrs)()
        resolved.CopyFrom(attrs)
        if not resolved.HasField("priority"):
            resolved.priority = 5
        if not resolved.HasField("queue_type"):
            resolved.queue_type = QueueType.QUEUE_TYPE_PRIORITY
        if not resolved.HasField("max_attempts"):
            resolved.max_attempts = 3
        if not resolved.HasField("idle_timeout"):
            resolved.idle_timeout.seconds = 60
        info = Session(
            id=f"S{len(self.sessions) + 1:04d}",
            attributes=resolved,
            state=SessionState.SESSION_STATE_ACTIVE,
        )
        self.sessions[info.id] = _FakeSession(info)
        return info

    async def GetSession(self, request, context):
        await self._enter("GetSession", context)
        return (await self._session(request.session_id, context)).info

    async def UpdateSession(self, request, context):
        await self._enter("UpdateSession", context)
        self.update_requests.append(request)
        session = await self._session(request.session_id, context)
        current = session.info.attributes
        given = request.attributes
        if given.replace_tags:
            del current.tags[:]
        if given.replace_worker_selector:
            current.worker_selector.clear()
        current.MergeFrom(given)
        current.replace_tags = current.replace_worker_selector = False
        return session.info

    async def CloseSession(self, request, context):
        await self._enter("CloseSession", context)
        session = await self._session(request.session_id, context)
        session.info.state = SessionState.SESSION_STATE_CLOSED
        session.closed.set()
        return CloseSessionResponse(session=session.info)

    async def ClientStreamDeadLetters(self, request, context):
        await self._enter("ClientStreamDeadLetters", context)
        session = await self._session(request.session_id, context)
        for start in range(0, len(session.dead), 2):
            yield Batch(session_id=request.session_id, tasks=session.dead[start : start + 2])

    # -- the client stream ------------------------------------------------------------

    async def ClientStream(self, request_iterator, context):
        md = await self._enter("ClientStream", context)
        session = await self._session(md.get("sessionid", ""), context)
        if session.preload:
            await context.write(ClientStreamResponse(results=Batch(tasks=session.preload)))
            session.preload = []
        pump = asyncio.create_task(self._pump(request_iterator, context, session))
        closed = asyncio.create_task(session.closed.wait())
        try:
            await asyncio.wait({pump, closed}, return_when=asyncio.FIRST_COMPLETED)
            if pump.done() and not pump.cancelled() and isinstance(pump.exception(), _Abort):
                await context.abort(grpc.StatusCode.UNAVAILABLE, "fake server killed the stream")
            await closed  # a half-closed stream stays open until the session closes
        finally:
            pump.cancel()
            closed.cancel()
            await asyncio.wait({pump, closed})

    async def _pump(self, request_iterator, context, session) -> None:
        async for request in request_iterator:
            batch = request.batch
            self.batches.append((time.monotonic(), batch.id, len(batch.tasks), batch.priority))
            self.received += len(batch.tasks)
            if any(task.payload == KILL for task in batch.tasks):
                raise _Abort
            if not self.withhold:
                response = self.answer(batch, session)
                await context.write(response)
                if self.repeat_as is not None:
                    response.results.id = self.repeat_as or batch.id
                    await context.write(response)

    # Worker calls are not used by client tests.
    async def WorkerUpdate(self, request_iterator, context):  # pragma: no cover
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in the fake")

    async def WorkerStream(self, request_iterator, context):  # pragma: no cover
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in the fake")


@pytest.fixture
async def fake():
    """A running FakeQueue server on a free port."""
    servicer = FakeQueue()
    server = grpc.aio.server(options=server_options())
    add_queue_servicer(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    servicer.address = f"127.0.0.1:{port}"
    try:
        yield servicer
    finally:
        await server.stop(None)


@pytest.fixture
async def make_client(fake):
    """Factory of AsyncClients connected to the fake server; closes them afterwards."""
    clients: list[AsyncClient] = []

    def make(*, api_key: str | None = "k", **settings) -> AsyncClient:
        client = AsyncClient(
            api_key=api_key,
            settings=ClientSettings(queue_manager=fake.address, **settings),
        )
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
async def client(make_client) -> AsyncClient:
    """An AsyncClient with default settings, connected to the fake server."""
    return make_client()
