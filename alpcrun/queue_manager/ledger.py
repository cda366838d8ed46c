"""The core's book-keeping: every durable change is counted and journaled here, and only here.

The collaborators of :class:`~alpcrun.queue_manager.core.QueueCore` change sessions, queues,
results and dead letters in memory, then report the change to the :class:`Ledger`, which
updates the running totals and calls the :class:`~alpcrun.queue_manager.journal.Journal`.
No other object holds the journal.

The order of the calls for one batch of tasks, which a journal may rely on:

1. ``batch_added`` when it is accepted (or resubmitted from the dead letters);
2. on a failed attempt, ``batch_changed`` when the whole batch goes back to the queue, or
   ``batch_added`` for the smaller batch of the tasks that are retried;
3. ``letter_added`` for each task that is dead-lettered, before
4. ``result_added`` for the result batch that carries those tasks' final outcomes, then
5. ``batch_removed`` once every task of the batch has its final result;
6. ``results_freed`` when the client has the results (acknowledged, or written without acks).

A change is reported after the memory state reflects it, and before the client is told
(results reach a client only once the journal has them: ``ResultBuffer.limit``).

The Ledger also keeps the byte gauges the memory bounds read (``CoreCounters.task_bytes``,
``result_bytes``, ``letter_bytes``, in charged bytes: :mod:`alpcrun.queue_manager.limits`): a
batch's bytes count from ``batch_added`` to ``batch_removed``, a result batch's from
``result_added`` until freed, a letter's from ``letter_added`` until removed or its session
forgotten. A few integer additions per batch; nothing per task.
"""

from __future__ import annotations

import itertools

from alpcrun.proto import Batch
from alpcrun.queue_manager.deadletters import DeadLetterEntry
from alpcrun.queue_manager.journal import Journal, NullJournal
from alpcrun.queue_manager.limits import BATCH_OVERHEAD_BYTES, TASK_OVERHEAD_BYTES, charged
from alpcrun.queue_manager.queues import QueuedBatch
from alpcrun.queue_manager.records import SessionRecord
from alpcrun.queue_manager.stats import CoreCounters


class Ledger:
    """Running totals plus the journal, behind one set of change reports.

    Args:
        journal: Where durable changes go (a :class:`NullJournal` keeps nothing).
        counters: The totals to keep (new ones by default).
    """

    __slots__ = ("_journal", "_keys", "counters")

    def __init__(self, journal: Journal | None = None, counters: CoreCounters | None = None):
        self._journal: Journal = journal or NullJournal()
        self._keys = itertools.count(1)
        self.counters = counters or CoreCounters()
        """The core's running totals."""

    @property
    def journal(self) -> Journal:
        """The journal changes go to."""
        return self._journal

    @property
    def durable(self) -> bool:
        """Whether the journal keeps changes (results then wait until it has them)."""
        return self._journal.enabled

    def next_key(self) -> int:
        """A new key for a queued batch (the journal's row key; unique for the process)."""
        return next(self._keys)

    def reserve_keys(self, last_key: int) -> None:
        """Number new batches after ``last_key`` (recovered batches keep theirs)."""
        self._keys = itertools.count(last_key + 1)

    # ------------------------------------------------------------------ sessions
    def session_changed(self, record: SessionRecord) -> None:
        """A session was created, or its attributes or state changed."""
        self._journal.session_changed(record)

    def session_removed(self, record: SessionRecord) -> None:
        """A closed session passed its retention and is forgotten, with its results and letters."""
        c = self.counters
        c.result_bytes -= record.results.bytes
        c.letter_bytes -= record.dead_letters.bytes
        self._journal.session_removed(record.id)

    def session_adopted(self, record: SessionRecord) -> None:
        """A session recovered from the journal joins the totals."""
        c = self.counters
        c.submitted += record.submitted
        c.completed += record.completed
        c.failed += record.failed
        q = record.queue
        c.task_bytes += charged(q.bytes, q.tasks, q.batches)
        for _, _, item in record.delayed:
            c.task_bytes += charged(item.nbytes, item.ntasks)
        c.result_bytes += record.results.bytes
        c.letter_bytes += record.dead_letters.bytes

    # ------------------------------------------------------------------ batches
    def accepted(self, record: SessionRecord, item: QueuedBatch) -> None:
        """A client batch was queued."""
        c = self.counters
        record.submitted += item.ntasks
        c.submitted += item.ntasks
        c.task_bytes += item.nbytes + item.ntasks * TASK_OVERHEAD_BYTES + BATCH_OVERHEAD_BYTES
        self._journal.batch_added(record, item)

    def resubmitted(self, record: SessionRecord, item: QueuedBatch) -> None:
        """A batch of dead letters was queued again."""
        self.counters.task_bytes += charged(item.nbytes, item.ntasks)
        self._journal.batch_added(record, item)

    def retried(self, record: SessionRecord, item: QueuedBatch) -> None:
        """The failed tasks of an attempt were queued again as their own batch ``item``."""
        c = self.counters
        record.retried += item.ntasks
        c.retried_tasks += item.ntasks
        c.task_bytes += charged(item.nbytes, item.ntasks)
        self._journal.batch_added(record, item)

    def requeued(self, record: SessionRecord, item: QueuedBatch) -> None:
        """A whole batch went back to the queue after a failed attempt."""
        record.retried += item.ntasks
        self.counters.retried_tasks += item.ntasks
        self._journal.batch_changed(item)

    def finished(self, item: QueuedBatch) -> None:
        """Every task of the batch has its final result (or its session dropped it)."""
        self.counters.task_bytes -= (
            item.nbytes + item.ntasks * TASK_OVERHEAD_BYTES + BATCH_OVERHEAD_BYTES
        )
        self._journal.batch_removed(item)

    # ------------------------------------------------------------------ results
    def result_added(
        self, record: SessionRecord, seq: int, batch: Batch, ok: int, nbytes: int
    ) -> None:
        """Result batch ``seq`` (``nbytes`` charged) holding ``ok`` successes joined the results."""
        c = self.counters
        record.completed += ok
        c.completed += ok
        c.result_bytes += nbytes
        self._journal.result_added(record, seq, batch)

    def results_freed(self, record: SessionRecord, seq: int, nbytes: int) -> None:
        """The client has every result batch up to ``seq``; ``nbytes`` (charged) were freed."""
        self.counters.result_bytes -= nbytes
        self._journal.results_freed(record, seq)

    # ------------------------------------------------------------------ dead letters
    def letter_added(self, record: SessionRecord, entry: DeadLetterEntry, nbytes: int) -> None:
        """A task was dead-lettered; its session's letters grew by ``nbytes`` (charged)."""
        c = self.counters
        record.failed += 1
        c.failed += 1
        c.letter_bytes += nbytes
        self._journal.letter_added(record, entry)

    def letters_removed(self, record: SessionRecord, task_ids: list[str], nbytes: int) -> None:
        """Dead letters (``nbytes`` charged) were resubmitted or discarded."""
        self.counters.letter_bytes -= nbytes
        self._journal.letters_removed(record, task_ids)

    def letters_resubmitted(self, record: SessionRecord, count: int) -> None:
        """``count`` dead letters were queued again: they no longer count as failed."""
        record.failed -= count
        self.counters.failed -= count


__all__ = ["Ledger"]
