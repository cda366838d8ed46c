"""grpc.aio servicer of alpcrun.v1.Admin: views of sessions, workers and totals; dead letters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc.aio

from alpcrun import __version__
from alpcrun.constants import MAX_ID_LENGTH, MAX_MESSAGE_BYTES
from alpcrun.errors import AlpcrunError, InvalidArgument, NotFound
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
from alpcrun.queue_manager.scheduler import UnbindReason

Context = grpc.aio.ServicerContext[Any, Any]
_DEFAULT_PAGE = 100
_MAX_PAGE = 10_000
_MAX_NAMED = 100_000
"""Most task ids one resubmit or discard request may name."""
_PAGE_BYTES = 1 << 19
"""A dead-letter page stops at this size, so a page of payloads fits in one message."""


async def _no_sync() -> None:
    return None


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

    async def ListSessions(
        self, request: ListSessionsRequest, context: Context
    ) -> ListSessionsResponse:
        """Sessions (closed ones only when asked), filtered by tags and app id, explained."""
        tags = set(request.tags)
        records = [
            s
            for s in self.core.sessions.values()
            if (request.include_closed or not s.closed)
            and (not request.app_id or s.config.app_id == request.app_id)
            and tags.issubset(s.config.tags)
        ]
        explainer = Explainer(self.core.sessions.values(), self.core.workers.values())
        return ListSessionsResponse(
            sessions=[session_info(s, explainer.explain(s)) for s in records]
        )

    async def ListWorkers(
        self, request: ListWorkersRequest, context: Context
    ) -> ListWorkersResponse:
        """Every registered worker."""
        clock = self.core.clock
        mono, wall = clock.monotonic(), clock.time()
        return ListWorkersResponse(
            workers=[worker_info(w, mono, wall) for w in self.core.workers.values()]
        )

    async def GetStats(self, request: GetStatsRequest, context: Context) -> Stats:
        """Grid totals."""
        st = self.core.statistics()
        return Stats(
            sessions=sum(1 for s in st.sessions if s.state != 3),
            workers=st.workers,
            idle_workers=st.idle_workers,
            bound_workers=st.bound_workers,
            pending_tasks=sum(s.pending_tasks for s in st.sessions),
            submitted_tasks=st.submitted,
            completed_tasks=st.completed,
            failed_tasks=st.failed,
            version=__version__,
            uptime_seconds=self.core.clock.monotonic() - self.started,
            preemptions=dict(st.unbinds_by_reason).get(UnbindReason.PREEMPTED.value, 0),
            binds=st.binds,
            unbinds=st.unbinds,
            workers_lost=self.core.workers_lost,
            retried_tasks=st.retried_tasks,
            timed_out_attempts=st.timed_out_attempts,
            duplicate_results=st.duplicate_results,
            duplicate_batches=st.duplicate_batches,
            dead_letters=st.dead_letters,
            journal=self.core.journal.enabled,
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

    async def ResubmitDeadLetters(
        self, request: ResubmitDeadLettersRequest, context: Context
    ) -> DeadLetterCount:
        """Queue dead letters again."""
        try:
            count, missing = self.core.resubmit_dead_letters(
                request.session_id,
                _task_ids(list(request.task_ids)),
                reset_attempts=request.reset_attempts,
            )
        except AlpcrunError as exc:
            await abort_with(context, exc)
        await self._sync()
        return DeadLetterCount(count=count, not_found=missing)

    async def DiscardDeadLetters(
        self, request: DiscardDeadLettersRequest, context: Context
    ) -> DeadLetterCount:
        """Drop dead letters for good."""
        try:
            count, missing = self.core.discard_dead_letters(
                request.session_id, _task_ids(list(request.task_ids))
            )
        except AlpcrunError as exc:
            await abort_with(context, exc)
        await self._sync()
        return DeadLetterCount(count=count, not_found=missing)
