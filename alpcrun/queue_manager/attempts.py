"""Attempts and their outcomes: results settle tasks, failures retry or dead-letter them.

When a result batch comes back each task settles in one of three ways: a result (success),
a retry (a retryable failure with attempts left: the failed tasks go back to the head of
the queue as a smaller batch, after the worker's ``retry_after`` if it asked for one), or a
dead letter (non-retryable, or out of attempts). A lost worker or a ``task_timeout`` fails
the whole attempt the same way. A task gets exactly one final result, so each task id
reaches the client once; results of attempts already given up on are dropped and counted.

This is the one place retry policy lives: :meth:`Attempts.settle` and :meth:`Attempts.fail`.
"""

from __future__ import annotations

import heapq

from alpcrun._clock import Clock
from alpcrun.errors import InvalidArgument, NotFound
from alpcrun.proto import Batch, ErrorReason, Task, TaskError
from alpcrun.queue_manager.dispatch import Dispatcher
from alpcrun.queue_manager.ledger import Ledger
from alpcrun.queue_manager.letters import DeadLetterOffice
from alpcrun.queue_manager.queues import QueuedBatch
from alpcrun.queue_manager.records import SessionRecord, WorkerPhase, WorkerRecord
from alpcrun.queue_manager.result_delivery import ResultDelivery

_FINAL = frozenset({ErrorReason.ERROR_REASON_NON_RETRYABLE, ErrorReason.ERROR_REASON_PAYLOAD_LOST})
"""Reasons a worker reports that no retry can fix: dead-lettered at once."""
_UNSPECIFIED = ErrorReason.ERROR_REASON_UNSPECIFIED
MAX_RETRY_DELAY_MS = 3_600_000
"""Longest ``retry_after`` honoured (one hour); a longer one is cut to it."""
LOST_ERROR = TaskError(
    reason=ErrorReason.ERROR_REASON_WORKER_LOST,
    type="WorkerLost",
    message="the worker running the attempt was lost",
)
"""The error of an attempt whose worker disconnected or stopped heartbeating."""


def timeout_error(limit_s: float) -> TaskError:
    """The error of an attempt that outran the session's ``task_timeout``."""
    return TaskError(
        reason=ErrorReason.ERROR_REASON_TIMEOUT,
        type="TaskTimeout",
        message=f"the attempt ran longer than task_timeout ({limit_s:g} s per task)",
    )


class Attempts:
    """Settles attempts: results from workers, lost workers, timeouts and retry delays.

    Args:
        clock: Times of results, retry delays and timeouts.
        sessions: The sessions by id (shared with the session table).
        ledger: Counts and journals requeued and finished batches.
        dispatcher: Sends more work once an attempt ends.
        results: Where final results go.
        letters: Where tasks that failed for good go.
    """

    __slots__ = ("_clock", "_dispatcher", "_ledger", "_letters", "_results", "_sessions")

    def __init__(
        self,
        *,
        clock: Clock,
        sessions: dict[str, SessionRecord],
        ledger: Ledger,
        dispatcher: Dispatcher,
        results: ResultDelivery,
        letters: DeadLetterOffice,
    ) -> None:
        self._clock = clock
        self._sessions = sessions
        self._ledger = ledger
        self._dispatcher = dispatcher
        self._results = results
        self._letters = letters

    # ------------------------------------------------------------------ results
    def worker_results(
        self, worker: WorkerRecord, batch: Batch, nbytes: int = -1
    ) -> SessionRecord | None:
        """Accept one result batch (``nbytes`` serialized, -1: unknown): settle each task.

        Dispatches more. Returns the open session the batch belonged to (None if it is gone
        or closed).
        """
        item = worker.inflight.pop(batch.dispatch_id, None)
        if item is None:
            self._stray_results(worker, batch)
            return None
        failed = _failed_tasks(batch, item)
        if failed is None:
            worker.inflight[batch.dispatch_id] = item
            raise InvalidArgument(
                f"the results must answer the {item.ntasks} tasks of dispatch "
                f"{batch.dispatch_id}, one per task, in order",
                field="batch.tasks",
            )
        now = self._clock.monotonic()
        worker.last_seen = now
        worker.completed_batches += 1
        record = self._sessions.get(worker.session_id or "")
        if record is not None:
            record.inflight_batches -= 1
            record.inflight_tasks -= item.ntasks
            if record.config.task_timeout_s:
                _start_next(worker, now)
            if record.closed:
                self._ledger.finished(item)
            else:
                self.settle(record, item, batch, failed, nbytes)
        if worker.phase is WorkerPhase.UNBINDING:
            if not worker.inflight and worker.data is not None:
                worker.data.close()
        elif record is not None and not record.closed:
            self._dispatcher.dispatch(record)
            return record
        return None

    def _stray_results(self, worker: WorkerRecord, batch: Batch) -> None:
        """Results for a dispatch the worker does not hold: late (dropped) or bogus (error)."""
        if batch.dispatch_id in worker.abandoned:
            worker.abandoned.discard(batch.dispatch_id)
            worker.last_seen = self._clock.monotonic()
            record = self._sessions.get(worker.session_id or "")
            if record is not None:
                record.duplicate_results += len(batch.tasks)
            self._ledger.counters.duplicate_results += len(batch.tasks)
            return
        raise NotFound(
            f"dispatch {batch.dispatch_id} is not in flight on worker {worker.id}",
            field="batch.dispatch_id",
        )

    def settle(
        self,
        record: SessionRecord,
        item: QueuedBatch,
        batch: Batch,
        failed: list[int],
        nbytes: int = -1,
    ) -> None:
        """Deliver successes, retry or dead-letter the ``failed`` tasks (indexes).

        ``nbytes`` is the serialized size of ``batch`` (-1: unknown, measured if needed).
        """
        tasks = batch.tasks
        if not failed:
            self._results.push(record, item.batch.id, batch, item.ntasks, item.ntasks, nbytes)
            self._ledger.finished(item)
            return
        retry: list[int] = []
        delay_ms = 0
        out_of_attempts = item.attempts >= record.config.max_attempts
        for i in failed:
            error = tasks[i].error
            if error.reason == _UNSPECIFIED:
                error.reason = ErrorReason.ERROR_REASON_ERROR
            if error.reason in _FINAL or out_of_attempts:
                self._letters.add(record, item, i, error)
                tasks[i].attempt = item.attempts
            else:
                retry.append(i)
                delay_ms = max(delay_ms, error.retry_after_ms)
        if retry:
            skip = set(retry)
            final = [t for i, t in enumerate(tasks) if i not in skip]
            inputs = item.batch.tasks
            delay_s = min(delay_ms, MAX_RETRY_DELAY_MS) / 1000.0
            self._retry(record, item, [inputs[i] for i in retry], delay_s)
            if final:
                out = Batch(tasks=final)
                ok = len(final) - (len(failed) - len(retry))
                self._results.push(record, item.batch.id, out, len(final), ok)
        else:
            ok = item.ntasks - len(failed)
            self._results.push(record, item.batch.id, batch, item.ntasks, ok, nbytes)
        self._ledger.finished(item)

    # ------------------------------------------------------------------ failures
    def fail(self, record: SessionRecord, item: QueuedBatch, error: TaskError) -> None:
        """The attempt of ``item`` failed as a whole (lost worker, timeout): retry or dead-letter.

        The caller has already taken it out of flight.
        """
        if record.closed:
            self._ledger.finished(item)
            return
        if item.attempts < record.config.max_attempts:
            item.batch.dispatch_id = 0
            item.started_at = 0.0
            record.queue.push_front(item)
            self._ledger.requeued(record, item)
            return
        out = Batch()
        for i, task in enumerate(item.batch.tasks):
            self._letters.add(record, item, i, error)
            out.tasks.add(id=task.id, error=error, attempt=item.attempts)
        self._results.push(record, item.batch.id, out, item.ntasks, 0)
        self._ledger.finished(item)

    def fail_all(self, worker: WorkerRecord, record: SessionRecord) -> None:
        """The worker is gone from ``record``: every attempt it held failed as lost."""
        for item in reversed(list(worker.inflight.values())):
            record.inflight_batches -= 1
            record.inflight_tasks -= item.ntasks
            self.fail(record, item, LOST_ERROR)
        if worker.inflight and not record.closed:
            self._dispatcher.dispatch(record)

    def _retry(
        self, record: SessionRecord, item: QueuedBatch, tasks: list[Task], delay_s: float
    ) -> None:
        b = item.batch
        again = Batch(
            id=b.id,
            session_id=record.id,
            priority=b.priority,
            use_shared_data=b.use_shared_data,
            required_shared_data_update_level=b.required_shared_data_update_level,
            tasks=tasks,
        )
        new = QueuedBatch(
            again, len(tasks), again.ByteSize(), b.priority, self._ledger.next_key(), item.attempts
        )
        if delay_s > 0:
            due = self._clock.monotonic() + delay_s
            heapq.heappush(record.delayed, (due, new.key, new))
        else:
            record.queue.push_front(new)
        self._ledger.retried(record, new)

    # ------------------------------------------------------------------ timers
    def release_delayed(self, record: SessionRecord, now: float) -> None:
        """Move retries whose delay has passed to the head of the queue."""
        delayed = record.delayed
        moved = False
        while delayed and delayed[0][0] <= now:
            _, _, item = heapq.heappop(delayed)
            record.queue.push_front(item)
            moved = True
        if moved:
            self._dispatcher.dispatch(record)

    def expire(self, record: SessionRecord, now: float) -> None:
        """Fail attempts that outran ``task_timeout`` (per task of the batch, from its start)."""
        limit = record.config.task_timeout_s
        if not limit or not record.inflight_batches:
            return
        for worker in list(record.workers.values()):
            late = [
                (did, it)
                for did, it in worker.inflight.items()
                if it.started_at and now - it.started_at > limit * it.ntasks
            ]
            for did, it in late:
                del worker.inflight[did]
                worker.abandoned.add(did)
                record.inflight_batches -= 1
                record.inflight_tasks -= it.ntasks
                record.timed_out += 1
                self._ledger.counters.timed_out_attempts += 1
                _start_next(worker, now)
                self.fail(record, it, timeout_error(limit))
        self._dispatcher.dispatch(record)


def _failed_tasks(batch: Batch, item: QueuedBatch) -> list[int] | None:
    """Indexes of the failed results, or None if ``batch`` does not answer ``item`` task by task.

    One pass over the results: the hot path of every result batch.
    """
    tasks = batch.tasks
    if len(tasks) != item.ntasks:
        return None
    failed = []
    for i, (result, task) in enumerate(zip(tasks, item.batch.tasks, strict=True)):
        if result.id != task.id:
            return None
        if result.HasField("error"):
            failed.append(i)
    return failed


def _start_next(worker: WorkerRecord, now: float) -> None:
    """A slot of the worker freed up: its oldest waiting batch is reckoned to start now."""
    for item in worker.inflight.values():
        if not item.started_at:
            item.started_at = now
            return


__all__ = ["LOST_ERROR", "MAX_RETRY_DELAY_MS", "Attempts", "timeout_error"]
