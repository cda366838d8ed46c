"""The node read path, client side: shared-data reads from the node agent without gRPC.

:class:`NodeReadClient` keeps one connection to a node agent's read path (``host:port`` or
``unix:PATH``), opened on first use and again after it breaks, and sends every read on it;
replies are matched to their requests by id, so concurrent reads share the connection. The
wire format is in ``protos/alpcrun/v1/cache.proto`` (``NodeReadRequest``/``NodeReadReply``)
and docs/shared-data.md. Errors are the same :mod:`alpcrun.errors` classes the gRPC client
raises; a connection that cannot be made or breaks is :class:`~alpcrun.errors.Unavailable`.
"""

from __future__ import annotations

import asyncio
import itertools

from google.protobuf.message import DecodeError

from alpcrun.addresses import parse_address
from alpcrun.cache.client import SharedValue
from alpcrun.cache.ttl import MAX_LEVEL
from alpcrun.errors import (
    AlpcrunError,
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    TransportError,
    Unavailable,
)
from alpcrun.proto import GetSharedDataRequest, NodeReadReply, NodeReadRequest
from alpcrun.proto.frames import FrameBuffer, frame
from alpcrun.proto.status import from_status, status_code

MAX_REPLY_FRAME = 64 * 1024
"""Longest reply frame accepted (the value's bytes follow the frame and are not counted)."""

Reply = tuple[NodeReadReply, bytes]


class _Connection(asyncio.Protocol):
    """Replies parsed as they arrive and handed to the reads waiting for them."""

    def __init__(self, max_value_bytes: int) -> None:
        self.max_value_bytes = max_value_bytes
        self.waiting: dict[int, asyncio.Future[Reply]] = {}
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = FrameBuffer(MAX_REPLY_FRAME)
        self._current: NodeReadReply | None = None  # the reply whose value is arriving
        self._skip = 0  # bytes of a refused value still to drop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail_all(Unavailable(f"connection to the node read path lost: {exc or 'closed'}"))

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._buffer.feed(data)
        try:
            self._parse()
        except (AlpcrunError, DecodeError) as exc:  # the stream cannot be trusted any more
            self._fail_all(TransportError(f"bad reply from the node read path: {exc}"))
            self.close()

    def _parse(self) -> None:
        while True:
            if self._skip:
                self._skip -= self._buffer.discard(self._skip)
                if self._skip:
                    return
            if self._current is None:
                body = self._buffer.frame()
                if body is None:
                    return
                reply = NodeReadReply.FromString(body)
                if reply.code != 0:
                    if reply.id == 0:  # about the connection: the server closes it
                        self._fail_all(_error(reply))
                    self._deliver(reply, b"")
                    continue
                size = reply.header.size_bytes
                if size > self.max_value_bytes:  # refused; its bytes are dropped, not kept
                    self._refuse(reply.id, size)
                    continue
                self._current = reply
            value = self._buffer.raw(self._current.header.size_bytes)
            if value is None:
                return
            self._deliver(self._current, value)
            self._current = None

    def _deliver(self, reply: NodeReadReply, value: bytes) -> None:
        future = self.waiting.pop(reply.id, None)
        if future is not None and not future.done():  # else: its reader gave up waiting
            future.set_result((reply, value))

    def _refuse(self, request_id: int, size: int) -> None:
        self._skip = size
        future = self.waiting.pop(request_id, None)
        if future is not None and not future.done():
            future.set_exception(
                ResourceExhausted(
                    f"a value of {size} bytes is larger than max_value_bytes "
                    f"({self.max_value_bytes})"
                )
            )

    def _fail_all(self, exc: AlpcrunError) -> None:
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(exc)


def _error(reply: NodeReadReply) -> AlpcrunError:
    code = status_code(reply.code)
    return from_status(code, reply.message or code.name, reply.field)


class NodeReadClient:
    """Shared-data reads from one node agent's read path.

    Args:
        address: ``host:port`` (the node agent's ``read_port``) or ``unix:PATH``.
        api_key: Sent with every read.
        max_value_bytes: Largest value accepted.
        connect_timeout_s: Longest a connection attempt may take.
    """

    def __init__(
        self,
        address: str,
        *,
        api_key: str | None = None,
        max_value_bytes: int = 1 << 30,
        connect_timeout_s: float = 2.0,
    ) -> None:
        self.address = address
        self._target = parse_address(address)
        self._api_key = api_key or ""
        self.max_value_bytes = max_value_bytes
        self.connect_timeout_s = connect_timeout_s
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)

    @property
    def connected(self) -> bool:
        """Whether a connection is open now."""
        return self._conn is not None and not self._conn.closed

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        async with self._lock:
            if self._conn is not None and not self._conn.closed:
                return self._conn
            loop = asyncio.get_running_loop()
            target = self._target
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    if isinstance(target, str):
                        _, conn = await loop.create_unix_connection(
                            lambda: _Connection(self.max_value_bytes), target
                        )
                    else:
                        _, conn = await loop.create_connection(
                            lambda: _Connection(self.max_value_bytes), *target
                        )
            except (OSError, TimeoutError) as exc:
                raise Unavailable(
                    f"node read path {self.address} unreachable: {exc or 'timed out'}"
                ) from None
            self._conn = conn
            return conn

    async def get(
        self, session_id: str, level: int, *, deadline_s: float | None = None
    ) -> SharedValue:
        """The exact ``level`` of the session's shared data (``deadline_s``: time limit)."""
        if not 1 <= level <= MAX_LEVEL:
            raise InvalidArgument(
                f"update_level must be between 1 and {MAX_LEVEL}", field="update_level"
            )
        conn = await self._connection()
        request_id = next(self._ids)
        request = NodeReadRequest(
            id=request_id,
            api_key=self._api_key,
            get=GetSharedDataRequest(session_id=session_id, update_level=level),
        )
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        conn.waiting[request_id] = future
        try:
            conn.send(frame(request.SerializeToString()))
            if deadline_s is None:
                reply, value = await future
            else:
                async with asyncio.timeout(deadline_s):
                    reply, value = await future
        except TimeoutError:
            raise DeadlineExceeded(
                f"no reply from the node read path within {deadline_s} s"
            ) from None
        finally:
            conn.waiting.pop(request_id, None)
        if reply.code != 0:
            raise _error(reply)
        return SharedValue(session_id, level, value, reply.header.ttl_ms / 1000.0)

    async def aclose(self) -> None:
        """Close the connection (reads in flight fail with Unavailable)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


__all__ = ["MAX_REPLY_FRAME", "NodeReadClient", "parse_address"]
