"""Binding policy: which worker serves which session (pure, no I/O, clock passed in).

``Scheduler.plan`` runs on every tick and right after events that change demand. It reads the
session and worker records and returns binds and unbinds; the core carries them out. A worker
serves one session at a time and keeps serving it (no per-batch rebinding: a bind may cost
setup and shared-data fetches), so the policy is about *who gets a free worker* and *when a
bound worker must move*.

Demand. A session with work (queued or in-flight batches) wants one worker per batch, at
least ``min_workers`` and at most ``max_workers``. Its guarantee is ``min(min_workers,
wanted)``.

1. Release. A bound worker is unbound when its session is closed, when the session's
   ``worker_selector`` no longer matches it, when the session has more workers than
   ``max_workers`` (those with the fewest in-flight batches go first), or when the session has
   had neither work nor client activity for ``idle_timeout``.
2. Guarantees. Sessions below their guarantee get idle workers first, higher priority first.
3. Shares. The remaining idle workers go by strict priority: no worker goes to a priority
   level while a higher level still wants one it can take. Within a level the next worker goes
   to the session with the fewest bound workers (max-min fair share), older session first on
   ties; a session never gets more than it wants. A worker only goes to sessions whose
   ``worker_selector`` its labels satisfy. When several label sets would do, a session gets the
   one that higher-priority sessions need least, then the one the fewest waiting sessions could
   use, then the one with fewer labels: a GPU worker is not spent on a session that any worker
   serves while a GPU session waits.
4. Reclaim and preemption, for sessions still short of workers, highest priority first:
   workers already unbinding that would suit the session count as on their way (no second
   worker is taken for the same need); then workers parked on sessions that have no work left
   are reclaimed (work conservation); then workers of ``preemptible`` sessions of strictly
   lower priority are preempted, lowest priority first, never below the donor's guarantee.
   A reclaimed or preempted worker finishes the batches it holds (or they are requeued at the
   head of their queue if it dies) and becomes idle; step 3 then gives it to the neediest
   session. Non-preemptible sessions keep their workers while they have work: a session that
   arrives later at the same or a higher priority gets workers as they free up (or as the
   autoscaler adds them, since ``wanted`` counts its demand).

Anti-thrashing: a worker bound less than ``min_bind_seconds`` ago is neither reclaimed nor
preempted, and preemption only flows from lower to higher priority, so a worker cannot be
rebound back and forth between two sessions.

Cost: O(S log S + W·P) per plan for S sessions, W workers and P distinct label sets.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from alpcrun.queue_manager.pools import LEVELS, Demand, LabelKey, Pools, Survey
from alpcrun.queue_manager.records import CLOSED_STATE, SessionRecord, WorkerPhase, WorkerRecord


class UnbindReason(enum.Enum):
    """Why the scheduler unbinds a worker (also the ``reason`` label of the unbind counter)."""

    CLOSED = "session_closed"
    SELECTOR = "worker_selector"
    MAX_WORKERS = "max_workers"
    IDLE = "session_idle"
    RECLAIMED = "reclaimed"
    PREEMPTED = "preempted"


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
    reason: UnbindReason


Action = Bind | Unbind


class Scheduler:
    """The binding policy. ``plan`` is a pure function of the records and ``now``."""

    def __init__(self, *, min_bind_seconds: float = 0.0) -> None:
        self.min_bind_seconds = min_bind_seconds

    def plan(
        self, sessions: Iterable[SessionRecord], workers: Iterable[WorkerRecord], now: float
    ) -> list[Action]:
        """Return the binds and unbinds that bring the grid closer to the policy.

        ``sessions`` must come in creation order (the core's dict order): ties go to the
        older session.
        """
        actions: list[Action] = []
        sv = self._survey(sessions, now, actions)
        workers = list(workers)
        pools = Pools(workers)
        binds = self._allocate(sv, pools)
        if sv.parked or sv.donors or pools.transit:
            before = len(actions)
            self._reclaim(sv, pools, now, actions)
            if any(a.reason is UnbindReason.PREEMPTED for a in actions[before:]):  # type: ignore[union-attr]
                # Donors now hold fewer workers: hand the idle ones out again with that known,
                # so a plain worker is not given to a lower priority than a donor's.
                binds = self._allocate(sv, Pools(workers))
        actions.extend(binds)
        return actions

    # ------------------------------------------------------------------ steps
    def _survey(
        self, sessions: Iterable[SessionRecord], now: float, actions: list[Action]
    ) -> Survey:
        """Releases, then each session's demand by priority level, parked workers, donors."""
        sv = Survey()
        levels, parked, donors, deficit = sv.levels, sv.parked, sv.donors, sv.deficit
        for s in sessions:
            if s.state == CLOSED_STATE:
                if s.workers:
                    actions.extend(Unbind(w.id, s.id, UnbindReason.CLOSED) for w in _bound(s))
                continue
            kept = self._release(s, now, actions) if s.workers else []
            active = len(kept)
            pending = s.queue.batches + s.inflight_batches
            if not pending:
                parked.extend((w, s) for w in kept if self._movable(w, now))
                continue
            cfg = s.config
            # SessionRecord.wanted_workers, inlined: this loop visits every session each tick.
            wanted = pending if pending > cfg.min_workers else cfg.min_workers
            if cfg.max_workers and wanted > cfg.max_workers:
                wanted = cfg.max_workers
            if active < wanted or cfg.preemptible:
                prio = cfg.priority
                guarantee = cfg.min_workers if cfg.min_workers < wanted else wanted
                d = Demand(s, prio, active, active, wanted, guarantee)
                levels[prio].append(d)
                if active < wanted:
                    key = (cfg.selector_key, prio)
                    deficit[key] = deficit.get(key, 0) + wanted - active
                if cfg.preemptible and active > guarantee:
                    donors.append(d)
        return sv

    def _release(self, s: SessionRecord, now: float, actions: list[Action]) -> list[WorkerRecord]:
        """Unbind what the session may no longer hold; return the bound workers it keeps."""
        bound = _bound(s)
        if not bound:
            return bound
        cfg = s.config
        if cfg.selector_key:
            keep = []
            for w in bound:
                if cfg.selector_key <= w.label_key:
                    keep.append(w)
                else:
                    actions.append(Unbind(w.id, s.id, UnbindReason.SELECTOR))
            bound = keep
        if not (s.queue or s.inflight_batches) and now - s.last_activity >= cfg.idle_timeout_s:
            actions.extend(Unbind(w.id, s.id, UnbindReason.IDLE) for w in bound)
            return []
        if cfg.max_workers and len(bound) > cfg.max_workers:
            bound.sort(key=lambda w: len(w.inflight))
            extra = len(bound) - cfg.max_workers
            actions.extend(Unbind(w.id, s.id, UnbindReason.MAX_WORKERS) for w in bound[:extra])
            return bound[extra:]
        return bound

    def _allocate(self, sv: Survey, pools: Pools) -> list[Action]:
        """Guarantees first (higher priority first), then shares level by level."""
        binds: list[Action] = []
        levels = sv.levels
        for level in levels:
            for d in level:
                d.active = d.base
        if not pools.count:
            return binds
        pools.rank(sv.deficit)
        for level in reversed(levels):
            for d in level:
                while d.active < d.guarantee and pools.count:
                    w = pools.take(d)
                    if w is None:
                        break
                    binds.append(Bind(w.id, d.session.id))
                    d.active += 1
        for level in reversed(levels):
            if not pools.count:
                break
            self._share(level, pools, binds)
        return binds

    @staticmethod
    def _share(level: list[Demand], pools: Pools, binds: list[Action]) -> None:
        """Max-min fair share within one level: fewest bound first, older first on ties."""
        heap = [(d.active, i, d) for i, d in enumerate(level) if d.active < d.wanted]
        heapq.heapify(heap)
        while heap and pools.count:
            _, i, d = heapq.heappop(heap)
            w = pools.take(d)
            if w is None:
                continue  # nothing idle matches its selector
            binds.append(Bind(w.id, d.session.id))
            d.active += 1
            if d.active < d.wanted:
                heapq.heappush(heap, (d.active, i, d))

    def _reclaim(self, sv: Survey, pools: Pools, now: float, actions: list[Action]) -> None:
        """Short sessions, highest priority first, take in-transit, parked, then preemptible."""
        levels, parked, donors = sv.levels, sv.parked, sv.donors
        donors.sort(key=lambda d: (d.priority, -d.session.seq))
        victims: dict[int, list[WorkerRecord]] = {}
        transit = sum(pools.transit.values())
        for prio in range(LEVELS - 1, -1, -1):
            if not (transit or parked or (donors and donors[0].priority < prio)):
                return  # nothing left that this or any lower level could take
            for d in levels[prio]:
                need = d.wanted - d.active
                if need <= 0:
                    continue
                selector = d.session.config.selector_key
                if transit:
                    got = pools.take_transit(selector, need)
                    transit -= got
                    need -= got
                if need and parked:
                    need, parked = _reclaim_parked(selector, need, parked, actions)
                if need and donors and donors[0].priority < prio:
                    donors = self._preempt_for(d, need, donors, victims, now, actions)

    def _preempt_for(
        self,
        d: Demand,
        need: int,
        donors: list[Demand],
        victims: dict[int, list[WorkerRecord]],
        now: float,
        actions: list[Action],
    ) -> list[Demand]:
        """Preempt for ``d`` from lower-priority donors, lowest first; return donors left."""
        selector = d.session.config.selector_key
        for donor in donors:
            if need == 0 or donor.priority >= d.priority:
                break
            if id(donor) not in victims:
                victims[id(donor)] = self._victims(donor, now)
            need = _preempt(donor, victims[id(donor)], selector, need, actions)
        return [x for x in donors if x.active > x.guarantee and victims.get(id(x), True)]

    def _victims(self, donor: Demand, now: float) -> list[WorkerRecord]:
        """A donor's workers in preemption order: least in-flight work, then newest bind."""
        ws = [w for w in _bound(donor.session) if self._movable(w, now)]
        ws.sort(key=lambda w: (len(w.inflight), -w.bound_at))
        return ws

    def _movable(self, w: WorkerRecord, now: float) -> bool:
        return not w.draining and now - w.bound_at >= self.min_bind_seconds


def _reclaim_parked(
    selector: LabelKey,
    need: int,
    parked: list[tuple[WorkerRecord, SessionRecord]],
    actions: list[Action],
) -> tuple[int, list[tuple[WorkerRecord, SessionRecord]]]:
    """Unbind up to ``need`` matching parked workers; return what is still needed and the rest."""
    keep: list[tuple[WorkerRecord, SessionRecord]] = []
    for w, owner in parked:
        if need and selector <= w.label_key:
            actions.append(Unbind(w.id, owner.id, UnbindReason.RECLAIMED))
            need -= 1
        else:
            keep.append((w, owner))
    return need, keep


def _preempt(
    donor: Demand,
    victims: list[WorkerRecord],
    selector: LabelKey,
    need: int,
    actions: list[Action],
) -> int:
    """Take up to ``need`` matching workers from a donor; return what is still needed."""
    i = 0
    while i < len(victims) and need and donor.active > donor.guarantee:
        w = victims[i]
        if selector <= w.label_key:
            del victims[i]
            actions.append(Unbind(w.id, donor.session.id, UnbindReason.PREEMPTED))
            donor.active -= 1
            donor.base -= 1
            need -= 1
        else:
            i += 1
    return need


def _bound(s: SessionRecord) -> list[WorkerRecord]:
    return [w for w in s.workers.values() if w.phase is WorkerPhase.BOUND]
