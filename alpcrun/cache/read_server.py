"""The node read path, server side: shared-data reads over a plain framed protocol.

A worker on the node asks for (session, level) in a ``NodeReadRequest`` frame and gets a
``NodeReadReply`` frame followed by the value's raw bytes (wire format in
``protos/alpcrun/v1/cache.proto`` and docs/shared-data.md). It is the same read as the gRPC
``NodeCache`` service — the same LRU, single-flight pull-through, API key, status codes and
counters — without HTTP/2 and gRPC's threads, so a hit costs about a fifth of a gRPC call.

Every connection is bounded: a request frame longer than :data:`MAX_REQUEST_FRAME` or one
that does not decode gets an error reply (id 0) and the connection is closed; at most
:data:`MAX_PENDING` misses wait for their fetch per connection; while the client does not
read its replies, reading requests pauses and fetched answers wait, so one value at most
sits in the write buffer beyond its limit and a client cannot make the server buffer without
bound. So are the connections (:class:`ReadLimits`): one on which nothing happens for
``idle_timeout_s`` (no whole request arrives, no answer is written or taken by the client,
no fetch is pending; a partly sent request does not count) is closed, and at
``max_connections`` a new connection closes the one idle longest, or is itself closed when
every connection is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from alpcrun._clock import Clock
from alpcrun.cache.lru import NodeEntry
from alpcrun.cache.node import NodeCache, entry_header
from alpcrun.constants import MD_ERROR_FIELD
from alpcrun.errors import AlpcrunError, ConfigError, InvalidArgument
from alpcrun.proto import NodeReadReply, NodeReadRequest
from alpcrun.proto.auth import ApiKeys
from alpcrun.proto.frames import FrameBuffer, frame
from alpcrun.proto.status import to_status

log = logging.getLogger("alpcrun.cache.read")

MAX_REQUEST_FRAME = 64 * 1024
"""Longest request frame accepted (a request is a key, a session id and a level)."""
MAX_PENDING = 64
"""Misses per connection waiting for their fetch before the server stops reading requests."""
JOIN_BYTES = 64 * 1024
"""Answers up to this size are joined and written at once (one send); larger ones piece by
piece, so a value's chunks are never copied."""


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """Bounds on the read path's connections.

    The node agent's settings ``read_idle_timeout`` and ``read_max_connections``.
    """

    idle_timeout_s: float = 60.0
    """A connection on which nothing happens for this long is closed."""
    max_connections: int = 1024
    """Connections open at once; a new one beyond closes the one idle longest."""


@dataclass(frozen=True, slots=True)
class ReadPathStatistics:
    """Counters and gauges of the read path."""

    requests: int
    """Requests answered (hits, misses and errors)."""
    connections: int
    """Connections open now."""
    closed_idle: int
    """Connections closed because nothing happened on them for ``idle_timeout_s``, or
    because a new connection needed the room at ``max_connections``."""
    refused: int
    """Connections closed at once: ``max_connections`` were open and none was idle."""


Answer = list[bytes]
"""What to write for one request: the reply frame, then the value's chunks (if any)."""


class NodeReadService:
    """Answers ``NodeReadRequest`` messages from a :class:`NodeCache` (no I/O here)."""

    def __init__(self, cache: NodeCache, clock: Clock, keys: ApiKeys | None) -> None:
        self.cache = cache
        self._clock = clock
        self._keys = keys
        self.requests = 0
        """Requests answered (hits, misses and errors)."""
        self.connections = 0
        """Connections currently open."""
        self.closed_idle = 0
        """Connections closed idle (timed out, or making room for a new one)."""
        self.refused = 0
        """Connections refused: the limit was reached and none was idle."""

    def statistics(self) -> ReadPathStatistics:
        """A snapshot of the counters."""
        return ReadPathStatistics(self.requests, self.connections, self.closed_idle, self.refused)

    def answer_now(self, request: NodeReadRequest) -> Answer | None:
        """A hit or an error, answered at once; None for a miss (then :meth:`answer_fetched`)."""
        try:
            if self._keys is not None:
                self._keys.check(request.api_key)
            entry = self.cache.cached(request.get.session_id, request.get.update_level)
        except AlpcrunError as exc:
            return self.error(request.id, exc)
        return None if entry is None else self._value(request, entry)

    async def answer_fetched(self, request: NodeReadRequest) -> Answer:
        """The answer to a miss: the value fetched from the central cache, or the error."""
        try:
            entry = await self.cache.fetch(request.get.session_id, request.get.update_level)
        except AlpcrunError as exc:
            return self.error(request.id, exc)
        return self._value(request, entry)

    def _value(self, request: NodeReadRequest, entry: NodeEntry) -> Answer:
        self.requests += 1
        self.cache.bytes_served += entry.size
        header = entry_header(request.get, entry, self._clock.monotonic())
        reply = NodeReadReply(id=request.id, header=header)
        return [frame(reply.SerializeToString()), *entry.chunks]

    def error(self, request_id: int, exc: AlpcrunError) -> Answer:
        """The error reply for ``exc`` (status code as the gRPC service would send it)."""
        self.requests += 1
        code, message, trailers = to_status(exc)
        field = next((value for key, value in trailers if key == MD_ERROR_FIELD), "")
        reply = NodeReadReply(id=request_id, code=code.value[0], message=message, field=field)
        return [frame(reply.SerializeToString())]


class _Connections:
    """The open connections of a server, within its :class:`ReadLimits`."""

    def __init__(self, service: NodeReadService, limits: ReadLimits) -> None:
        self.service = service
        self.limits = limits
        self.open: set[_Connection] = set()

    def admit(self, conn: _Connection) -> bool:
        """Take ``conn`` in, closing the connection idle longest to make room if needed.

        False (``conn`` must be closed) when the limit is reached and none is idle.
        """
        if len(self.open) >= self.limits.max_connections:
            idle = [c for c in self.open if c.idle]
            if not idle:
                self.service.refused += 1
                return False
            self.close_idle(min(idle, key=lambda c: c.last_active))
        self.open.add(conn)
        self.service.connections += 1
        return True

    def close_idle(self, conn: _Connection) -> None:
        """Close ``conn`` for being idle (what it still buffers is dropped)."""
        self.service.closed_idle += 1
        self.release(conn)
        conn.abort()

    def release(self, conn: _Connection) -> None:
        """Forget ``conn`` (closed); a connection never admitted, or forgotten, is ignored."""
        if conn in self.open:
            self.open.discard(conn)
            self.service.connections -= 1


class _Connection(asyncio.Protocol):
    """One client connection: requests parsed as they arrive, replies written as ready."""

    def __init__(self, connections: _Connections) -> None:
        self._connections = connections
        self._service = connections.service
        self._buffer = FrameBuffer(MAX_REQUEST_FRAME)
        self._transport: asyncio.Transport | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._fetching = 0  # pending answers still being fetched (not waiting to be written)
        self._read_paused = False
        self._writable = asyncio.Event()  # set while the transport takes more writes
        self._writable.set()
        self._loop = asyncio.get_running_loop()
        self.last_active = self._loop.time()
        """Loop time of the last request read, answer written or write taken by the client."""
        self._timer: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> bool:
        """Nothing pending: no fetch waits and every answer has been taken by the client."""
        t = self._transport
        return not self._pending and (t is None or t.get_write_buffer_size() == 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not self._connections.admit(self):
            self.abort()
            return
        self._arm(self._connections.limits.idle_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.release(self)
        for task in self._pending:
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
        self._transport = None

    def close(self) -> None:
        """Close the connection (replies already written are flushed first)."""
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close the connection at once (what the transport buffers is dropped)."""
        if self._transport is not None:
            self._transport.abort()

    def _arm(self, delay: float) -> None:
        self._timer = self._loop.call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        """Close the connection if nothing happened on it for the idle timeout; else re-arm."""
        timeout = self._connections.limits.idle_timeout_s
        quiet = self._loop.time() - self.last_active
        if self._fetching:  # a fetch is bounded by its own timeout; its answer is activity
            self._arm(timeout)
        elif quiet >= timeout:
            self._connections.close_idle(self)
        else:
            self._arm(timeout - quiet)

    def data_received(self, data: bytes) -> None:
        self._buffer.feed(data)
        self._process()

    def _process(self) -> None:
        """Answer every whole request buffered, unless reading is paused."""
        while not self._read_paused and self._transport is not None:
            try:
                body = self._buffer.frame()
                if body is None:
                    return
                try:
                    request = NodeReadRequest.FromString(body)
                except DecodeError:
                    raise InvalidArgument("a request frame is not a NodeReadRequest") from None
            except AlpcrunError as exc:  # the stream cannot be trusted any more
                self._write(self._service.error(0, exc))
                self._transport.close()
                return
            self.last_active = self._loop.time()
            answer = self._service.answer_now(request)
            if answer is not None:
                self._write(answer)
            else:
                task = asyncio.ensure_future(self._answer_later(request))
                self._pending.add(task)
                task.add_done_callback(self._fetched)
                self._throttle()

    def _write(self, answer: Answer) -> None:
        """Write an answer with ``write`` only, never ``writelines``.

        ``writelines`` of CPython 3.12.0-3.12.8 and 3.13.0-3.13.1 never pauses the protocol
        (CPython gh-127655): ``pause_writing`` would not come and flow control would not
        hold. Small answers are joined (one send); a large value's chunks are written as
        they are, not copied.
        """
        assert self._transport is not None
        if len(answer) > 1 and sum(map(len, answer)) <= JOIN_BYTES:
            self._transport.write(b"".join(answer))
        else:
            for piece in answer:
                self._transport.write(piece)
        self.last_active = self._loop.time()

    async def _answer_later(self, request: NodeReadRequest) -> None:
        self._fetching += 1
        try:
            answer = await self._service.answer_fetched(request)
        finally:
            self._fetching -= 1
        # Fetched answers wait for the client to read, so at most one value at a time sits
        # in the write buffer above its limit however many misses completed together.
        while not self._writable.is_set():
            await self._writable.wait()
        if self._transport is not None and not self._transport.is_closing():
            self._write(answer)

    def _fetched(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("node read failed unexpectedly", exc_info=exc)
            self.abort()
            return
        self._throttle()

    def pause_writing(self) -> None:
        self._writable.clear()
        self._throttle()

    def resume_writing(self) -> None:
        self.last_active = self._loop.time()  # the client is reading
        self._writable.set()
        self._throttle()

    def _throttle(self) -> None:
        """Stop reading while the client does not read or too many misses wait; else read."""
        if self._transport is None:
            return
        pause = not self._writable.is_set() or len(self._pending) >= MAX_PENDING
        if pause and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()
        elif not pause and self._read_paused:
            self._read_paused = False
            self._transport.resume_reading()
            self._process()  # requests that arrived before the pause


class NodeReadServer:
    """Listens for node-read connections on a TCP port and/or a Unix socket.

    Args:
        service: What answers the requests.
        host: TCP host to bind (with ``port``).
        port: TCP port (0: a free one); None: no TCP listener.
        socket_path: Unix socket path; None: none.
        limits: Idle timeout and most connections (both listeners together).
    """

    def __init__(
        self,
        service: NodeReadService,
        *,
        host: str,
        port: int | None,
        socket_path: str | None,
        limits: ReadLimits | None = None,
    ) -> None:
        self.service = service
        self._host = host
        self._port = port
        self._socket_path = socket_path
        self._servers: list[asyncio.Server] = []
        self._connections = _Connections(service, limits or ReadLimits())
        self._unix_bound = False
        self.port: int | None = None
        """The TCP port bound (None: no TCP listener)."""

    def _factory(self) -> Callable[[], _Connection]:
        return lambda: _Connection(self._connections)

    async def start(self) -> None:
        """Bind and listen."""
        loop = asyncio.get_running_loop()
        where = f"{self._host}:{self._port}"
        try:
            if self._port is not None:
                tcp = await loop.create_server(self._factory(), self._host, self._port)
                self._servers.append(tcp)
                self.port = int(tcp.sockets[0].getsockname()[1])
            if self._socket_path is not None:
                where = f"unix:{self._socket_path}"
                unix = await loop.create_unix_server(self._factory(), self._socket_path)
                self._servers.append(unix)
                self._unix_bound = True
        except OSError as exc:
            await self.stop()
            raise ConfigError(f"the node read path cannot listen on {where}: {exc}") from exc

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        for server in self._servers:
            server.close()
        for conn in list(self._connections.open):
            if conn.idle:
                conn.close()
            else:  # a client that does not read would hold the close (and stop) forever
                conn.abort()
        for server in self._servers:
            await server.wait_closed()
        if self._unix_bound and self._socket_path is not None:
            self._unix_bound = False
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(self._socket_path).st_mode):  # still a socket
                    os.unlink(self._socket_path)
        self._servers = []

    def __repr__(self) -> str:
        return f"NodeReadServer(port={self.port}, socket={self._socket_path!r})"


__all__ = [
    "MAX_PENDING",
    "MAX_REQUEST_FRAME",
    "NodeReadServer",
    "NodeReadService",
    "ReadLimits",
    "ReadPathStatistics",
]
