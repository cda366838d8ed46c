"""What every bad-input test ends with: the server still serves and nothing leaked.

:class:`Grid` wraps the stubs of one channel, remembers the sessions a test created on purpose,
and checks through the admin API that exactly those are open, that no worker is left
registered once its streams ended, that nothing is in flight, and that a fresh session still
makes a full round trip. :class:`ErrorLog` collects ERROR records (a servicer exception, a
task exception never retrieved) so a test fails on them even when every status was right.
The shared steps at the end start a manual worker on a batch and check a redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import grpc.aio

from alpcrun import proto

from .sim import Ledger, RawClient, SimWorker
from .wire import ManualWorker

KEY = "bad-input-key"
MD = (("api_key", KEY),)
UNKNOWN = "01J00000000000000000000000"
"""A well-formed session (or worker) id no queue manager issued."""
LIMIT = 1 << 20
"""The test servers' message size limit (small, so oversized messages are cheap)."""


def qm_settings(**overrides: Any) -> dict[str, Any]:
    """Settings of the test queue managers: fast tick, no anti-thrashing delay, small limits."""
    return {
        "api_key": KEY,
        "max_message_bytes": LIMIT,
        "max_pending_bytes": 1 << 20,
        "scheduler_interval": 0.05,
        "min_bind_time": 0.0,
        **overrides,
    }


async def eventually(check: Callable[[], Awaitable[None]], within: float = 10.0) -> None:
    """Retry an async assertion until it passes; on timeout raise its last failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            await check()
            return
        except AssertionError:
            if loop.time() > deadline:
                raise
        await asyncio.sleep(0.02)


class Grid:
    """Stubs on one channel plus the sessions a test created on purpose."""

    def __init__(self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> None:
        self.channel = channel
        self.md = metadata
        self.queue = proto.QueueStub(channel)
        self.admin = proto.AdminStub(channel)
        self.open: set[str] = set()
        """Sessions created on purpose and not closed."""
        self._trips = 0

    async def create(self, **attributes: Any) -> str:
        """Create a session (app id ``bad-input`` unless given); return its id."""
        attributes.setdefault("app_id", "bad-input")
        session = await self.queue.CreateSession(
            proto.CreateSessionRequest(attributes=proto.SessionAttributes(**attributes)),
            metadata=self.md,
        )
        self.open.add(session.id)
        return session.id

    async def close(self, session_id: str) -> int:
        """Close a session; return the tasks it discarded."""
        response = await self.queue.CloseSession(
            proto.CloseSessionRequest(session_id=session_id), metadata=self.md
        )
        self.open.discard(session_id)
        return response.discarded_tasks

    async def sessions(self, *, include_closed: bool = False) -> list[proto.SessionInfo]:
        """Every session's admin view, page after page."""
        request = proto.ListSessionsRequest(include_closed=include_closed)
        out: list[proto.SessionInfo] = []
        while True:
            page = await self.admin.ListSessions(request, metadata=self.md)
            out.extend(page.sessions)
            if not page.next_page_token:
                return out
            request.page_token = page.next_page_token

    async def info(self, session_id: str) -> proto.SessionInfo:
        """A session's admin view (closed ones included)."""
        (found,) = (
            s for s in await self.sessions(include_closed=True) if s.session.id == session_id
        )
        return found

    async def stats(self) -> proto.Stats:
        """Grid totals."""
        return await self.admin.GetStats(proto.GetStatsRequest(), metadata=self.md)

    async def workers(self) -> list[proto.WorkerInfo]:
        """Registered workers."""
        listing = await self.admin.ListWorkers(proto.ListWorkersRequest(), metadata=self.md)
        return list(listing.workers)

    async def settled(self) -> None:
        """No worker left, exactly the open sessions listed, none attached or in flight."""

        async def check() -> None:
            assert await self.workers() == []
            listed = await self.sessions()
            assert {s.session.id for s in listed} == self.open
            for info in listed:
                assert not info.stats.client_attached, info
                assert info.stats.inflight_batches == 0, info
                assert info.stats.inflight_tasks == 0, info
                assert info.stats.bound_workers == info.stats.unbinding_workers == 0, info
            stats = await self.stats()
            assert stats.workers == stats.bound_workers == stats.idle_workers == 0, stats
            assert stats.sessions == len(self.open), stats
            assert stats.pending_tasks == sum(s.stats.pending_tasks for s in listed)

        await eventually(check)

    async def round_trip(self, session_id: str | None = None, tasks: int = 3) -> None:
        """A batch on a session (a new one by default) gets every result back, exactly once.

        The session is closed afterwards if this created it; its worker leaves.
        """
        sid = session_id or await self.create(priority=10)
        ledger = Ledger()
        client = RawClient(self.channel, self.md, sid, ledger)
        self._trips += 1
        ids = client.send(1, tasks, f"rt{self._trips}")
        worker = SimWorker(self.channel, self.md, ledger, delay=0.0)
        running = asyncio.create_task(worker.run())
        try:
            await client.wait_for(tasks, within=10.0)
            assert all(ledger.delivered[i] == 1 for i in ids), ledger.delivered
        finally:
            client.cut()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        if session_id is None:
            await self.close(sid)

    async def healthy(self) -> None:
        """Settled, serving (a full round trip works), and settled again afterwards."""
        await self.settled()
        await self.round_trip()
        await self.settled()


class ErrorLog(logging.Handler):
    """Collects ERROR records from every logger while installed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def describe(self) -> list[str]:
        """The messages (with exception text) collected."""
        return [
            f"{r.name}: {r.getMessage()} {r.exc_text or r.exc_info or ''}" for r in self.records
        ]

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[ErrorLog]:
        """Collect while inside; the caller asserts on ``records``."""
        handler = cls()
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            yield handler
        finally:
            root.removeHandler(handler)


# ---------------------------------------------------------------------- shared steps
def with_session(session_id: str) -> tuple[tuple[str, str], ...]:
    return (*MD, ("sessionid", session_id))


async def bound_worker(
    grid: Grid, session_id: str, *, tasks: int = 2, prefix: str = "w"
) -> tuple[ManualWorker, proto.Batch, RawClient, Ledger]:
    """A client that sent one batch and a manual worker holding it (its stream open)."""
    ledger = Ledger()
    client = RawClient(grid.channel, MD, session_id, ledger)
    client.send(1, tasks, prefix)
    worker = ManualWorker(grid.channel, MD)
    await worker.register()
    assert await worker.bound() == session_id
    worker.open_stream(session_id)
    return worker, await worker.next_batch(), client, ledger


async def redelivered(worker: ManualWorker, session_id: str, first: proto.Batch) -> proto.Batch:
    """After its stream failed the worker is bound again and gets the same tasks, attempt 2."""
    assert await worker.bound() == session_id
    worker.open_stream(session_id)
    again = await worker.next_batch()
    assert [t.id for t in again.tasks] == [t.id for t in first.tasks]
    assert {t.attempt for t in again.tasks} == {2}
    assert again.dispatch_id != first.dispatch_id
    return again


async def finish_round(grid: Grid, worker: ManualWorker, client: RawClient, sid: str) -> None:
    """Stop the worker and the client, close the session, and check the server is healthy."""
    await worker.stop()
    client.cut()
    await grid.close(sid)
    await grid.healthy()
