"""Async client for shared data, used by the client SDK, the worker SDK and the node cache.

It speaks to a central cache (every call) or to a node agent (``get`` only); values travel as
chunk streams both ways and every status is mapped to an :mod:`alpcrun.errors` class. A node
agent answers a value that fits one chunk in a single unary reply (``GetSharedDataUnary``),
so a node-cache hit costs one unary round trip; larger values are streamed.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass

import grpc
import grpc.aio

from alpcrun.cache.chunks import DEFAULT_CHUNK_BYTES, collect, split
from alpcrun.constants import MD_API_KEY
from alpcrun.errors import ResourceExhausted, SessionExists, SharedDataExists, TransportError
from alpcrun.proto import (
    CentralCacheStub,
    DeleteSharedDataRequest,
    GetSharedDataRequest,
    NodeCacheStub,
    SharedDataChunk,
    SharedDataHeader,
)
from alpcrun.proto.status import from_rpc_error


@dataclass(frozen=True, slots=True)
class SharedValue:
    """A level of shared data as read from a cache."""

    session_id: str
    """The session."""
    level: int
    """The update level."""
    value: bytes
    """The value."""
    ttl_s: float
    """Seconds the entry had left when it was read."""


class SharedDataClient:
    """Shared-data calls over one channel (to a central cache, or to a node agent).

    Args:
        channel: An open grpc.aio channel; the caller closes it.
        api_key: Sent as ``api_key`` metadata on every call.
        node: The channel leads to a node agent (only :meth:`get` is served there; values
            that fit one chunk come back in one unary reply).
        chunk_bytes: Data bytes per uploaded chunk.
        max_value_bytes: Largest value accepted from the server.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        api_key: str | None = None,
        node: bool = False,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_value_bytes: int = 1 << 30,
    ) -> None:
        self._central = CentralCacheStub(channel)
        self._get_stub = NodeCacheStub(channel) if node else self._central
        # The node agent's one-message fast path; None: streams only (a central cache, or a
        # node agent too old to have it).
        self._unary = NodeCacheStub(channel).GetSharedDataUnary if node else None
        self._metadata = ((MD_API_KEY, api_key),) if api_key else ()
        self.chunk_bytes = chunk_bytes
        self.max_value_bytes = max_value_bytes

    async def set(
        self, session_id: str, value: bytes, *, level: int = 1, ttl_s: float = 0.0
    ) -> float:
        """Create the session's shared data at ``level``; returns the TTL granted (seconds)."""
        return await self._store(session_id, value, level, ttl_s, update=False)

    async def update(
        self, session_id: str, value: bytes, *, level: int, ttl_s: float = 0.0
    ) -> float:
        """Store a new, higher ``level``; returns the TTL granted (seconds)."""
        return await self._store(session_id, value, level, ttl_s, update=True)

    async def _store(
        self, session_id: str, value: bytes, level: int, ttl_s: float, *, update: bool
    ) -> float:
        header = SharedDataHeader(
            session_id=session_id,
            update_level=level,
            size_bytes=len(value),
            ttl_ms=round(ttl_s * 1000),
        )
        chunks = split(header, value, self.chunk_bytes)
        call = self._central.UpdateSharedData if update else self._central.SetSharedData
        try:
            ack = await call(chunks, metadata=self._metadata)
        except grpc.RpcError as exc:
            err = from_rpc_error(exc)
            if isinstance(err, SessionExists):  # the only ALREADY_EXISTS of this service
                err = SharedDataExists(str(err))
            raise err from None
        return ack.ttl_ms / 1000.0

    async def get(
        self, session_id: str, level: int, *, deadline_s: float | None = None
    ) -> SharedValue:
        """The exact ``level`` of the session's shared data (``deadline_s``: call timeout)."""
        if self._unary is not None:
            got = await self._get_unary(session_id, level, deadline_s)
            if got is not None:
                return got
        parts, ttl_s = await self.get_chunks(session_id, level, deadline_s=deadline_s)
        value = parts[0] if len(parts) == 1 else b"".join(parts)
        return SharedValue(session_id, level, value, ttl_s)

    async def _get_unary(
        self, session_id: str, level: int, deadline_s: float | None
    ) -> SharedValue | None:
        """One unary read from a node agent; None when the value must be streamed."""
        assert self._unary is not None
        request = GetSharedDataRequest(session_id=session_id, update_level=level)
        try:
            reply = await self._unary(request, metadata=self._metadata, timeout=deadline_s)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise from_rpc_error(exc) from None
            self._unary = None  # a node agent without the fast path: stream from now on
            return None
        if not reply.HasField("header"):
            raise TransportError("the node agent answered shared data without a header")
        header = reply.header
        self._check_size(header)
        data = reply.data  # read once: every access of a bytes field makes a new object
        if len(data) != header.size_bytes:
            return None  # larger than one chunk: the reply carried the header only
        return SharedValue(session_id, level, data, header.ttl_ms / 1000.0)

    async def get_chunks(
        self, session_id: str, level: int, *, deadline_s: float | None = None
    ) -> tuple[list[bytes], float]:
        """As :meth:`get`, but the value as the chunks it arrived in, and the TTL left."""
        request = GetSharedDataRequest(session_id=session_id, update_level=level)
        try:
            stream: AsyncIterable[SharedDataChunk] = self._get_stub.GetSharedData(
                request, metadata=self._metadata, timeout=deadline_s
            )
            header, parts = await collect(stream, self._check_size)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        return parts, header.ttl_ms / 1000.0

    async def delete(self, session_id: str) -> int:
        """Drop every level of the session's shared data; returns the levels dropped."""
        try:
            reply = await self._central.DeleteSharedData(
                DeleteSharedDataRequest(session_id=session_id), metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        return reply.deleted_levels

    def _check_size(self, header: SharedDataHeader) -> None:
        if header.size_bytes > self.max_value_bytes:
            raise ResourceExhausted(
                f"shared data of {header.size_bytes} bytes is above this client's "
                f"max_value_bytes ({self.max_value_bytes})"
            )
