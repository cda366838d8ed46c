"""The central cache's gRPC servicer: decode, call the :class:`SharedDataStore`, encode.

With :class:`~alpcrun.cache.sessions.OpenSessions` (a queue manager configured), uploads are
stored only for sessions the queue manager reports open.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc.aio
from google.protobuf.message import DecodeError

from alpcrun.cache.chunks import DEFAULT_CHUNK_BYTES, join, split
from alpcrun.cache.sessions import OpenSessions
from alpcrun.cache.ttl import SharedDataStore, SharedEntry, check_session_id
from alpcrun.errors import AlpcrunError, InvalidArgument, Unavailable
from alpcrun.proto import (
    CentralCacheServicer,
    DeleteSharedDataRequest,
    DeleteSharedDataResponse,
    GetSharedDataRequest,
    SharedDataAck,
    SharedDataChunk,
    SharedDataHeader,
)
from alpcrun.proto.status import abort_with

log = logging.getLogger("alpcrun.cache.central")
Context = grpc.aio.ServicerContext[Any, Any]


def entry_chunks(
    entry: SharedEntry, now: float, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> AsyncIterator[SharedDataChunk]:
    """The chunks of a stored entry, the header giving the TTL it has left."""
    header = SharedDataHeader(
        session_id=entry.session_id,
        update_level=entry.level,
        size_bytes=len(entry.value),
        ttl_ms=max(1, int(entry.ttl_left(now) * 1000)),
    )

    async def gen() -> AsyncIterator[SharedDataChunk]:
        for chunk in split(header, entry.value, chunk_bytes):
            yield chunk

    return gen()


class CentralCacheService(CentralCacheServicer):
    """Set/Update/Get/Delete of session shared data over a :class:`SharedDataStore`.

    Args:
        store: Where values live.
        chunk_bytes: Data bytes per streamed chunk.
        sessions: When given, uploads for sessions it does not find open are refused.
    """

    def __init__(
        self,
        store: SharedDataStore,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        sessions: OpenSessions | None = None,
    ) -> None:
        self.store = store
        self.chunk_bytes = chunk_bytes
        self.sessions = sessions
        self.accepting = True
        self.bytes_sent = 0
        """Value bytes streamed to readers (node caches and SDK fallbacks)."""

    async def _store(
        self, stream: AsyncIterator[SharedDataChunk], context: Context, *, update: bool
    ) -> SharedDataAck:
        reserved = 0

        async def check(header: SharedDataHeader) -> None:
            nonlocal reserved
            if not self.accepting:
                raise Unavailable("the central cache is shutting down")
            check_session_id(header.session_id, "header.session_id")  # before asking anyone
            if self.sessions is not None and header.session_id:
                await self.sessions.check(header.session_id)  # before any byte is reserved
            self.store.check_store(header.session_id, header.update_level, update=update)
            self.store.ttl_seconds(header.ttl_ms)
            self.store.reserve(header.size_bytes)
            reserved = header.size_bytes

        try:
            header, value = await join(stream, check)
            ttl_s = self.store.ttl_seconds(header.ttl_ms)
            entry = self.store.store(
                header.session_id, header.update_level, value, ttl_s, update=update
            )
            reserved = 0  # store() used the reservation up
        except AlpcrunError as exc:
            await abort_with(context, exc)
        except DecodeError as exc:
            await abort_with(context, InvalidArgument(f"a chunk does not decode: {exc}"))
        finally:
            if reserved:  # the stream was cut or refused half way: nothing was stored
                self.store.release(reserved)
        log.debug("stored %s level %d (%d bytes)", entry.session_id, entry.level, len(value))
        return SharedDataAck(
            session_id=entry.session_id,
            update_level=entry.level,
            size_bytes=len(entry.value),
            ttl_ms=int(ttl_s * 1000),
        )

    async def SetSharedData(
        self, request_iterator: AsyncIterator[SharedDataChunk], context: Context
    ) -> SharedDataAck:
        """Create the session's shared data."""
        return await self._store(request_iterator, context, update=False)

    async def UpdateSharedData(
        self, request_iterator: AsyncIterator[SharedDataChunk], context: Context
    ) -> SharedDataAck:
        """Store a new, higher level."""
        return await self._store(request_iterator, context, update=True)

    async def GetSharedData(
        self, request: GetSharedDataRequest, context: Context
    ) -> AsyncIterator[SharedDataChunk]:
        """Stream the exact level asked for."""
        try:
            entry = self.store.get(request.session_id, request.update_level)
        except AlpcrunError as exc:
            await abort_with(context, exc)
        async for chunk in entry_chunks(entry, self.store.now(), self.chunk_bytes):
            self.bytes_sent += len(chunk.data)
            yield chunk

    async def DeleteSharedData(
        self, request: DeleteSharedDataRequest, context: Context
    ) -> DeleteSharedDataResponse:
        """Drop every level of the session."""
        levels, freed = self.store.delete(request.session_id)
        if levels:
            log.info(
                "deleted shared data of %s (%d levels, %d bytes)", request.session_id, levels, freed
            )
        return DeleteSharedDataResponse(deleted_levels=levels, deleted_bytes=freed)
