"""The same-node handoff: payload descriptors passed over the node agent's Unix socket.

A producer or reader on the node asks the agent for a payload's descriptor and gets it as
``SCM_RIGHTS`` ancillary data: it then maps the payload itself, so bytes are never copied
through the agent or a socket. Wire format (``PayloadFdRequest`` / ``PayloadFdReply`` in
``payload.proto``): 4-byte big-endian length frames (:mod:`alpcrun.proto.frames`); one reply
per request, in order, the descriptor riding on the reply's bytes when ``code`` is 0.

Bounds: request frames of at most :data:`MAX_REQUEST_FRAME` bytes (a longer or undecodable
one ends the connection after an id-0 error reply), at most ``max_connections`` clients at
once, each served one request at a time.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import os
import socket
import stat
import threading
from pathlib import Path

from google.protobuf.message import DecodeError

from alpcrun.errors import (
    AlpcrunError,
    ConfigError,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from alpcrun.payload.agent import PayloadAgent
from alpcrun.payload.convert import tier_to_proto
from alpcrun.proto import PayloadFdReply, PayloadFdRequest
from alpcrun.proto.auth import ApiKeys
from alpcrun.proto.frames import HEADER_BYTES, FrameBuffer, frame
from alpcrun.proto.status import from_status, status_code, to_status

log = logging.getLogger("alpcrun.payload.handoff")
MAX_REQUEST_FRAME = 4096
"""Longest request frame accepted."""
MAX_REPLY_FRAME = 64 * 1024
"""Longest reply frame a client accepts."""
_OPEN_READ = PayloadFdRequest.OP_OPEN_READ
_OPEN_WRITE = PayloadFdRequest.OP_OPEN_WRITE
_COMMIT = PayloadFdRequest.OP_COMMIT


def _error_reply(request_id: int, exc: AlpcrunError) -> PayloadFdReply:
    code, message, trailers = to_status(exc)
    field = dict(trailers).get("alpcrun-field", "")
    return PayloadFdReply(id=request_id, code=code.value[0], message=message, field=field)


async def _send(loop: asyncio.AbstractEventLoop, conn: socket.socket, data: bytes, fd: int) -> None:
    """Send ``data`` (with ``fd`` as SCM_RIGHTS when not -1), waiting while the socket is full."""
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))] if fd >= 0 else []
    view = memoryview(data)
    while view:
        try:
            sent = conn.sendmsg([view], ancillary)
        except BlockingIOError:
            writable = loop.create_future()
            loop.add_writer(conn.fileno(), writable.set_result, None)
            try:
                await writable
            finally:
                loop.remove_writer(conn.fileno())
            continue
        view, ancillary = view[sent:], []  # the descriptor went with the first bytes


class HandoffServer:
    """Serves descriptors of one agent's payloads on a Unix socket.

    Args:
        agent: The node's payload agent.
        path: The socket's path (an existing socket there is replaced; another file is not).
        api_keys: Keys a request must carry (None: no check).
        max_connections: Clients served at once; more are refused on connect.
    """

    def __init__(
        self,
        agent: PayloadAgent,
        path: Path,
        *,
        api_keys: ApiKeys | None = None,
        max_connections: int = 1024,
    ) -> None:
        self.agent = agent
        self.path = path
        self._keys = api_keys
        self.max_connections = max_connections
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._conns: set[socket.socket] = set()
        self.requests = 0
        """Requests answered (metrics)."""

    async def start(self) -> None:
        """Bind the socket (mode 0660) and start accepting."""
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise ConfigError(f"{str(self.path)!r} exists and is not a socket")
            self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.setblocking(False)
        listener.bind(str(self.path))
        os.chmod(self.path, 0o660)
        listener.listen(128)
        self._listener = listener
        self._accepting = asyncio.create_task(self._accept(listener))

    async def stop(self) -> None:
        """Stop accepting, end every connection, remove the socket."""
        tasks = [t for t in (self._accepting, *self._clients) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for conn in self._conns:  # those whose task was cancelled before it began
            conn.close()
        self._conns.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            self.path.unlink(missing_ok=True)

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(listener)
            if len(self._clients) >= self.max_connections:
                conn.close()
                continue
            self._conns.add(conn)
            task = asyncio.create_task(self._serve(conn))
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        buffer = FrameBuffer(MAX_REQUEST_FRAME)
        with contextlib.closing(conn):
            conn.setblocking(False)
            while data := await loop.sock_recv(conn, 65536):
                buffer.feed(data)
                try:
                    while (raw := buffer.frame()) is not None:
                        request = PayloadFdRequest.FromString(raw)
                        reply, fd = await self._answer(request)
                        try:
                            await _send(loop, conn, frame(reply.SerializeToString()), fd)
                        finally:
                            if fd >= 0:
                                os.close(fd)
                except (ResourceExhausted, DecodeError) as exc:
                    error = exc if isinstance(exc, AlpcrunError) else InvalidArgument(str(exc))
                    await _send(loop, conn, frame(_error_reply(0, error).SerializeToString()), -1)
                    break
        self._conns.discard(conn)

    def _check_key(self, key: str) -> None:
        if self._keys is None:
            return
        if not key:
            raise Unauthenticated("missing api_key")
        if not self._keys.accepts(key):
            raise PermissionDenied("invalid api_key")

    async def _answer(self, request: PayloadFdRequest) -> tuple[PayloadFdReply, int]:
        """The reply to one request, and the descriptor to pass with it (-1 for none)."""
        self.requests += 1
        try:
            self._check_key(request.api_key)
            pid, sid = request.payload_id, request.session_id
            if request.op == _OPEN_READ:
                fd, held = await self.agent.readonly_fd(pid, sid)
            elif request.op == _OPEN_WRITE:
                fd, held = await self.agent.writable_fd(pid, sid)
            elif request.op == _COMMIT:
                info = await self.agent.commit(pid, sid)
                return PayloadFdReply(
                    id=request.id, size_bytes=info.ref.size_bytes, version=info.ref.version
                ), -1
            else:
                raise InvalidArgument("unknown operation", field="op")
        except AlpcrunError as exc:
            return _error_reply(request.id, exc), -1
        reply = PayloadFdReply(id=request.id, size_bytes=held.size, tier=tier_to_proto(held.tier))
        return reply, fd


class HandoffClient:
    """A connection to a node agent's handoff socket (blocking; safe to share across threads).

    Args:
        path: The agent's socket.
        api_key: Sent with every request (None: none).
        timeout_s: Longest wait for one answer.
    """

    def __init__(self, path: str, api_key: str | None = None, *, timeout_s: float = 30.0) -> None:
        self.path = path
        self._key = api_key or ""
        self._timeout = timeout_s
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._ids = 0

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._timeout)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def request(
        self,
        op: PayloadFdRequest.Op.ValueType,
        payload_id: str,
        session_id: str,
        lease_id: str = "",
    ) -> tuple[PayloadFdReply, int]:
        """Send one request; its reply and descriptor (-1 when none), or the error it carried.

        Raises:
            AlpcrunError: The agent refused (the status code's error, the field named).
            OSError: The socket could not be reached.
        """
        with self._lock:
            self._ids += 1
            req = PayloadFdRequest(
                id=self._ids,
                api_key=self._key,
                op=op,
                payload_id=payload_id,
                session_id=session_id,
                lease_id=lease_id,
            )
            sock = self._connect()
            try:
                sock.sendall(frame(req.SerializeToString()))
                reply, fd = _receive(sock)
            except OSError:
                self._sock = None
                sock.close()
                raise
        if reply.code != 0:
            if fd >= 0:
                os.close(fd)
            raise from_status(status_code(reply.code), reply.message, reply.field)
        return reply, fd


def _receive(sock: socket.socket) -> tuple[PayloadFdReply, int]:
    """One reply frame and the descriptor that came with it (-1 if none)."""
    buffer = FrameBuffer(MAX_REPLY_FRAME)
    fd = -1
    while (raw := buffer.frame()) is None:
        data, fds, _, _ = socket.recv_fds(sock, MAX_REPLY_FRAME + HEADER_BYTES, 1)
        if not data:
            raise ConnectionResetError("the node agent closed the handoff socket")
        if fds:
            fd = fds[0]
        buffer.feed(data)
    return PayloadFdReply.FromString(raw), fd


__all__ = ["MAX_REQUEST_FRAME", "HandoffClient", "HandoffServer"]
