"""QueueManager: wires the core, the servicers, health, reflection, metrics and the tick."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

import grpc.aio

from alpcrun._clock import Clock, MonotonicClock
from alpcrun.config import QueueManagerSettings
from alpcrun.errors import ConfigError
from alpcrun.payload.catalog import Catalog, CatalogLimits
from alpcrun.payload.catalog_service import PayloadCatalogService
from alpcrun.proto import (
    ADMIN_SERVICE_NAME,
    PAYLOAD_CATALOG_SERVICE_NAME,
    QUEUE_SERVICE_NAME,
    add_admin_servicer,
    add_payload_catalog_servicer,
    add_queue_servicer,
)
from alpcrun.proto.auth import server_interceptors
from alpcrun.proto.metrics_http import HttpLimits
from alpcrun.proto.server import GrpcServer, Listen
from alpcrun.queue_manager.admin import AdminService
from alpcrun.queue_manager.core import CoreLimits, QueueCore
from alpcrun.queue_manager.metrics import make_registry
from alpcrun.queue_manager.payloads import PayloadDuties
from alpcrun.queue_manager.scheduler import Scheduler
from alpcrun.queue_manager.servicer import QueueService
from alpcrun.queue_manager.sqlite_journal import SqliteJournal
from alpcrun.tls import server_tls

log = logging.getLogger("alpcrun.queue_manager")
_SERVICES = (QUEUE_SERVICE_NAME, ADMIN_SERVICE_NAME, PAYLOAD_CATALOG_SERVICE_NAME)


def _limits(settings: QueueManagerSettings) -> CoreLimits:
    return CoreLimits(
        buffer_size=settings.buffer_size,
        max_pending_bytes=settings.max_pending_bytes,
        max_total_bytes=settings.max_total_bytes,
        max_buffered_results=settings.max_buffered_results,
        max_result_bytes=settings.max_result_bytes,
        max_dead_letter_bytes=settings.max_dead_letter_bytes,
        max_total_dead_letter_bytes=settings.max_total_dead_letter_bytes,
        max_sessions=settings.max_sessions,
        max_sessions_per_key=settings.max_sessions_per_key,
        max_registered_workers=settings.max_registered_workers,
        max_label_bytes=settings.max_label_bytes,
        worker_timeout_s=settings.worker_timeout,
        heartbeat_interval_s=settings.heartbeat_interval,
        bind_stream_timeout_s=settings.bind_stream_timeout,
        session_retention_s=settings.session_retention,
        session_expiry_s=settings.session_expiry,
        unused_session_expiry_s=settings.unused_session_expiry,
        default_fifo=settings.queue_type == "fifo",
    )


def _catalog_limits(settings: QueueManagerSettings) -> CatalogLimits:
    return CatalogLimits(
        session_quota_bytes=settings.payload_quota,
        pending_ttl_s=settings.payload_pending_ttl,
        lease_ttl_s=settings.payload_lease_ttl,
        node_timeout_s=settings.payload_node_timeout,
    )


class QueueManager:
    """The queue manager process: ``async with QueueManager(settings=...) as qm: ...``."""

    def __init__(self, *, settings: QueueManagerSettings, clock: Clock | None = None) -> None:
        if settings.api_key is None and not settings.auth_disabled:
            raise ConfigError(
                "an API key is required: set ALPCRUNCH_API_KEY (or --api-key), "
                "or auth_disabled for a trusted development setup"
            )
        self.settings = settings
        self._tls = server_tls(settings)
        self.clock = clock or MonotonicClock()
        self.journal: SqliteJournal | None = None
        if settings.journal:
            self.journal = SqliteJournal(
                settings.journal,
                flush_interval=settings.journal_flush_interval,
                sync=settings.journal_sync,
                salvage=settings.journal_salvage,
                max_transaction_bytes=settings.journal_max_transaction_bytes,
            )
            self.journal.on_writable = self._journal_writable
        self.core = QueueCore(
            limits=_limits(settings),
            clock=self.clock,
            scheduler=Scheduler(min_bind_seconds=settings.min_bind_time),
            journal=self.journal,
            on_schedule_needed=self._schedule_soon,
        )
        self.catalog = Catalog(limits=_catalog_limits(settings), clock=self.clock)
        """The payload catalog (docs/payloads.md); in memory, not journaled yet."""
        self._payload_duties = PayloadDuties(self.catalog, self.core)
        self._catalog_service = PayloadCatalogService(
            self.catalog,
            self.core.open_session,
            # three heartbeats fit in the node timeout, so one lost message loses no node
            heartbeat_interval_s=min(
                settings.heartbeat_interval, settings.payload_node_timeout / 3
            ),
        )
        self.port = 0
        self.metrics_port: int | None = None
        self._server: GrpcServer | None = None
        self._service = QueueService(
            self.core, self._sync, max_message_bytes=settings.max_message_bytes
        )
        self._tick_task: asyncio.Task[None] | None = None
        self._schedule_pending = False
        self._stopped = asyncio.Event()
        self._health_lock = asyncio.Lock()
        self._health_tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """``host:port`` clients on this machine can dial."""
        host = self.settings.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]", "") else host
        return f"{host}:{self.port}"

    async def _sync(self) -> None:
        if self.journal is not None:
            await self.journal.sync()

    def _recover(self) -> None:
        assert self.journal is not None
        report = self.journal.salvage_report
        for line in report or ():
            log.warning("journal %s, salvage start: %s", self.journal.path, line)
        if report == []:
            log.info(
                "journal %s, salvage start: the journal is whole; nothing was changed",
                self.journal.path,
            )
        records, last_key = self.journal.load(self.clock.monotonic())
        for record in records:
            self.core.adopt_session(record)
        self.core.reserve_keys(last_key)
        self.journal.start(asyncio.get_running_loop())
        log.info(
            "journal %s: recovered %d sessions, %d queued tasks, %d unacknowledged result "
            "batches, %d dead letters",
            self.journal.path,
            len(records),
            sum(r.queue.tasks for r in records),
            sum(len(r.results) for r in records),
            sum(len(r.dead_letters) for r in records),
        )

    def _journal_writable(self, writable: bool) -> None:
        """The journal started failing (False) or writes again (True): health follows it."""
        task = asyncio.ensure_future(self._set_health(writable))
        self._health_tasks.add(task)
        task.add_done_callback(self._health_tasks.discard)

    async def _set_health(self, writable: bool) -> None:
        async with self._health_lock:  # in the order the journal changed
            if self._server is None or not self._service.accepting:
                return  # not serving yet (start reads the journal), or stopping
            if writable:
                await self._server.set_serving()
            else:
                await self._server.set_not_serving()

    async def start(self) -> None:
        """Recover the journal, bind the port, start serving, the tick and the metrics."""
        try:
            await self._start()
        except BaseException:
            if self._server is None and self.journal is not None:
                self.journal.abandon()  # unlocked and closed: nothing was served
            raise
        if self.journal is not None and self.journal.failure is not None:
            self._journal_writable(False)

    async def _start(self) -> None:
        if self.journal is not None:
            self._recover()
        s = self.settings
        admin = AdminService(
            self.core, self.clock.monotonic(), self._sync, max_message_bytes=s.max_message_bytes
        )

        def add_services(server: grpc.aio.Server) -> None:
            add_queue_servicer(self._service, server)
            add_admin_servicer(admin, server)
            add_payload_catalog_servicer(self._catalog_service, server)

        listen = Listen(
            host=s.host,
            port=s.port,
            tls=self._tls,
            metrics_port=s.metrics_port,
            metrics_limits=HttpLimits(s.metrics_timeout, s.metrics_max_connections),
            max_message_bytes=s.max_message_bytes,
        )
        self._server = await GrpcServer.start(
            listen,
            service_names=_SERVICES,
            add_services=add_services,
            interceptors=server_interceptors(s.api_key, auth_disabled=s.auth_disabled),
            registry=lambda: make_registry(self.core, self.catalog),
        )
        self.port, self.metrics_port = self._server.port, self._server.metrics_port
        self._tick_task = asyncio.create_task(self._tick_loop())
        log.info(
            "queue manager listening on %s (%s; metrics port %s, plaintext)",
            self.address,
            "TLS" if self._tls else "plaintext",
            self.metrics_port,
        )

    def _schedule_soon(self) -> None:
        if not self._schedule_pending:
            self._schedule_pending = True
            asyncio.get_running_loop().call_soon(self._run_schedule)

    def _run_schedule(self) -> None:
        self._schedule_pending = False
        self.core.schedule()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.scheduler_interval)
            try:
                self.core.tick()
            except Exception:  # the tick must survive a bug in one duty
                log.exception("scheduler tick failed")
            try:
                self._payload_duties.tick()
            except Exception:
                log.exception("payload catalog tick failed")

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight batches finish within ``grace`` seconds, then stop."""
        if self._server is None:
            return
        grace = self.settings.shutdown_grace if grace is None else grace
        self._service.accepting = False
        async with self._health_lock:
            await self._server.set_not_serving()
        deadline = self.clock.monotonic() + grace
        while self.clock.monotonic() < deadline and any(  # noqa: ASYNC110 - polls core state
            s.inflight_batches for s in self.core.sessions.values()
        ):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)  # let the last results reach their clients
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
        await self._server.stop(0.5)
        self._server = None
        if self.journal is not None:
            await self.journal.close()
        self._stopped.set()
        log.info("queue manager stopped")

    async def wait_stopped(self) -> None:
        """Wait until :meth:`stop` has completed."""
        await self._stopped.wait()

    async def __aenter__(self) -> QueueManager:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop(grace=0)
