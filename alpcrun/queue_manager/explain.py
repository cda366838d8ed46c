"""Why a session with pending work has fewer workers than it wants (for admin and status).

Computed on demand from the records, with the same rules as the scheduler
(:mod:`alpcrun.queue_manager.scheduler`): one pass over the workers builds, per label set, how
many workers are idle, unbinding, or bound to sessions of each priority; each session is then
explained in O(label sets · priority levels).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from alpcrun.queue_manager.pools import LEVELS
from alpcrun.queue_manager.records import SessionRecord, WorkerPhase, WorkerRecord


@dataclass(frozen=True, slots=True)
class Waiting:
    """Why a session waits for workers."""

    code: str
    """Stable code: ``max_workers``, ``no_workers``, ``no_matching_worker``, ``scheduling``,
    ``workers_draining``, ``workers_moving``, ``lower_priority``, ``fair_share``,
    ``not_preemptible`` or ``all_bound``."""
    message: str
    """One line for people."""


@dataclass(slots=True)
class _Pool:
    idle: int = 0
    moving: int = 0
    draining: int = 0
    held: list[int] = field(default_factory=lambda: [0] * LEVELS)
    holders: list[set[str]] = field(default_factory=lambda: [set() for _ in range(LEVELS)])


class Explainer:
    """Explains waiting sessions against one snapshot of the workers."""

    def __init__(self, sessions: Iterable[SessionRecord], workers: Iterable[WorkerRecord]) -> None:
        self._sessions = {s.id: s for s in sessions}
        self._pools: dict[frozenset[tuple[str, str]], _Pool] = {}
        self._workers = 0
        for w in workers:
            self._workers += 1
            pool = self._pools.setdefault(w.label_key, _Pool())
            if w.draining:
                pool.draining += 1
            elif w.phase is WorkerPhase.IDLE:
                pool.idle += 1
            elif w.phase is WorkerPhase.UNBINDING:
                pool.moving += 1
            else:
                holder = self._sessions.get(w.session_id or "")
                prio = holder.config.priority if holder is not None else 0
                pool.held[prio] += 1
                pool.holders[prio].add(w.session_id or "")

    def explain(self, s: SessionRecord) -> Waiting | None:
        """Why ``s`` waits for workers, or None when it does not."""
        if s.closed or not s.queue:
            return None
        cfg = s.config
        if cfg.max_workers and s.active_workers() >= cfg.max_workers:
            return Waiting("max_workers", f"max_workers reached ({cfg.max_workers} bound)")
        if s.active_workers() >= s.wanted_workers():
            return None
        if self._workers == 0:
            return Waiting("no_workers", "no worker is connected")
        matching = [p for k, p in self._pools.items() if cfg.selector_key <= k]
        if not matching:
            sel = ",".join(f"{k}={v}" for k, v in sorted(cfg.worker_selector.items()))
            return Waiting(
                "no_matching_worker", f"no connected worker matches worker_selector {sel}"
            )
        return self._supply(matching) or self._competition(s, matching)

    @staticmethod
    def _supply(matching: list[_Pool]) -> Waiting | None:
        if sum(p.idle for p in matching):
            return Waiting("scheduling", "idle matching workers exist; bound at the next tick")
        moving = sum(p.moving for p in matching)
        if moving:
            return Waiting(
                "workers_moving",
                f"{moving} matching worker(s) are finishing their batches before they move",
            )
        if sum(sum(p.held) for p in matching) == 0:
            return Waiting("workers_draining", "every matching worker is draining")
        return None

    @staticmethod
    def _competition(s: SessionRecord, matching: list[_Pool]) -> Waiting:
        prio = s.config.priority
        higher = _holders(matching, range(prio + 1, LEVELS))
        if higher:
            held = sum(p.held[level] for p in matching for level in range(prio + 1, LEVELS))
            return Waiting(
                "lower_priority",
                f"lower priority than {len(higher)} session(s) holding {held} matching worker(s)",
            )
        equal = _holders(matching, (prio,)) - {s.id}
        if equal:
            return Waiting(
                "fair_share",
                f"sharing the matching workers with {len(equal)} other session(s) of equal "
                "priority; it gets more as they free up",
            )
        lower = _holders(matching, range(prio))
        if lower:
            return Waiting(
                "not_preemptible",
                f"the other matching workers serve {len(lower)} lower-priority session(s) "
                "that are not preemptible; they move when those run out of work",
            )
        return Waiting("all_bound", "every matching worker already serves this session")


def _holders(pools: list[_Pool], levels: Iterable[int]) -> set[str]:
    out: set[str] = set()
    for p in pools:
        for level in levels:
            out |= p.holders[level]
    return out
