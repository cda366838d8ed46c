"""grpc.aio servicer of alpcrun.v1.Admin: views of sessions, workers and totals; dead letters.

Listings come in pages, in id order (ULIDs: creation order), so that no answer grows with the
grid: a page holds at most ``page_size`` entries (default 500, at most 5,000) and stops before
it would pass 4 MiB (or half the message limit); a ListSessions page also stops after looking
at 50,000 sessions for its filters. ``next_page_token`` (the last id looked at) continues it.
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable
from typing import Any

import grpc.aio

from alpcrun import __version__
from alpcrun.constants import MAX_ID_LENGTH, MAX_MESSAGE_BYTES
from alpcrun.errors import AlpcrunError, InvalidArgument, NotFound, Unavailable
from alpcrun.proto import (
    AdminServicer,
    DeadLetter,
    DeadLetterCount,
    DiscardDeadLettersRequest,
    GetDeadLetterRequest,
    GetStatsRequest,
    ListDeadLettersRequest,
    ListDeadLettersResponse,
    ListSessionsRequest,
    ListSessionsResponse,
    ListWorkersRequest,
    ListWorkersResponse,
    ResubmitDeadLettersRequest,
    Stats,
)
from alpcrun.proto.status import abort_with
from alpcrun.queue_manager.convert import dead_letter, session_info, worker_info
from alpcrun.queue_manager.core import QueueCore
from alpcrun.queue_manager.explain import Explainer
from alpcrun.queue_manager.records import SessionRecord, WorkerPhase
from alpcrun.queue_manager.scheduler import UnbindReason

Context = grpc.aio.ServicerContext[Any, Any]
_DEFAULT_PAGE = 100
_MAX_PAGE = 10_000
_MAX_NAMED = 100_000
"""Most task ids one resubmit or discard request may name."""
_PAGE_BYTES = 1 << 19
"""A dead-letter page stops at this size, so a page of payloads fits in one message."""
DEFAULT_LIST_PAGE = 500
"""Sessions or workers in a listing page when the request does not say."""
MAX_LIST_PAGE = 5000
"""Most sessions or workers one listing page may ask for."""
_LIST_PAGE_BYTES = 4 << 20
"""A session or worker page stops before this size (or half the message limit)."""
MAX_SCANNED = 50_000
"""Most sessions one ListSessions page looks at for its filters (the page may come short)."""


async def _no_sync() -> None:
    return None


def _page(page_size: int, page_token: str) -> tuple[int, str]:
    """The page size (the default for 0) and the id to start after, checked."""
    if page_size > MAX_LIST_PAGE:
        raise InvalidArgument(f"at most {MAX_LIST_PAGE}", field="page_size")
    if len(page_token) > MAX_ID_LENGTH:
        raise InvalidArgument("not a page token of this queue manager", field="page_token")
    return page_size or DEFAULT_LIST_PAGE, page_token


class _SessionFilter:
    """The filters of a ListSessions request."""

    __slots__ = ("app", "closed", "tags")

    def __init__(self, request: ListSessionsRequest) -> None:
        self.tags = set(request.tags)
        self.app = request.app_id
        self.closed = request.include_closed

    def __call__(self, s: SessionRecord) -> bool:
        return (
            (self.closed or not s.closed)
            and (not self.app or s.config.app_id == self.app)
            and self.tags.issubset(s.config.tags)
        )


def _task_ids(ids: list[str]) -> list[str] | None:
    if len(ids) > _MAX_NAMED:
        raise InvalidArgument(f"at most {_MAX_NAMED} ids per request", field="task_ids")
    if any(not i or len(i) > MAX_ID_LENGTH for i in ids):
        raise InvalidArgument(f"each id must be 1..{MAX_ID_LENGTH} chars", field="task_ids")
    return ids or None


class AdminService(AdminServicer):
    """Admin views and dead-letter tooling over a :class:`QueueCore`.

    Args:
        core: The core.
        started_monotonic: When the queue manager started (for uptime).
        sync: Awaited after a change before answering (the journal's write), so an answered
            resubmit or discard survives a crash.
        max_message_bytes: The server's message size limit: a dead-letter page stops at
            512 KiB or half of it, whichever is less (a single larger letter comes alone).
    """

    def __init__(
        self,
        core: QueueCore,
        started_monotonic: float,
        sync: Callable[[], Awaitable[None]] = _no_sync,
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.core = core
        self.started = started_monotonic
        self._sync = sync
        self._page_bytes = min(_PAGE_BYTES, max_message_bytes // 2)
        self._list_bytes = min(_LIST_PAGE_BYTES, max_message_bytes // 2)

    async def ListSessions(
        self, request: ListSessionsRequest, context: Context
    ) -> ListSessionsResponse:
        """A page of sessions (closed ones only when asked), filtered by tags and app id."""
        try:
            size, after = _page(request.page_size, request.page_token)
        except AlpcrunError as exc:
            await abort_with(context, exc)
        wanted = _SessionFilter(request)
        explainer = Explainer(self.core.sessions.values(), self.core.workers.values())
        out = ListSessionsResponse()
        infos, nbytes = out.sessions, 0
        for scanned, s in enumerate(self.core.table.after(after), 1):
            if wanted(s):
                info = session_info(s, explainer.explain(s))
                nbytes += info.ByteSize() + 8  # with its tag and length prefix
                if len(infos) == size or (infos and nbytes > self._list_bytes):
                    out.next_page_token = infos[-1].session.id
                    break
                infos.append(info)
            if scanned >= MAX_SCANNED:
                out.next_page_token = s.id
                break
        return out

    async def ListWorkers(
        self, request: ListWorkersRequest, context: Context
    ) -> ListWorkersResponse:
        """A page of the registered workers."""
        try:
            size, after = _page(request.page_size, request.page_token)
        except AlpcrunError as exc:
            await abort_with(context, exc)
        clock = self.core.clock
        mono, wall = clock.monotonic(), clock.time()
        workers = self.core.workers
        ids = sorted(workers)  # at most max_registered_workers
        out = ListWorkersResponse()
        infos, nbytes = out.workers, 0
        for wid in ids[bisect.bisect_right(ids, after) :]:
            info = worker_info(workers[wid], mono, wall)
            nbytes += info.ByteSize() + 8
            if len(infos) == size or (infos and nbytes > self._list_bytes):
                out.next_page_token = infos[-1].id
                break
            infos.append(info)
        return out

    async def GetStats(self, request: GetStatsRequest, context: Context) -> Stats:
        """Grid totals: one light pass over sessions and workers (no per-session snapshot)."""
        core = self.core
        c = core.counters
        open_sessions = pending = letters = 0
        for s in core.sessions.values():
            open_sessions += not s.closed
            pending += s.queue.tasks
            letters += len(s.dead_letters)
        idle = bound = 0
        for w in core.workers.values():
            if w.phase is not WorkerPhase.IDLE:
                bound += 1
            elif not w.draining:
                idle += 1
        return Stats(
            sessions=open_sessions,
            workers=len(core.workers),
            idle_workers=idle,
            bound_workers=bound,
            pending_tasks=pending,
            submitted_tasks=c.submitted,
            completed_tasks=c.completed,
            failed_tasks=c.failed,
            version=__version__,
            uptime_seconds=core.clock.monotonic() - self.started,
            preemptions=c.unbinds_by_reason.get(UnbindReason.PREEMPTED.value, 0),
            binds=c.binds,
            unbinds=c.unbinds,
            workers_lost=c.workers_lost,
            retried_tasks=c.retried_tasks,
            timed_out_attempts=c.timed_out_attempts,
            duplicate_results=c.duplicate_results,
            duplicate_batches=c.duplicate_batches,
            dead_letters=letters,
            journal=core.journal.enabled,
            task_bytes=c.task_bytes,
            result_bytes=c.result_bytes,
            dead_letter_bytes=c.letter_bytes,
        )

    # ------------------------------------------------------------------ dead letters
    async def ListDeadLetters(
        self, request: ListDeadLettersRequest, context: Context
    ) -> ListDeadLettersResponse:
        """A page of a session's dead letters, oldest first."""
        try:
            record = self.core.session(request.session_id)
            if request.limit > _MAX_PAGE:
                raise InvalidArgument(f"at most {_MAX_PAGE}", field="limit")
        except AlpcrunError as exc:
            await abort_with(context, exc)
        entries, next_after = record.dead_letters.page(
            request.after, request.limit or _DEFAULT_PAGE
        )
        letters: list[DeadLetter] = []
        size = 0
        for entry in entries:
            letter = dead_letter(record.id, entry, payload=request.include_payload)
            size += letter.ByteSize() + 8  # with its tag and length prefix
            if letters and size > self._page_bytes:  # the page would not fit in one message
                next_after = letters[-1].task.id
                break
            letters.append(letter)
        return ListDeadLettersResponse(
            letters=letters, total=len(record.dead_letters), next_after=next_after
        )

    async def GetDeadLetter(self, request: GetDeadLetterRequest, context: Context) -> DeadLetter:
        """One dead letter with its payload."""
        try:
            record = self.core.session(request.session_id)
            entry = record.dead_letters.get(request.task_id)
            if entry is None:
                raise NotFound(
                    f"task {request.task_id[:MAX_ID_LENGTH]!r} is not a dead letter of "
                    f"session {record.id}",
                    field="task_id",
                )
        except AlpcrunError as exc:
            await abort_with(context, exc)
        return dead_letter(record.id, entry, payload=True)

    def _check_journal(self) -> None:
        """Refuse a change while the journal cannot write it (it would never be acknowledged)."""
        if (failure := self.core.journal.failure) is not None:
            raise Unavailable(failure)

    async def ResubmitDeadLetters(
        self, request: ResubmitDeadLettersRequest, context: Context
    ) -> DeadLetterCount:
        """Queue dead letters again."""
        try:
            self._check_journal()
            count, missing = self.core.resubmit_dead_letters(
                request.session_id,
                _task_ids(list(request.task_ids)),
                reset_attempts=request.reset_attempts,
            )
            await self._sync()
        except AlpcrunError as exc:
            await abort_with(context, exc)
        return DeadLetterCount(count=count, not_found=missing)

    async def DiscardDeadLetters(
        self, request: DiscardDeadLettersRequest, context: Context
    ) -> DeadLetterCount:
        """Drop dead letters for good."""
        try:
            self._check_journal()
            count, missing = self.core.discard_dead_letters(
                request.session_id, _task_ids(list(request.task_ids))
            )
            await self._sync()
        except AlpcrunError as exc:
            await abort_with(context, exc)
        return DeadLetterCount(count=count, not_found=missing)
