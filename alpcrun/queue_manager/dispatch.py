"""Dispatch: queued batches go to a session's bound workers, within their flow-control windows.

Every dispatch of a batch is an attempt with its own dispatch id; all tasks of a queued
batch have made the same number of attempts. The order is the session queue's order
(priority, then arrival; failed batches go back to its head); among the workers, the one
holding fewest batches gets the next. No worker holds more than its fair share of the
outstanding batches, so workers whose streams open a moment later still get work from a
small job. Dispatch for a session pauses while its result buffer is full (``max_buffered_results``
batches or ``max_result_bytes``): a client that does not read slows its own session down.

Backpressure: a session's client stream is read only while its queue is below ``buffer_size``
batches and ``max_pending_bytes``, and while the tasks and results the queue manager holds for
all sessions together are below ``max_total_bytes``. A stream paused by the total is woken
when the total falls below it again (:meth:`Dispatcher.wake`).
"""

from __future__ import annotations

import itertools

from alpcrun._clock import Clock
from alpcrun.queue_manager.limits import BATCH_OVERHEAD_BYTES, TASK_OVERHEAD_BYTES, CoreLimits
from alpcrun.queue_manager.records import SessionRecord, WorkerPhase
from alpcrun.queue_manager.stats import CoreCounters


class Dispatcher:
    """Sends queued batches to bound workers and tracks them as in flight.

    Args:
        limits: The queue and result-buffer bounds.
        clock: Start times of attempts (for ``task_timeout``).
        counters: Where dispatched batches are counted.
    """

    __slots__ = ("_clock", "_counters", "_ids", "_limits", "_waiting")

    def __init__(self, *, limits: CoreLimits, clock: Clock, counters: CoreCounters) -> None:
        self._limits = limits
        self._clock = clock
        self._counters = counters
        self._ids = itertools.count(1)
        self._waiting: dict[str, SessionRecord] = {}

    def has_room(self, record: SessionRecord) -> bool:
        """Whether the session's queue accepts more batches without exceeding its bounds.

        A session refused for the queue manager's total is woken by :meth:`wake`.
        """
        if not self._queue_room(record):
            return False
        if self.total_full():
            self._waiting[record.id] = record
            return False
        return True

    def _queue_room(self, record: SessionRecord) -> bool:
        """Whether the session's own queue is below ``buffer_size`` and ``max_pending_bytes``."""
        q = record.queue
        limits = self._limits
        return q.batches < limits.buffer_size and (
            q.bytes + q.tasks * TASK_OVERHEAD_BYTES + q.batches * BATCH_OVERHEAD_BYTES
            < limits.max_pending_bytes
        )

    def total_full(self) -> bool:
        """Whether the tasks and results held for all sessions reach ``max_total_bytes``."""
        c = self._counters
        return c.task_bytes + c.result_bytes >= self._limits.max_total_bytes

    def wake(self) -> None:
        """Tell client streams paused by the total to read on, once it is 1/16 below the bound.

        The margin lets a freed batch's worth of room go to the streams together, instead of
        waking every paused stream for each batch that finishes.
        """
        if not self._waiting:
            return
        c = self._counters
        bound = self._limits.max_total_bytes
        if c.task_bytes + c.result_bytes <= bound - (bound >> 4):
            waiting = list(self._waiting.values())
            self._waiting.clear()
            for record in waiting:
                if record.client is not None:
                    record.client.room_available()

    def results_full(self, record: SessionRecord) -> bool:
        """Whether the session's result buffer is full (dispatch for it pauses)."""
        results = record.results
        limits = self._limits
        return (
            len(results) >= limits.max_buffered_results or results.bytes >= limits.max_result_bytes
        )

    def dispatch(self, record: SessionRecord) -> None:
        """Send queued batches to the session's bound workers within their windows.

        When this frees room in a queue that was full, the client stream is told to read on
        (and so are streams paused by the total, once it is below ``max_total_bytes``).
        """
        self._send(record)
        self.wake()

    def _send(self, record: SessionRecord) -> None:
        queue = record.queue
        if not queue or self.results_full(record):
            return
        serving = [
            w for w in record.workers.values() if w.phase is WorkerPhase.BOUND and not w.draining
        ]
        if not serving:
            return
        share = -(-(len(queue) + record.inflight_batches) // len(serving))
        ready = [
            w for w in serving if w.data is not None and len(w.inflight) < min(w.window, share)
        ]
        had_room = self._queue_room(record)
        timed = record.config.task_timeout_s > 0
        now = self._clock.monotonic() if timed else 0.0
        while queue and ready:
            worker = min(ready, key=lambda w: len(w.inflight))
            item = queue.pop()
            assert item is not None
            assert worker.data is not None
            dispatch_id = next(self._ids)
            item.attempts += 1
            if item.attempts > 1:
                for task in item.batch.tasks:
                    task.attempt = item.attempts
            item.batch.dispatch_id = dispatch_id
            if timed and len(worker.inflight) < worker.concurrency:
                item.started_at = now
            worker.inflight[dispatch_id] = item
            record.inflight_batches += 1
            record.inflight_tasks += item.ntasks
            self._counters.dispatched_batches += 1
            worker.data.send(item.batch)
            if len(worker.inflight) >= min(worker.window, share):
                ready.remove(worker)
        if not had_room and self._queue_room(record) and record.client is not None:
            record.client.room_available()


__all__ = ["Dispatcher"]
