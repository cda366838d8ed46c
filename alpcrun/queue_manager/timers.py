"""Which sessions the scheduler tick must look at: busy ones every time, quiet ones when due.

A session is *busy* while it has work (queued, in-flight or delayed batches) or bound workers:
the tick releases its retry delays and times out its attempts, and the scheduler plans for
it. Any other session is *quiet*: nothing about it changes until a deadline (turning idle,
expiring, passing its retention) or an event (a batch, a client attaching). A quiet session
waits in a heap under its next deadline, so a tick costs O(busy sessions + deadlines due),
not O(all sessions): 100,000 sessions nobody uses no longer cost a tick anything.

Deadlines are kept lazily: an event that moves a deadline later leaves the old entry in the
heap, and when that entry comes due its session's real deadline is worked out again. Only a
deadline that moves *earlier* pushes a new entry, so each session has one live entry.
"""

from __future__ import annotations

import heapq

from alpcrun.queue_manager.records import SessionRecord

MAX_DUE_PER_TICK = 5000
"""Most quiet sessions one tick looks at (about 10-50 ms of work); later ones wait a tick."""


class SessionTimers:
    """Busy sessions, and a deadline heap of quiet ones."""

    __slots__ = ("_armed", "_heap", "busy")

    def __init__(self) -> None:
        self.busy: dict[str, SessionRecord] = {}
        """Sessions with work or bound workers, by id."""
        self._heap: list[tuple[float, int, SessionRecord]] = []
        self._armed: dict[str, float] = {}

    def wake(self, record: SessionRecord) -> None:
        """The session has work (or may have): the tick looks at it until it is quiet again."""
        self.busy[record.id] = record

    def quiet(self, record: SessionRecord, due: float | None) -> None:
        """The session has no work and no workers; look at it again at ``due`` (None: never)."""
        self.busy.pop(record.id, None)
        self.arm(record, due)

    def arm(self, record: SessionRecord, due: float | None) -> None:
        """Look at a quiet session by ``due`` at the latest (an earlier entry stands)."""
        if due is None:
            return
        armed = self._armed.get(record.id)
        if armed is not None and armed <= due:
            return
        self._armed[record.id] = due
        heapq.heappush(self._heap, (due, record.seq, record))

    def due(self, now: float, most: int = MAX_DUE_PER_TICK) -> list[SessionRecord]:
        """Quiet sessions whose deadline has come, each once (their entries are used up).

        At most ``most``, earliest first: the rest stay due for the next tick, so sessions
        created together and due together are spread over ticks instead of stalling one.
        """
        heap, armed = self._heap, self._armed
        out: list[SessionRecord] = []
        while heap and heap[0][0] <= now and len(out) < most:
            due, _, record = heapq.heappop(heap)
            if armed.get(record.id) != due:
                continue  # superseded by an earlier entry, or the session is forgotten
            del armed[record.id]
            if record.id not in self.busy:
                out.append(record)
        return out

    def forget(self, session_id: str) -> None:
        """The session is gone."""
        self.busy.pop(session_id, None)
        self._armed.pop(session_id, None)


__all__ = ["MAX_DUE_PER_TICK", "SessionTimers"]
