"""grpc.aio servicer of alpcrun.v1.Admin: read-only views of sessions, workers and totals."""

from __future__ import annotations

from typing import Any

import grpc.aio

from alpcrun import __version__
from alpcrun.proto import (
    AdminServicer,
    GetStatsRequest,
    ListSessionsRequest,
    ListSessionsResponse,
    ListWorkersRequest,
    ListWorkersResponse,
    Stats,
)
from alpcrun.queue_manager.convert import session_info, worker_info
from alpcrun.queue_manager.core import QueueCore
from alpcrun.queue_manager.explain import Explainer
from alpcrun.queue_manager.scheduler import UnbindReason

Context = grpc.aio.ServicerContext[Any, Any]


class AdminService(AdminServicer):
    """Admin views over a :class:`QueueCore`."""

    def __init__(self, core: QueueCore, started_monotonic: float) -> None:
        self.core = core
        self.started = started_monotonic

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
        )
