"""The plaintext HTTP endpoint every server offers (``/metrics``; the scaler adds its probes).

It runs on the server's event loop, so a scrape takes its figures on the loop and never reads
a core from another thread while the loop changes it; only the text rendering of a snapshot
runs on one worker thread (:class:`MetricsRoute`). Every connection is bounded
(:class:`HttpLimits`): it carries one ``GET`` and is closed after the answer;
the request head must arrive whole, and the answer be taken by the client, each within
``timeout_s``, else the connection is closed; a request head is at most
:data:`MAX_HEAD_BYTES`; at most ``max_connections`` are open at once, and a new connection
beyond closes the one that has waited longest for its request, or, when every connection is
being answered, gets ``503`` at once. An idle connection costs no thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("alpcrun.metrics_http")

MAX_HEAD_BYTES = 8 * 1024
"""Longest request head (request line and headers) read; a longer one is answered 431."""
_TEXT = "text/plain; charset=utf-8"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Bounds on an :class:`HttpEndpoint`'s connections.

    Each server's settings ``metrics_timeout`` and ``metrics_max_connections``.
    """

    timeout_s: float = 10.0
    """Most time for the request head to arrive whole, and again for the answer to be taken."""
    max_connections: int = 32
    """Connections open at once."""


@dataclass(frozen=True, slots=True)
class HttpReply:
    """What a route answers."""

    status: int
    """HTTP status code."""
    body: bytes
    """The body."""
    content_type: str = _TEXT
    """Its ``Content-Type``."""


Route = Callable[[], Awaitable[HttpReply]]
"""Answers a ``GET`` of one path (the query string is ignored)."""


@dataclass(frozen=True, slots=True)
class HttpStatistics:
    """Counters and gauges of an :class:`HttpEndpoint`."""

    connections: int
    """Connections open now."""
    timed_out: int
    """Connections closed because the request or the answer's reading took too long."""
    evicted: int
    """Connections waiting for their request, closed to make room for a new one."""
    refused: int
    """Connections answered 503 at once: the limit was reached and all were being answered."""


class MetricsRoute:
    """``GET /metrics``: a snapshot taken on the event loop, rendered on one worker thread.

    Args:
        snapshot: Called on the event loop for each scrape; returns a registry whose
            collectors hold the figures already taken, so it renders on any thread.
    """

    def __init__(self, snapshot: Callable[[], CollectorRegistry]) -> None:
        self._snapshot = snapshot
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alpcrun-metrics")

    async def __call__(self) -> HttpReply:
        """Take the figures now, render them off the loop."""
        registry = self._snapshot()
        body = await asyncio.get_running_loop().run_in_executor(
            self._pool, generate_latest, registry
        )
        return HttpReply(200, body, CONTENT_TYPE_LATEST)

    def close(self) -> None:
        """Let the rendering thread end (a scrape still rendering finishes first)."""
        self._pool.shutdown(wait=False)


@dataclass(eq=False, slots=True)
class _Conn:
    writer: asyncio.StreamWriter
    opened: float
    waiting: bool = True  # for its request head (it may be closed to make room)


class HttpEndpoint:
    """Serves ``routes`` over HTTP/1.1 on the running event loop, within ``limits``.

    Args:
        routes: Path → route.
        host: Address to listen on.
        port: Port (0: a free one).
        limits: Timeouts and most connections.
    """

    def __init__(
        self,
        routes: Mapping[str, Route],
        *,
        host: str,
        port: int,
        limits: HttpLimits | None = None,
    ) -> None:
        self._routes = dict(routes)
        self._host = host
        self._port = port
        self.limits = limits or HttpLimits()
        self._server: asyncio.Server | None = None
        self._open: set[_Conn] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._timed_out = self._evicted = self._refused = 0
        self.port: int = port
        """The port bound (after :meth:`start`)."""

    async def start(self) -> None:
        """Listen (raises ``OSError`` when the address cannot be bound)."""
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, limit=MAX_HEAD_BYTES
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._open):
            conn.writer.transport.abort()
        if self._handlers:  # they end at once, their connections gone
            await asyncio.wait(list(self._handlers), timeout=self.limits.timeout_s)
        await self._server.wait_closed()
        self._server = None

    def statistics(self) -> HttpStatistics:
        """A snapshot of the counters."""
        return HttpStatistics(len(self._open), self._timed_out, self._evicted, self._refused)

    def _admit(self, conn: _Conn) -> bool:
        if len(self._open) >= self.limits.max_connections:
            waiting = [c for c in self._open if c.waiting]
            if not waiting:
                self._refused += 1
                return False
            oldest = min(waiting, key=lambda c: c.opened)
            self._open.discard(oldest)
            self._evicted += 1
            oldest.writer.transport.abort()
        self._open.add(conn)
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer, asyncio.get_running_loop().time())
        if not self._admit(conn):
            writer.write(_response(HttpReply(503, b"too many connections\n")))
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            try:
                async with asyncio.timeout(self.limits.timeout_s):
                    head: bytes | None = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                head = None
            conn.waiting = False
            writer.write(_response(await self._answer(head)))
            async with asyncio.timeout(self.limits.timeout_s):
                writer.close()
                await writer.wait_closed()
        except TimeoutError:
            self._timed_out += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away (or was closed to make room)
        finally:
            self._open.discard(conn)
            self._handlers.discard(task)
            writer.transport.abort()  # a no-op once closed; else what is left is dropped

    async def _answer(self, head: bytes | None) -> HttpReply:
        if head is None:
            return HttpReply(431, b"request head too long\n")
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return HttpReply(400, b"not an HTTP request\n")
        if parts[0] != b"GET":
            return HttpReply(405, b"only GET\n")
        route = self._routes.get(parts[1].split(b"?", 1)[0].decode("latin-1"))
        if route is None:
            return HttpReply(404, f"not found: try {', '.join(sorted(self._routes))}\n".encode())
        try:
            return await route()
        except Exception:  # a bug in one route must not cost the endpoint
            log.exception("HTTP route failed")
            return HttpReply(500, b"internal error\n")


def _response(reply: HttpReply) -> bytes:
    head = (
        f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, '')}\r\n"
        f"Content-Type: {reply.content_type}\r\n"
        f"Content-Length: {len(reply.body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + reply.body


__all__ = [
    "MAX_HEAD_BYTES",
    "HttpEndpoint",
    "HttpLimits",
    "HttpReply",
    "HttpStatistics",
    "MetricsRoute",
    "Route",
]
