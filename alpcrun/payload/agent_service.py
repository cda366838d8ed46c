"""grpc.aio servicer of alpcrun.v1.PayloadAgent: the payload data path for other nodes.

Readers on another node stream a byte range of a committed payload in chunks; producers on
another node stream an allocated payload's bytes in chunks and may commit it with the last.
Readers on the same node use the agent's Unix socket instead and copy nothing
(:mod:`alpcrun.payload.handoff`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc.aio

from alpcrun.constants import MAX_ID_LENGTH
from alpcrun.errors import AlpcrunError, InvalidArgument
from alpcrun.payload.agent import PayloadAgent
from alpcrun.proto import (
    PayloadAgentServicer,
    PayloadChunk,
    ReadPayloadRequest,
    WritePayloadResponse,
)
from alpcrun.proto.status import abort_with

Context = grpc.aio.ServicerContext[Any, Any]
CHUNK_BYTES = 1 << 20
"""Bytes of payload data per streamed message."""


class PayloadAgentService(PayloadAgentServicer):
    """Remote reads and writes of the payloads one agent holds.

    Args:
        agent: The node's payload agent.
        chunk_bytes: Data bytes per message read (and the most a written chunk may carry).
    """

    def __init__(self, agent: PayloadAgent, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.agent = agent
        self.chunk_bytes = chunk_bytes

    async def ReadPayload(
        self, request: ReadPayloadRequest, context: Context
    ) -> AsyncIterator[PayloadChunk]:
        """``[offset, offset + length)`` of a committed payload, in chunks."""
        try:
            pid, sid = request.ref.payload_id, request.session_id
            size = await self.agent.size(pid, sid)
            length = request.length or max(0, size - request.offset)
            end = request.offset + length
            offset = request.offset
            first = True
            while first or offset < end:
                n = min(self.chunk_bytes, end - offset)
                data = await self.agent.read(pid, sid, offset, n)
                yield PayloadChunk(payload_id=pid, offset=offset, data=data)
                offset += n
                first = False
        except AlpcrunError as exc:
            await abort_with(context, exc)

    async def WritePayload(
        self, request_iterator: AsyncIterator[PayloadChunk], context: Context
    ) -> WritePayloadResponse:
        """Write the chunks of an allocated payload; commit it if the last chunk asks."""
        try:
            pid = sid = ""
            written = 0
            reply = WritePayloadResponse()
            async for chunk in request_iterator:
                if not pid:
                    pid, sid = chunk.payload_id, chunk.session_id
                    if not sid or len(sid) > MAX_ID_LENGTH:
                        raise InvalidArgument(
                            "the first chunk names the session", field="session_id"
                        )
                elif chunk.payload_id and chunk.payload_id != pid:
                    raise InvalidArgument("one payload per stream", field="payload_id")
                if len(chunk.data) > self.chunk_bytes:
                    raise InvalidArgument(
                        f"a chunk carries at most {self.chunk_bytes} bytes", field="data"
                    )
                if chunk.data:
                    await self.agent.write(pid, sid, chunk.offset, chunk.data)
                    written += len(chunk.data)
                if chunk.commit:
                    reply.committed.CopyFrom(await self.agent.commit(pid, sid))
            if not pid:
                raise InvalidArgument("no chunk was sent", field="payload_id")
            reply.written_bytes = written
            return reply
        except AlpcrunError as exc:
            await abort_with(context, exc)


__all__ = ["CHUNK_BYTES", "PayloadAgentService"]
