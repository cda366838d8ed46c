"""``WorkerRunner``: the engine that connects a ``Worker`` to the queue manager.

One runner keeps one ``WorkerUpdate`` stream open (registration, heartbeats, BIND/UNBIND
instructions) and, while bound, one :class:`~workers_sdk._session.SessionPump` serving the
session's ``WorkerStream``. A BIND that arrives while the previous stream is still winding
down (for any session, the same one included) waits for that stream to end and then opens a
new one. A lost connection is retried every ``reconnect_delay`` with a
fresh registration; auth failures are fatal. :meth:`WorkerRunner.request_stop` drains:
DRAINING heartbeat, finish received batches, send their results, close both streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import grpc
import grpc.aio

import alpcrun
from alpcrun.config import WorkerSettings
from alpcrun.constants import MD_API_KEY
from alpcrun.errors import AuthError, Unavailable
from alpcrun.payload.store import StoreOptions
from alpcrun.proto import (
    Batch,
    QueueStub,
    WorkerHeartbeat,
    WorkerInstruction,
    WorkerRegistration,
    WorkerStatus,
)
from alpcrun.proto.channel import open_channel
from alpcrun.proto.status import from_rpc_error
from alpcrun.tls import client_tls
from workers_sdk._execute import BatchExecutor
from workers_sdk._payloads import GridPayloads
from workers_sdk._session import CLOSE_GRACE, SessionPump, SessionSpec
from workers_sdk._shared import CachedSharedData
from workers_sdk._state import WIRE_STATE, Counters, RunnerState, WorkerStatistics
from workers_sdk.worker import Worker

logger = logging.getLogger("workers_sdk.runner")

T = TypeVar("T")
_Updates = grpc.aio.StreamStreamCall[WorkerStatus, WorkerInstruction]
_Instr = WorkerInstruction
_DEFAULT_HEARTBEAT = 5.0


@dataclass(frozen=True, slots=True)
class _Wiring:
    """What one :meth:`WorkerRunner.run` opened: the two stream methods and the executor."""

    updates: grpc.aio.StreamStreamMultiCallable[WorkerStatus, WorkerInstruction]
    stream: grpc.aio.StreamStreamMultiCallable[Batch, Batch]
    executor: BatchExecutor


class WorkerRunner:
    """Runs one :class:`Worker` against the queue manager until stopped.

    Args:
        worker: The worker instance whose ``handle`` processes tasks.
        settings: Address, API key, concurrency, threads, labels and timeouts.
    """

    def __init__(self, worker: Worker, settings: WorkerSettings) -> None:
        self._worker = worker
        self._settings = settings
        self._tls = client_tls(settings)  # a bad certificate file fails here, at start
        key = settings.api_key.get_secret_value() if settings.api_key else ""
        self._metadata: tuple[tuple[str, str], ...] = ((MD_API_KEY, key),) if key else ()
        self._counters = Counters()
        self._state = RunnerState.CONNECTING
        self._worker_id = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._stop_requested = False
        self._drain_deadline = 0.0
        self._wake = asyncio.Event()
        self._closing = False
        self._pump: SessionPump | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._pending_bind: SessionSpec | None = None

    def statistics(self) -> WorkerStatistics:
        """Return a snapshot of the runner's counters and state."""
        pump = self._pump
        return WorkerStatistics(
            batches_done=self._counters.batches_done,
            tasks_done=self._counters.tasks_done,
            tasks_failed=self._counters.tasks_failed,
            state=self._state,
            worker_id=self._worker_id,
            session_id=pump.spec.session_id if pump else "",
            inflight_batches=pump.inflight if pump else 0,
        )

    def request_stop(self) -> None:
        """Start a graceful drain; :meth:`run` returns once it is done.

        Safe to call from signal handlers, from other threads and before :meth:`run`.
        """
        self._stop_requested = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._on_stop()
        else:
            loop.call_soon_threadsafe(self._on_stop)

    async def run(self) -> None:
        """Set up the worker, serve the grid until stopped, then tear down.

        Raises:
            alpcrun.errors.AuthError: The queue manager refused the API key.
        """
        self._loop = asyncio.get_running_loop()
        if self._stop_requested:
            self._on_stop()
        settings = self._settings
        await self._worker.setup()
        shared = CachedSharedData(settings, tls=self._tls)
        channel = open_channel(
            settings.queue_manager,
            tls=self._tls,
            max_message_bytes=settings.max_message_bytes,
        )
        key = settings.api_key.get_secret_value() if settings.api_key else None
        payloads = GridPayloads(
            channel,
            StoreOptions(api_key=key, node=settings.node, agent_socket=settings.payload_socket),
        )
        executor = BatchExecutor(
            self._worker,
            threads=settings.threads or settings.concurrency,
            shared=shared,
            payloads=payloads,
        )
        stub = QueueStub(channel)
        try:
            await self._serve(_Wiring(stub.WorkerUpdate, stub.WorkerStream, executor))
        finally:
            self._state = RunnerState.STOPPED
            executor.close(wait=False)
            try:
                await self._worker.teardown()
            finally:
                await payloads.close()
                await channel.close(None)
                await shared.aclose()
                logger.info("worker stopped: %s", self.statistics())

    def _on_stop(self) -> None:
        if self._stop.is_set():
            return
        assert self._loop is not None
        logger.info("stop requested: draining (at most %ss)", self._settings.drain_timeout)
        self._drain_deadline = self._loop.time() + self._settings.drain_timeout
        self._stop.set()
        self._set_state(RunnerState.DRAINING)
        if self._pump is not None:
            self._pump.request_drain(self._drain_deadline)

    def _set_state(self, state: RunnerState) -> None:
        if self._stop.is_set() and state is not RunnerState.STOPPED:
            state = RunnerState.DRAINING
        if state is not self._state:
            self._state = state
            self._wake.set()

    async def _serve(self, wiring: _Wiring) -> None:
        """Connect, register and serve; reconnect after failures until stopped."""
        failures = 0
        while not self._stop.is_set():
            try:
                await self._connection(wiring)
            except grpc.RpcError as exc:
                err = from_rpc_error(exc)
                if isinstance(err, AuthError):
                    logger.error("queue manager refused this worker: %s", err)
                    raise err from exc
                failures = self._log_failure(err, failures)
            except (Unavailable, asyncio.InvalidStateError) as exc:
                failures = self._log_failure(exc, failures)
            if self._stop.is_set():
                return
            self._set_state(RunnerState.CONNECTING)
            await self._until_stopped(asyncio.sleep(self._settings.reconnect_delay))

    def _log_failure(self, exc: Exception, failures: int) -> int:
        """Log a connection failure: the first of a run loudly, repeats quietly."""
        if self._worker_id and self._state is not RunnerState.CONNECTING:
            failures = 0  # it was registered: this is a new outage
        level = logging.WARNING if failures % 60 == 0 else logging.DEBUG
        logger.log(
            level,
            "queue manager %s: %s; retrying every %ss",
            self._settings.queue_manager,
            exc,
            self._settings.reconnect_delay,
        )
        return failures + 1

    async def _stop_wait(self) -> None:
        await self._stop.wait()

    async def _until_stopped(self, aw: Awaitable[T]) -> T | None:
        """Await ``aw`` unless a stop comes first (then cancel it and return None)."""
        work = asyncio.ensure_future(aw)
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        return None if work.cancelled() else work.result()

    def _registration(self) -> WorkerStatus:
        s = self._settings
        return WorkerStatus(
            register=WorkerRegistration(
                node=s.node,
                pod=s.pod,
                labels=s.labels,
                concurrency=s.concurrency,
                sdk_version=alpcrun.__version__,
            )
        )

    async def _register(self, call: _Updates) -> float | None:
        """Register; returns the heartbeat interval, or None when stopped meanwhile."""
        self._set_state(RunnerState.CONNECTING)
        await call.write(self._registration())
        first = await self._until_stopped(call.read())
        if first is None:
            return None
        if not isinstance(first, _Instr) or first.type != _Instr.TYPE_REGISTERED:
            raise Unavailable("the queue manager did not acknowledge the registration")
        self._worker_id = first.worker_id
        interval = first.heartbeat_interval_ms / 1000 or _DEFAULT_HEARTBEAT
        logger.info(
            "registered with %s as worker %s (heartbeat every %ss)",
            self._settings.queue_manager,
            self._worker_id,
            interval,
        )
        self._set_state(RunnerState.IDLE)
        return interval

    async def _connection(self, wiring: _Wiring) -> None:
        """One registration: serve instructions until the stream drops or a drain finishes."""
        call = wiring.updates(request_iterator=None, metadata=self._metadata)
        self._closing = False
        tasks: list[asyncio.Task[None]] = []
        try:
            interval = await self._register(call)
            if interval is None:
                return
            reader = asyncio.create_task(self._instructions(call, wiring))
            beats = asyncio.create_task(self._heartbeats(call, interval))
            stop = asyncio.create_task(self._stop_wait())
            tasks = [reader, beats, stop]
            done, _ = await asyncio.wait({reader, beats, stop}, return_when=asyncio.FIRST_COMPLETED)
            if stop in done and not reader.done() and not beats.done():
                await self._drain(reader, beats)
                return
            for task in (beats, reader):
                exc = task.exception() if task.done() and not task.cancelled() else None
                if exc is not None:
                    raise exc
            if not self._stop.is_set():
                raise Unavailable("the queue manager ended the WorkerUpdate stream")
        finally:
            await self._end_session()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not call.done():
                call.cancel()

    async def _drain(self, reader: asyncio.Task[None], beats: asyncio.Task[None]) -> None:
        """Finish the bound session (if any), then half-close WorkerUpdate and await its end."""
        pump_task = self._pump_task
        if pump_task is not None:
            # The pump enforces the drain deadline itself; this only bounds its closing grace.
            budget = max(0.0, self._drain_deadline - asyncio.get_running_loop().time())
            await asyncio.wait({pump_task}, timeout=budget + CLOSE_GRACE)
        self._closing = True
        self._wake.set()
        await asyncio.wait({beats}, timeout=CLOSE_GRACE)
        await asyncio.wait({reader}, timeout=CLOSE_GRACE)

    async def _heartbeats(self, call: _Updates, interval: float) -> None:
        """Send a heartbeat every ``interval`` and on every state change; then half-close."""
        sent = None
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)
            self._wake.clear()
            beat = self._heartbeat()
            await call.write(beat)
            sent = beat.heartbeat.state
        if sent != WIRE_STATE[self._state]:  # a change (DRAINING) that came during a write
            await call.write(self._heartbeat())
        await call.done_writing()

    def _heartbeat(self) -> WorkerStatus:
        pump = self._pump
        return WorkerStatus(
            heartbeat=WorkerHeartbeat(
                state=WIRE_STATE[self._state],
                session_id=pump.spec.session_id if pump else "",
                inflight_batches=pump.inflight if pump else 0,
            )
        )

    async def _instructions(self, call: _Updates, wiring: _Wiring) -> None:
        """Read instructions until the server ends WorkerUpdate (raises if it fails)."""
        while isinstance(instr := await call.read(), _Instr):
            if instr.type == _Instr.TYPE_BIND:
                self._bind(SessionSpec.from_bind(instr, self._worker_id), wiring)
            elif instr.type == _Instr.TYPE_UNBIND:
                logger.info("unbind from session %s: finishing in-flight work", instr.session_id)
            else:
                logger.debug("ignoring instruction %s", _Instr.Type.Name(instr.type))

    def _bind(self, spec: SessionSpec, wiring: _Wiring) -> None:
        if self._stop.is_set():
            logger.info("draining: ignoring bind to session %s", spec.session_id)
            return
        if self._pump is not None:
            # The queue manager binds idle workers only: a BIND, even for the session the pump
            # serves, means it saw that pump's stream end. The pump is winding down; the bind
            # gets a new stream once it has ended (dropping it left the worker idle for good).
            logger.info(
                "bind to %s queued until the stream of %s ends",
                spec.session_id,
                self._pump.spec.session_id,
            )
            self._pending_bind = spec
            return
        logger.info(
            "bound to session %s (task_timeout %s)",
            spec.session_id,
            f"{spec.task_timeout:g}s" if spec.task_timeout else "none",
        )
        self._pump = pump = SessionPump(
            wiring.stream,
            wiring.executor,
            spec,
            metadata=self._metadata,
            concurrency=self._settings.concurrency,
            counters=self._counters,
        )
        self._pump_task = asyncio.create_task(pump.run())
        self._pump_task.add_done_callback(lambda t: self._session_ended(t, pump, wiring))
        self._set_state(RunnerState.BOUND)

    def _session_ended(self, task: asyncio.Task[None], pump: SessionPump, wiring: _Wiring) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("session %s failed", pump.spec.session_id, exc_info=exc)
        if self._pump is not pump:
            return
        logger.info("session %s over", pump.spec.session_id)
        self._pump = None
        self._pump_task = None
        self._set_state(RunnerState.IDLE)
        pending, self._pending_bind = self._pending_bind, None
        if pending is not None and not self._closing:
            self._bind(pending, wiring)

    async def _end_session(self) -> None:
        """Cancel the bound session's pump (the connection is gone or closing)."""
        self._pending_bind = None
        task = self._pump_task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._pump = None
        self._pump_task = None


__all__ = ["RunnerState", "WorkerRunner", "WorkerStatistics"]
