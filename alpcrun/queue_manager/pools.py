"""Working sets of one scheduler plan: per-session demand and the idle workers by label set."""

from __future__ import annotations

from dataclasses import dataclass, field

from alpcrun.queue_manager.records import SessionRecord, WorkerPhase, WorkerRecord

LabelKey = frozenset[tuple[str, str]]
LEVELS = 11  # priorities 0..10


@dataclass(slots=True)
class Demand:
    """One session's demand during a plan."""

    session: SessionRecord
    priority: int
    base: int
    """Workers it keeps from earlier plans."""
    active: int
    """``base`` plus the workers this plan gives it."""
    wanted: int
    """One worker per queued or in-flight batch, within min/max workers."""
    guarantee: int
    """``min(min_workers, wanted)``."""


@dataclass(slots=True)
class Survey:
    """What one pass over the sessions found."""

    levels: list[list[Demand]] = field(default_factory=lambda: [[] for _ in range(LEVELS)])
    """Sessions with work that are short of workers or preemptible, by priority."""
    parked: list[tuple[WorkerRecord, SessionRecord]] = field(default_factory=list)
    """Movable workers bound to sessions without work."""
    donors: list[Demand] = field(default_factory=list)
    """Preemptible sessions holding more than their guarantee."""
    deficit: dict[tuple[LabelKey, int], int] = field(default_factory=dict)
    """Unmet need by (selector, priority)."""


class Pools:
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
        self.deficit: dict[tuple[LabelKey, int], int] = {}

    def rank(self, deficit: dict[tuple[LabelKey, int], int]) -> None:
        """Take the unmet need per (selector, priority), for ``take`` to choose label sets.

        Label sets the waiting sessions need least come first, then those with fewer labels.
        """
        self.deficit = {}
        if len(self.order) < 2 or not self.count:
            return
        self.deficit = dict(deficit)
        total = {k: self._pressure(k, -1) for k in self.order}
        self.order.sort(key=lambda k: (total[k], len(k)))

    def _pressure(self, key: LabelKey, above: int) -> int:
        """Unmet need, at priorities above ``above``, that workers with ``key`` could fill."""
        return sum(n for (sel, prio), n in self.deficit.items() if prio > above and sel <= key)

    def take(self, d: Demand) -> WorkerRecord | None:
        """Pop an idle worker for ``d``.

        Of the label sets that match its selector: the one whose idle workers exceed what
        higher-priority sessions need of it by most (so a scarce set is kept for the
        sessions that can use nothing else), then the one the fewest waiting sessions need
        (the order of ``rank``).
        """
        selector, prio = d.session.config.selector_key, d.priority
        best: LabelKey | None = None
        best_pressure = 0
        for key in self.order:
            if not self.idle[key] or not selector <= key:
                continue
            if not self.deficit:
                best = key
                break
            # Need beyond what the set has to spare: a set with more idle workers than the
            # higher-priority sessions need of it gives one away at no cost to them.
            pressure = self._pressure(key, prio) - len(self.idle[key])
            if best is None or pressure < best_pressure:
                best, best_pressure = key, pressure
                if pressure < 0:
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
