"""Binding policy: which idle worker serves which session (pure, no I/O, clock passed in).

The policy, run on every scheduler tick and right after events that change demand:

1. Release. A bound worker is unbound when its session is closed, when the session has more
   active workers than ``max_workers``, or when the session has had no work and no client
   activity for ``idle_timeout``.
2. Assign. Sessions that want more workers (one per queued or in-flight batch, at least
   ``min_workers`` while they have work, at most ``max_workers``) are served in priority order
   (higher first). Within one priority level workers are shared fairly: each idle worker goes to
   the session with the smallest ratio of bound to wanted workers (weighted round robin by
   pending work). A worker only serves sessions whose ``worker_selector`` its labels satisfy.
3. Reclaim. If a session still wants workers after every idle worker is placed, workers bound to
   sessions that currently have no work at all are unbound so they can move (work
   conservation). Workers of sessions with work are never taken in this version.

Draining workers are never bound. Anti-thrashing: a worker bound within the last
``min_bind_seconds`` (default 0) is not reclaimed.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from alpcrun.queue_manager.records import SessionRecord, WorkerPhase, WorkerRecord


@dataclass(frozen=True, slots=True)
class Bind:
    """Bind an idle worker to a session."""

    worker_id: str
    session_id: str


@dataclass(frozen=True, slots=True)
class Unbind:
    """Unbind a worker from its session."""

    worker_id: str
    session_id: str
    reason: str


Action = Bind | Unbind


class Scheduler:
    """The binding policy. ``plan`` is a pure function of the records and ``now``."""

    def __init__(self, *, min_bind_seconds: float = 0.0) -> None:
        self._min_bind_seconds = min_bind_seconds

    def plan(
        self, sessions: Iterable[SessionRecord], workers: Iterable[WorkerRecord], now: float
    ) -> list[Action]:
        """Return the binds and unbinds that bring the grid closer to the policy."""
        sessions = list(sessions)
        actions: list[Action] = []
        for session in sessions:
            actions.extend(self._releases(session, now))
        released = {a.worker_id for a in actions}
        idle = [w for w in workers if w.phase is WorkerPhase.IDLE and not w.draining]
        binds, unmet = self._assign(sessions, idle)
        actions.extend(binds)
        if unmet:
            actions.extend(self._reclaim(sessions, unmet, released, now))
        return actions

    def _releases(self, session: SessionRecord, now: float) -> list[Unbind]:
        active = [w for w in session.workers.values() if w.phase is WorkerPhase.BOUND]
        if not active:
            return []
        if session.closed:
            return [Unbind(w.id, session.id, "session closed") for w in active]
        cap = session.config.max_workers
        if cap and len(active) > cap:
            extra = sorted(active, key=lambda w: len(w.inflight))[: len(active) - cap]
            return [Unbind(w.id, session.id, "max_workers lowered") for w in extra]
        idle_for = now - session.last_activity
        if not session.has_work and idle_for >= session.config.idle_timeout_s:
            return [Unbind(w.id, session.id, "session idle") for w in active]
        return []

    def _assign(
        self, sessions: list[SessionRecord], idle: list[WorkerRecord]
    ) -> tuple[list[Bind], list[SessionRecord]]:
        heap: list[tuple[int, float, int, SessionRecord, int]] = []
        for seq, s in enumerate(sessions):
            wanted = s.wanted_workers()
            have = s.active_workers()
            if wanted > have:
                heapq.heappush(heap, (-s.config.priority, have / wanted, seq, s, have))
        binds: list[Bind] = []
        unmet: list[SessionRecord] = []
        while heap:
            neg_prio, _, seq, s, have = heapq.heappop(heap)
            worker = next((w for w in idle if w.matches(s.config.worker_selector)), None)
            if worker is None:
                unmet.append(s)
                continue
            idle.remove(worker)
            binds.append(Bind(worker.id, s.id))
            have += 1
            wanted = s.wanted_workers()
            if have < wanted:
                heapq.heappush(heap, (neg_prio, have / wanted, seq, s, have))
        return binds, unmet

    def _reclaim(
        self,
        sessions: list[SessionRecord],
        unmet: list[SessionRecord],
        already: set[str],
        now: float,
    ) -> list[Unbind]:
        out: list[Unbind] = []
        for donor in sessions:
            if donor.has_work or donor.closed:
                continue
            for w in donor.workers.values():
                if w.phase is not WorkerPhase.BOUND or w.id in already:
                    continue
                if now - w.bound_at < self._min_bind_seconds:
                    continue  # anti-thrashing: a fresh bind is not moved at once
                if any(w.matches(s.config.worker_selector) for s in unmet):
                    out.append(Unbind(w.id, donor.id, "reclaimed for pending work"))
        return out
