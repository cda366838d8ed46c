"""The core's data path: accept batches, dispatch attempts, settle their outcomes.

Every dispatch of a batch is an attempt with its own dispatch id; all tasks of a queued
batch have made the same number of attempts. When a result batch comes back each task
settles in one of three ways: a result (success), a retry (a retryable failure with attempts
left: the failed tasks go back to the head of the queue as a smaller batch, after the
worker's ``retry_after`` if it asked for one), or a dead letter (non-retryable, or out of
attempts). A lost worker or a ``task_timeout`` fails the whole attempt the same way.
A task gets exactly one final result, so each task id reaches the client once; results of
attempts the core already gave up on are dropped and counted.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from alpcrun._clock import Clock
from alpcrun.constants import MAX_ID_LENGTH
from alpcrun.errors import InvalidArgument, NotFound, SessionClosed
from alpcrun.proto import Batch, ErrorReason, SessionState, Task, TaskError
from alpcrun.queue_manager.deadletters import DeadLetterEntry
from alpcrun.queue_manager.journal import Journal
from alpcrun.queue_manager.limits import CoreLimits
from alpcrun.queue_manager.queues import QueuedBatch
from alpcrun.queue_manager.records import SessionRecord, WorkerPhase, WorkerRecord

_NON_RETRYABLE = ErrorReason.ERROR_REASON_NON_RETRYABLE
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


class Delivery:
    """Batches in, attempts out, outcomes settled: the part of ``QueueCore`` tasks flow through.

    A base class of :class:`~alpcrun.queue_manager.core.QueueCore`, which provides the
    attributes declared here.
    """

    limits: CoreLimits
    clock: Clock
    journal: Journal
    sessions: dict[str, SessionRecord]
    _on_schedule_needed: Callable[[], None]
    _keys: itertools.count[int]
    _dispatch_ids: itertools.count[int]
    dispatched_batches: int
    total_submitted: int
    total_completed: int
    total_failed: int
    retried_tasks: int
    timed_out_attempts: int
    duplicate_results: int
    duplicate_batches: int

    # ------------------------------------------------------------------ client side
    def submit(self, record: SessionRecord, batch: Batch, nbytes: int = -1) -> None:
        """Queue a client batch (validated; the tasks are not unpacked).

        A batch whose id the session still knows (not finished, or its last results not yet
        acknowledged) is a resend after a reconnect: it is ignored and counted. ``nbytes`` is
        its serialized size when the caller has it already.
        """
        if record.closed:
            raise SessionClosed(f"session {record.id} is closed")
        bid = batch.id
        if not bid or len(bid) > MAX_ID_LENGTH:
            raise InvalidArgument(f"required, 1..{MAX_ID_LENGTH} chars", field="batch.id")
        if batch.session_id and batch.session_id != record.id:
            raise InvalidArgument("does not match the stream's sessionid", field="batch.session_id")
        ntasks = len(batch.tasks)
        if ntasks == 0:
            raise InvalidArgument("a batch needs at least one task", field="batch.tasks")
        if bid in record.known:
            record.duplicate_batches += 1
            self.duplicate_batches += 1
            return
        if batch.dispatch_id:
            batch.dispatch_id = 0
        batch.session_id = record.id
        if nbytes < 0:
            nbytes = batch.ByteSize()
        item = QueuedBatch(batch, ntasks, nbytes, batch.priority, next(self._keys))
        record.known[bid] = ntasks
        record.queue.push(item)
        record.submitted += ntasks
        self.total_submitted += ntasks
        self.journal.batch_added(record, item)
        self._touch(record)
        self._dispatch(record)
        if record.active_workers() < record.wanted_workers():
            self._on_schedule_needed()

    def has_room(self, record: SessionRecord) -> bool:
        """Whether the session's queue accepts more batches without exceeding its bounds."""
        q = record.queue
        return len(q) < self.limits.buffer_size and q.bytes < self.limits.max_pending_bytes

    def results_written(self, record: SessionRecord, seq: int, *, keep: bool) -> None:
        """The result batch ``seq`` was written to the client; ``keep`` it until acked."""
        results = record.results
        full = len(results) >= self.limits.max_buffered_results
        head = results.peek()
        if not results.written(seq, keep=keep):
            return
        if not keep and head is not None:
            self._results_freed(record, seq, [head[1]])
        if full and not keep:
            self._dispatch(record)

    def ack_results(self, record: SessionRecord, seq: int) -> None:
        """The client confirmed every result batch up to ``seq``."""
        if seq > record.results.seq:
            raise InvalidArgument(
                f"acknowledges {seq}, but only {record.results.seq} were sent", field="ack.seq"
            )
        full = len(record.results) >= self.limits.max_buffered_results
        freed = record.results.ack(seq)
        if freed:
            self._results_freed(record, seq, freed)
            if full:
                self._dispatch(record)

    def _results_freed(self, record: SessionRecord, seq: int, batches: list[Batch]) -> None:
        known = record.known
        for batch in batches:
            if known.get(batch.id, 1) <= 0:
                del known[batch.id]
        self.journal.results_freed(record, seq)

    # ------------------------------------------------------------------ worker side
    def worker_results(self, worker: WorkerRecord, batch: Batch) -> None:
        """Accept one result batch: settle each task, dispatch more."""
        item = worker.inflight.pop(batch.dispatch_id, None)
        if item is None:
            self._stray_results(worker, batch)
            return
        failed = _failed_tasks(batch, item)
        if failed is None:
            worker.inflight[batch.dispatch_id] = item
            raise InvalidArgument(
                f"the results must answer the {item.ntasks} tasks of dispatch "
                f"{batch.dispatch_id}, one per task, in order",
                field="batch.tasks",
            )
        now = self.clock.monotonic()
        worker.last_seen = now
        worker.completed_batches += 1
        record = self.sessions.get(worker.session_id or "")
        if record is not None:
            record.inflight_batches -= 1
            record.inflight_tasks -= item.ntasks
            if record.config.task_timeout_s:
                _start_next(worker, now)
            if record.closed:
                self.journal.batch_removed(item)
            else:
                self._settle(record, item, batch, failed)
        if worker.phase is WorkerPhase.UNBINDING:
            if not worker.inflight and worker.data is not None:
                worker.data.close()
        elif record is not None and not record.closed:
            self._dispatch(record)
            if not record.has_work:
                self._on_schedule_needed()

    def _stray_results(self, worker: WorkerRecord, batch: Batch) -> None:
        """Results for a dispatch the worker does not hold: late (dropped) or bogus (error)."""
        if batch.dispatch_id in worker.abandoned:
            worker.abandoned.discard(batch.dispatch_id)
            worker.last_seen = self.clock.monotonic()
            record = self.sessions.get(worker.session_id or "")
            if record is not None:
                record.duplicate_results += len(batch.tasks)
            self.duplicate_results += len(batch.tasks)
            return
        raise NotFound(
            f"dispatch {batch.dispatch_id} is not in flight on worker {worker.id}",
            field="batch.dispatch_id",
        )

    def _settle(
        self, record: SessionRecord, item: QueuedBatch, batch: Batch, failed: list[int]
    ) -> None:
        """Deliver successes, retry or dead-letter the ``failed`` tasks (indexes)."""
        tasks = batch.tasks
        if not failed:
            self._push_results(record, item.batch.id, batch, item.ntasks, item.ntasks)
            self.journal.batch_removed(item)
            return
        retry: list[int] = []
        delay_ms = 0
        out_of_attempts = item.attempts >= record.config.max_attempts
        for i in failed:
            error = tasks[i].error
            if error.reason == _UNSPECIFIED:
                error.reason = ErrorReason.ERROR_REASON_ERROR
            if error.reason == _NON_RETRYABLE or out_of_attempts:
                self._dead_letter(record, item, i, error)
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
                self._push_results(record, item.batch.id, out, len(final), ok)
        else:
            self._push_results(record, item.batch.id, batch, item.ntasks, item.ntasks - len(failed))
        self.journal.batch_removed(item)

    def fail_attempt(self, record: SessionRecord, item: QueuedBatch, error: TaskError) -> None:
        """The attempt of ``item`` failed as a whole (lost worker, timeout): retry or dead-letter.

        The caller has already taken it out of flight.
        """
        if record.closed:
            self.journal.batch_removed(item)
            return
        if item.attempts < record.config.max_attempts:
            item.batch.dispatch_id = 0
            item.started_at = 0.0
            record.queue.push_front(item)
            record.retried += item.ntasks
            self.retried_tasks += item.ntasks
            self.journal.batch_changed(item)
            return
        out = Batch()
        for i, task in enumerate(item.batch.tasks):
            self._dead_letter(record, item, i, error)
            out.tasks.add(id=task.id, error=error, attempt=item.attempts)
        self._push_results(record, item.batch.id, out, item.ntasks, 0)
        self.journal.batch_removed(item)

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
            again, len(tasks), again.ByteSize(), b.priority, next(self._keys), item.attempts
        )
        record.retried += new.ntasks
        self.retried_tasks += new.ntasks
        if delay_s > 0:
            due = self.clock.monotonic() + delay_s
            heapq.heappush(record.delayed, (due, new.key, new))
        else:
            record.queue.push_front(new)
        self.journal.batch_added(record, new)

    def _dead_letter(
        self, record: SessionRecord, item: QueuedBatch, index: int, error: TaskError
    ) -> None:
        letter = Task()
        letter.CopyFrom(item.batch.tasks[index])
        letter.error.CopyFrom(error)
        letter.attempt = item.attempts
        b = item.batch
        entry = DeadLetterEntry(
            letter,
            b.id,
            self.clock.time(),
            b.priority,
            b.use_shared_data,
            b.required_shared_data_update_level,
        )
        record.dead_letters.add(entry)
        record.failed += 1
        self.total_failed += 1
        self.journal.letter_added(record, entry)

    def _push_results(
        self, record: SessionRecord, batch_id: str, out: Batch, finals: int, ok: int
    ) -> None:
        """Queue ``out``, holding ``finals`` final results (``ok`` successes), for the client."""
        record.completed += ok
        self.total_completed += ok
        out.id = batch_id
        out.session_id = record.id
        out.dispatch_id = 0
        record.known[batch_id] = record.known.get(batch_id, finals) - finals
        seq = record.results.push(out)
        self.journal.result_added(record, seq, out)
        record.last_activity = self.clock.monotonic()
        if record.client is not None:
            record.client.results_ready()

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
            self._dispatch(record)

    def expire_attempts(self, record: SessionRecord, now: float) -> None:
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
                self.timed_out_attempts += 1
                _start_next(worker, now)
                self.fail_attempt(record, it, timeout_error(limit))
        self._dispatch(record)

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, record: SessionRecord) -> None:
        """Send queued batches to the session's bound workers within their windows."""
        queue = record.queue
        if not queue or len(record.results) >= self.limits.max_buffered_results:
            return
        serving = [
            w for w in record.workers.values() if w.phase is WorkerPhase.BOUND and not w.draining
        ]
        if not serving:
            return
        # Fair share: no worker holds more than its part of the outstanding batches, so
        # workers whose streams open a moment later still get work from a small job.
        share = -(-(len(queue) + record.inflight_batches) // len(serving))
        ready = [
            w for w in serving if w.data is not None and len(w.inflight) < min(w.window, share)
        ]
        had_room = self.has_room(record)
        timed = record.config.task_timeout_s > 0
        now = self.clock.monotonic() if timed else 0.0
        while queue and ready:
            worker = min(ready, key=lambda w: len(w.inflight))
            item = queue.pop()
            assert item is not None
            assert worker.data is not None
            dispatch_id = next(self._dispatch_ids)
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
            self.dispatched_batches += 1
            worker.data.send(item.batch)
            if len(worker.inflight) >= min(worker.window, share):
                ready.remove(worker)
        if not had_room and self.has_room(record) and record.client is not None:
            record.client.room_available()

    def _touch(self, record: SessionRecord) -> None:
        """Client activity: the session is active again."""
        record.last_activity = self.clock.monotonic()
        if record.state == SessionState.SESSION_STATE_IDLE:
            record.state = SessionState.SESSION_STATE_ACTIVE


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


__all__ = ["LOST_ERROR", "Delivery", "timeout_error"]
