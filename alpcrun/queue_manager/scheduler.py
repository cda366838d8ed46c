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

from alpcrun.queue_manager.records import SessionRecord, WorkerPhase, WorkerRecord

LabelKey = frozenset[tuple[str, str]]


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


@dataclass(slots=True)
class _Demand:
    session: SessionRecord
    base: int
    """Workers it keeps from earlier plans."""
    active: int
    """``base`` plus the workers this plan gives it."""
    wanted: int
    guarantee: int


class _Pools:
    """Idle workers grouped by label set, and the waiting sessions' unmet need per selector."""

    def __init__(self, workers: list[WorkerRecord]) -> None:
        self.idle: dict[LabelKey, list[WorkerRecord]] = {}
        self.transit: dict[LabelKey, int] = {}
        for w in workers:
            if w.draining:
                continue
            if w.phase is WorkerPhase.IDLE:
                self.idle.setdefault(w.label_key, []).append(w)
            elif w.phase is WorkerPhase.UNBINDING:
                self.transit[w.label_key] = self.transit.get(w.label_key, 0) + 1
        for pool in self.idle.values():
            pool.reverse()  # pop() hands out the longest-registered worker first
        self.order = list(self.idle)
        self.count = sum(len(v) for v in self.idle.values())

    def rank(self, demand: list[_Demand]) -> None:
        """Record what the waiting sessions need, to choose between label sets in ``take``."""
        self.deficit: dict[tuple[LabelKey, int], int] = {}
        if len(self.order) < 2:
            return
        for d in demand:
            if d.active < d.wanted:
                key = (d.session.config.selector_key, d.session.config.priority)
                self.deficit[key] = self.deficit.get(key, 0) + d.wanted - d.active
        total = {k: self._pressure(k, -1) for k in self.order}
        self.order.sort(key=lambda k: (total[k], len(k)))

    def _pressure(self, key: LabelKey, above: int) -> int:
        """Unmet need, at priorities above ``above``, that workers with ``key`` could fill."""
        return sum(n for (sel, prio), n in self.deficit.items() if prio > above and sel <= key)

    def take(self, d: _Demand) -> WorkerRecord | None:
        """Pop an idle worker for ``d``.

        Of the label sets that match its selector: the one higher-priority sessions need
        least, then the one the fewest waiting sessions need (the order of ``rank``).
        """
        selector, prio = d.session.config.selector_key, d.session.config.priority
        best: LabelKey | None = None
        best_pressure = 0
        for key in self.order:
            if not self.idle[key] or not selector <= key:
                continue
            if not self.deficit:
                best = key
                break
            pressure = self._pressure(key, prio)
            if best is None or pressure < best_pressure:
                best, best_pressure = key, pressure
                if pressure == 0:
                    break
        if best is None:
            return None
        self.count -= 1
        if self.deficit:
            dkey = (selector, prio)
            if self.deficit.get(dkey, 0) > 0:
                self.deficit[dkey] -= 1
        return self.idle[best].pop()

    def take_transit(self, selector: LabelKey, need: int) -> int:
        """Claim up to ``need`` unbinding workers that match; return how many were claimed."""
        got = 0
        for key, n in self.transit.items():
            if got == need:
                break
            if n and selector <= key:
                k = min(n, need - got)
                self.transit[key] = n - k
                got += k
        return got


class Scheduler:
    """The binding policy. ``plan`` is a pure function of the records and ``now``."""

    def __init__(self, *, min_bind_seconds: float = 0.0) -> None:
        self.min_bind_seconds = min_bind_seconds

    def plan(
        self, sessions: Iterable[SessionRecord], workers: Iterable[WorkerRecord], now: float
    ) -> list[Action]:
        """Return the binds and unbinds that bring the grid closer to the policy."""
        actions: list[Action] = []
        demand: list[_Demand] = []
        parked: list[tuple[WorkerRecord, SessionRecord]] = []
        donors: list[_Demand] = []
        for s in sessions:
            if s.closed:
                if s.workers:
                    actions.extend(Unbind(w.id, s.id, UnbindReason.CLOSED) for w in _bound(s))
                continue
            active = self._release(s, now, actions) if s.workers else 0
            if not (s.queue or s.inflight_batches):
                if active:
                    parked.extend((w, s) for w in _bound(s) if self._movable(w, now))
                continue
            wanted = s.wanted_workers()
            d = _Demand(s, active, active, wanted, min(s.config.min_workers, wanted))
            if active < wanted or s.config.preemptible:
                demand.append(d)
            if s.config.preemptible and active > d.guarantee:
                donors.append(d)
        workers = list(workers)
        pools = _Pools(workers)
        binds, unmet = self._allocate(demand, pools)
        if unmet and (parked or donors or pools.transit):
            before = len(actions)
            self._reclaim(unmet, parked, donors, pools, now, actions)
            if any(a.reason is UnbindReason.PREEMPTED for a in actions[before:]):  # type: ignore[union-attr]
                # Donors now hold fewer workers: hand the idle ones out again with that known,
                # so a plain worker is not given to a lower priority than a donor's.
                binds, _ = self._allocate(demand, _Pools(workers))
        actions.extend(binds)
        return actions

    def _allocate(self, demand: list[_Demand], pools: _Pools) -> tuple[list[Action], list[_Demand]]:
        """Guarantees first, then shares; return the binds and the sessions left short."""
        binds: list[Action] = []
        for d in demand:
            d.active = d.base
        pools.rank(demand)
        for d in sorted(
            (d for d in demand if d.active < d.guarantee),
            key=lambda d: (-d.session.config.priority, d.session.seq),
        ):
            self._fill(d, d.guarantee, pools, binds)
        return binds, self._share(demand, pools, binds)

    # ------------------------------------------------------------------ steps
    def _release(self, s: SessionRecord, now: float, actions: list[Action]) -> int:
        """Unbind what the session may no longer hold; return the workers it keeps."""
        bound = _bound(s)
        if not bound:
            return 0
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
            return 0
        if cfg.max_workers and len(bound) > cfg.max_workers:
            bound.sort(key=lambda w: len(w.inflight))
            extra = len(bound) - cfg.max_workers
            actions.extend(Unbind(w.id, s.id, UnbindReason.MAX_WORKERS) for w in bound[:extra])
            return cfg.max_workers
        return len(bound)

    @staticmethod
    def _fill(d: _Demand, target: int, pools: _Pools, actions: list[Action]) -> None:
        while d.active < target and pools.count:
            w = pools.take(d)
            if w is None:
                return
            actions.append(Bind(w.id, d.session.id))
            d.active += 1

    @staticmethod
    def _share(demand: list[_Demand], pools: _Pools, actions: list[Action]) -> list[_Demand]:
        """Hand idle workers out by priority, max-min fair within a level; return the unmet."""
        heap = [
            (-d.session.config.priority, d.active, d.session.seq, i)
            for i, d in enumerate(demand)
            if d.active < d.wanted
        ]
        heapq.heapify(heap)
        unmet: list[_Demand] = []
        while heap and pools.count:
            neg_prio, _, seq, i = heapq.heappop(heap)
            d = demand[i]
            w = pools.take(d)
            if w is None:
                unmet.append(d)
                continue
            actions.append(Bind(w.id, d.session.id))
            d.active += 1
            if d.active < d.wanted:
                heapq.heappush(heap, (neg_prio, d.active, seq, i))
        unmet.extend(demand[entry[3]] for entry in heap)
        unmet.sort(key=lambda d: (-d.session.config.priority, d.session.seq))
        return unmet

    def _reclaim(
        self,
        unmet: list[_Demand],
        parked: list[tuple[WorkerRecord, SessionRecord]],
        donors: list[_Demand],
        pools: _Pools,
        now: float,
        actions: list[Action],
    ) -> None:
        donors.sort(key=lambda d: (d.session.config.priority, -d.session.seq))
        victims = {id(d): self._victims(d, now) for d in donors}
        for d in unmet:
            selector = d.session.config.selector_key
            need = d.wanted - d.active
            need -= pools.take_transit(selector, need)
            if need and parked:
                keep: list[tuple[WorkerRecord, SessionRecord]] = []
                for w, owner in parked:
                    if need and selector <= w.label_key:
                        actions.append(Unbind(w.id, owner.id, UnbindReason.RECLAIMED))
                        need -= 1
                    else:
                        keep.append((w, owner))
                parked = keep
            prio = d.session.config.priority
            if need and donors and donors[0].session.config.priority < prio:
                for donor in donors:
                    if need == 0 or donor.session.config.priority >= prio:
                        break
                    need = self._preempt(donor, victims[id(donor)], selector, need, actions)
                donors = [x for x in donors if x.active > x.guarantee and victims[id(x)]]

    @staticmethod
    def _preempt(
        donor: _Demand,
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

    def _victims(self, donor: _Demand, now: float) -> list[WorkerRecord]:
        """A donor's workers in preemption order: least in-flight work, then newest bind."""
        ws = [w for w in _bound(donor.session) if self._movable(w, now)]
        ws.sort(key=lambda w: (len(w.inflight), -w.bound_at))
        return ws

    def _movable(self, w: WorkerRecord, now: float) -> bool:
        return not w.draining and now - w.bound_at >= self.min_bind_seconds


def _bound(s: SessionRecord) -> list[WorkerRecord]:
    return [w for w in s.workers.values() if w.phase is WorkerPhase.BOUND]
