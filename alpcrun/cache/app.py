"""The shared-data server processes: ``CentralCacheServer`` and ``NodeAgent``.

Both are used as ``async with CentralCacheServer(settings=...) as cc: ...``; each serves its
gRPC service with health, reflection, API-key auth, a sweeper task and Prometheus metrics.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc
import grpc.aio
from prometheus_client.registry import Collector

from alpcrun._clock import Clock, MonotonicClock
from alpcrun.cache.central import CentralCacheService
from alpcrun.cache.client import SharedDataClient
from alpcrun.cache.lru import NodeLRU
from alpcrun.cache.metrics import CentralCacheCollector, NodeCacheCollector, registry_of
from alpcrun.cache.node import NodeCache, NodeCacheService
from alpcrun.cache.read_server import NodeReadServer, NodeReadService, ReadLimits
from alpcrun.cache.sessions import OpenSessions, QueueManagerLookup
from alpcrun.cache.ttl import SharedDataStore, StoreLimits
from alpcrun.config import CentralCacheSettings, NodeAgentSettings
from alpcrun.constants import MD_API_KEY
from alpcrun.errors import ConfigError
from alpcrun.payload.node import PayloadNode, PayloadNodeConfig
from alpcrun.proto import (
    CENTRAL_CACHE_SERVICE_NAME,
    NODE_CACHE_SERVICE_NAME,
    PAYLOAD_AGENT_SERVICE_NAME,
    AdminStub,
    ListSessionsRequest,
    SessionInfo,
    SessionState,
    add_central_cache_servicer,
    add_node_cache_servicer,
)
from alpcrun.proto.auth import api_keys, server_interceptors
from alpcrun.proto.channel import open_channel
from alpcrun.proto.metrics_http import HttpLimits
from alpcrun.proto.server import GrpcServer, Listen
from alpcrun.tls import client_tls, server_tls

log = logging.getLogger("alpcrun.cache")
Settings = CentralCacheSettings | NodeAgentSettings


class _Server(abc.ABC):
    """A gRPC server with health, reflection, auth, metrics and periodic duties.

    Subclasses implement :meth:`_add_services` and :meth:`_collector`.
    """

    _services: Sequence[str] = ()

    def __init__(self, settings: Settings, clock: Clock | None) -> None:
        if settings.api_key is None and not settings.auth_disabled:
            raise ConfigError(
                "an API key is required: set ALPCRUNCH_API_KEY (or --api-key), "
                "or auth_disabled for a trusted development setup"
            )
        self.settings = settings
        self._tls = server_tls(settings)
        self.client_tls = client_tls(settings)
        """How this server dials other alpcrun servers (None: plaintext)."""
        self.clock = clock or MonotonicClock()
        self.port = 0
        self.metrics_port: int | None = None
        self._server: GrpcServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()

    @property
    def address(self) -> str:
        """``host:port`` clients on this machine can dial."""
        host = self.settings.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]", "") else host
        return f"{host}:{self.port}"

    @property
    def api_key(self) -> str | None:
        """The API key, if any."""
        key = self.settings.api_key
        return key.get_secret_value() if key is not None else None

    @abc.abstractmethod
    def _add_services(self, server: grpc.aio.Server) -> None:
        """Register this server's gRPC servicer on ``server``."""

    @abc.abstractmethod
    def _collector(self) -> Collector:
        """This server's metrics as they are now (called on the event loop for each scrape)."""

    def _extra_addresses(self) -> list[str]:
        return []

    def _every(self, seconds: float, duty: Callable[[], Awaitable[object]]) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await duty()
                except Exception:  # a periodic duty must survive one failure
                    log.exception("periodic duty failed")

        self._tasks.append(asyncio.create_task(loop()))

    async def start(self) -> None:
        """Bind the port, start serving and the metrics endpoint."""
        s = self.settings
        listen = Listen(
            host=s.host,
            port=s.port,
            tls=self._tls,
            extra_addresses=self._extra_addresses(),
            metrics_port=s.metrics_port,
            metrics_limits=HttpLimits(s.metrics_timeout, s.metrics_max_connections),
            max_message_bytes=s.max_message_bytes,
        )
        self._server = await GrpcServer.start(
            listen,
            service_names=self._services,
            add_services=self._add_services,
            interceptors=server_interceptors(s.api_key, auth_disabled=s.auth_disabled),
            registry=lambda: registry_of(self._collector()),
        )
        self.port, self.metrics_port = self._server.port, self._server.metrics_port
        log.info(
            "%s listening on %s (%s)",
            type(self).__name__,
            self.address,
            "TLS" if self._tls else "plaintext",
        )

    async def stop(self, grace: float = 1.0) -> None:
        """Stop serving (in-flight calls get ``grace`` seconds)."""
        if self._server is None:
            return
        await self._server.set_not_serving()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._server.stop(grace)
        self._server = None
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Wait until :meth:`stop` has completed."""
        await self._stopped.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop(grace=0)


class CentralCacheServer(_Server):
    """``alpcrun central-cache``: session shared data with update levels and TTLs."""

    _services = (CENTRAL_CACHE_SERVICE_NAME,)

    def __init__(self, *, settings: CentralCacheSettings, clock: Clock | None = None) -> None:
        super().__init__(settings, clock)
        self.central_settings = settings
        limits = StoreLimits(
            max_bytes=settings.max_bytes,
            max_value_bytes=settings.max_value_bytes,
            max_ttl_s=settings.max_ttl,
        )
        self.store = SharedDataStore(limits=limits, clock=self.clock)
        self._qm_channel: grpc.aio.Channel | None = None
        self.open_sessions: OpenSessions | None = None
        """With a queue manager: the sessions uploads are accepted for (see docs)."""
        if settings.queue_manager:
            self.open_sessions = OpenSessions(
                QueueManagerLookup(self._queue_manager, api_key=self.api_key),
                clock=self.clock,
                remember_s=settings.session_poll_interval,
            )
        self.service = CentralCacheService(
            self.store, chunk_bytes=settings.chunk_bytes, sessions=self.open_sessions
        )

    def _add_services(self, server: grpc.aio.Server) -> None:
        add_central_cache_servicer(self.service, server)

    def _collector(self) -> Collector:
        sessions = self.open_sessions.statistics() if self.open_sessions is not None else None
        return CentralCacheCollector(self.store.statistics(), self.service.bytes_sent, sessions)

    async def start(self) -> None:
        """Serve; sweep expired entries and (with a queue manager) closed sessions' data."""
        await super().start()
        s = self.central_settings
        self._every(s.cleanup_interval, self._sweep)
        if s.queue_manager:
            self._every(s.session_poll_interval, self.drop_closed_sessions)

    async def _sweep(self) -> None:
        if dropped := self.store.sweep():
            log.debug("sweeper dropped %d expired levels", dropped)

    def _queue_manager(self) -> grpc.aio.Channel:
        """The one channel to the queue manager: opened on first use, closed by :meth:`stop`."""
        if self._qm_channel is None:
            address = self.central_settings.queue_manager
            assert address is not None
            self._qm_channel = open_channel(address, tls=self.client_tls)
        return self._qm_channel

    async def drop_closed_sessions(self) -> int:
        """Delete the shared data of sessions the queue manager reports closed."""
        metadata = ((MD_API_KEY, self.api_key),) if self.api_key else ()
        admin = AdminStub(self._queue_manager())
        request = ListSessionsRequest(include_closed=True)
        infos: list[SessionInfo] = []
        while True:  # the listing comes in pages
            reply = await admin.ListSessions(request, metadata=metadata, timeout=10)
            infos.extend(reply.sessions)
            if not reply.next_page_token:
                break
            request.page_token = reply.next_page_token
        held = set(self.store.sessions())
        dropped = 0
        for info in infos:
            sid = info.session.id
            closed = info.session.state == SessionState.SESSION_STATE_CLOSED
            if closed and self.open_sessions is not None:
                self.open_sessions.forget(sid)  # uploads for it are refused from now on
            if sid in held and closed:
                self.store.delete(sid)
                dropped += 1
                log.info("session %s is closed: its shared data was deleted", sid)
        return dropped

    async def stop(self, grace: float = 1.0) -> None:
        """Refuse new uploads, then stop."""
        self.service.accepting = False
        await super().stop(grace)
        if self._qm_channel is not None:
            await self._qm_channel.close(None)
            self._qm_channel = None


class NodeAgent(_Server):
    """``alpcrun node-agent``: the node-local pull-through cache of shared data."""

    _services: Sequence[str] = (NODE_CACHE_SERVICE_NAME,)

    def __init__(self, *, settings: NodeAgentSettings, clock: Clock | None = None) -> None:
        super().__init__(settings, clock)
        self.node_settings = settings
        self._channel: grpc.aio.Channel | None = None
        self._qm_channel: grpc.aio.Channel | None = None
        self.payloads: PayloadNode | None = None
        """The node's payload store (None unless ``queue_manager`` is set)."""
        if settings.queue_manager:
            self._services = (NODE_CACHE_SERVICE_NAME, PAYLOAD_AGENT_SERVICE_NAME)
        self.cache: NodeCache | None = None
        self.read_server: NodeReadServer | None = None
        """The read path (None until started, or when neither its port nor socket is on)."""

    def _add_services(self, server: grpc.aio.Server) -> None:
        s = self.node_settings
        self._channel = open_channel(
            s.central_cache_addr, tls=self.client_tls, max_message_bytes=s.max_message_bytes
        )
        central = SharedDataClient(
            self._channel, api_key=self.api_key, max_value_bytes=s.max_value_bytes
        )
        lru = NodeLRU(max_bytes=s.cache_size, clock=self.clock)
        self.cache = NodeCache(
            lru=lru, central=central, clock=self.clock, fetch_timeout_s=s.fetch_timeout
        )
        add_node_cache_servicer(NodeCacheService(self.cache, self.clock, s.chunk_bytes), server)
        if s.queue_manager:
            self._qm_channel = open_channel(
                s.queue_manager, tls=self.client_tls, max_message_bytes=s.max_message_bytes
            )
            config = PayloadNodeConfig(
                node=s.node,
                ram_bytes=s.ram_bytes,
                disk_dir=Path(s.disk_dir) if s.disk_dir else None,
                disk_bytes=s.disk_bytes,
                socket=Path(s.payload_socket) if s.payload_socket else None,
            )
            self.payloads = PayloadNode(config, self._qm_channel, self.api_key)
            self.payloads.add_services(server)

    def _extra_addresses(self) -> list[str]:
        path = self.node_settings.unix_socket
        return [f"unix:{path}"] if path else []

    def _collector(self) -> Collector:
        assert self.cache is not None
        read = self.read_server.service.statistics() if self.read_server is not None else None
        return NodeCacheCollector(self.cache.statistics(), read)

    @property
    def read_address(self) -> str | None:
        """``host:port`` of the read path's TCP listener on this machine (None: none)."""
        if self.read_server is None or self.read_server.port is None:
            return None
        return f"{self.address.rpartition(':')[0]}:{self.read_server.port}"

    async def start(self) -> None:
        """Serve gRPC and the read path; drop expired entries every ``cleanup_interval``."""
        await super().start()
        s = self.node_settings
        port = s.read_port
        if port is not None and self._tls is not None:
            log.info("read path not served on TCP: it is plaintext and tls is on")
            port = None
        if port is not None or s.read_socket:
            assert self.cache is not None
            keys = api_keys(s.api_key, auth_disabled=s.auth_disabled)
            service = NodeReadService(self.cache, self.clock, keys)
            limits = ReadLimits(s.read_idle_timeout, s.read_max_connections)
            server = NodeReadServer(
                service, host=s.host, port=port, socket_path=s.read_socket, limits=limits
            )
            try:
                await server.start()
            except ConfigError:
                await self.stop(grace=0)
                raise
            self.read_server = server
            log.info("read path on %s", server)
        if self.payloads is not None:
            wildcard = s.host in ("0.0.0.0", "::", "[::]", "")
            default = f"{socket.gethostname()}:{self.port}" if wildcard else self.address
            advertise = s.advertise_address or default
            try:
                await self.payloads.start(advertise)
            except ConfigError:
                await self.stop(grace=0)
                raise
            log.info("payload store of node %s, data path at %s", s.node, advertise)
        self._every(s.cleanup_interval, self._expire)

    async def _expire(self) -> None:
        assert self.cache is not None
        self.cache.lru.expire()

    async def stop(self, grace: float = 1.0) -> None:
        """Stop serving and close the channels to the central cache and the queue manager."""
        if self.read_server is not None:
            await self.read_server.stop()
            self.read_server = None
        if self.payloads is not None:
            await self.payloads.stop()
        await super().stop(grace)
        for channel in (self._channel, self._qm_channel):
            if channel is not None:
                await channel.close(None)
        self._channel = self._qm_channel = None
