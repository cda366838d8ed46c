"""A small asyncio TCP proxy for connection-failure tests.

It forwards every accepted connection to ``target`` (which may be changed at any time, e.g.
to point at a restarted server on a new port), can cut every live connection at once (a
reset, as a dropped network path or a killed peer would), can refuse new connections for a
while by closing its listening socket (clients get "connection refused"), and can stall the
client-to-server direction (bytes are held back, e.g. acknowledgements that must not arrive).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

CHUNK = 1 << 16


class _Link:
    """One proxied connection: two sockets and the two pumps between them."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.pumps: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        """Reset both sockets at once (no FIN handshake)."""
        for writer in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    # SO_LINGER 0: close() sends RST, as a crashed peer or lost path would.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            writer.transport.abort()
        for pump in self.pumps:
            pump.cancel()


class TcpProxy:
    """Forward ``host:port`` (picked on start) to ``target``; cut and refuse on demand.

    Args:
        target: ``host:port`` new connections are forwarded to.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.port = 0
        self.accepted = 0
        """Connections accepted so far."""
        self.cuts = 0
        """Connections cut so far."""
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._upstream_open = asyncio.Event()
        self._upstream_open.set()

    @property
    def address(self) -> str:
        """``host:port`` clients dial."""
        return f"127.0.0.1:{self.port}"

    @property
    def live(self) -> int:
        """Connections open now."""
        return len(self._links)

    async def start(self) -> None:
        """Start listening (on a free port the first time, on the same port afterwards)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            writer.transport.abort()  # closing the proxy; asyncio would log the cancellation
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        host, _, port = self.target.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.transport.abort()  # the target is down: the client sees a reset
            return
        link = _Link(writer, up_writer)
        link.pumps = [
            asyncio.create_task(self._pump(reader, up_writer, self._upstream_open)),
            asyncio.create_task(self._pump(up_reader, writer, None)),
        ]
        self._links.add(link)
        try:
            await asyncio.wait(link.pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._links.discard(link)
            link.abort()
            await asyncio.wait(link.pumps)

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: asyncio.Event | None
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                if gate is not None:
                    await gate.wait()
                writer.write(data)
                await writer.drain()

    def stall_upstream(self) -> None:
        """Hold back every byte from clients to the target (server-to-client still flows)."""
        self._upstream_open.clear()

    def resume_upstream(self) -> None:
        """Forward client-to-server bytes again (held bytes of cut connections are gone)."""
        self._upstream_open.set()

    def cut(self) -> int:
        """Reset every live connection now; return how many were cut."""
        links = list(self._links)
        self._links.clear()
        for link in links:
            link.abort()
        self.cuts += len(links)
        return len(links)

    async def refuse(self) -> None:
        """Stop listening: new connections are refused until :meth:`start` (same port)."""
        server, self._server = self._server, None
        if server is not None:
            # close() shuts the listening socket at once; wait_closed() would also wait for
            # the live connections on newer Pythons.
            server.close()
        await asyncio.sleep(0)

    async def refuse_for(self, seconds: float, *, cut: bool = True) -> None:
        """Refuse new connections (and cut the live ones) for ``seconds``, then listen again."""
        await self.refuse()
        if cut:
            self.cut()
        await asyncio.sleep(seconds)
        await self.start()

    async def close(self) -> None:
        """Stop listening and cut everything."""
        await self.refuse()
        self.cut()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers)

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
