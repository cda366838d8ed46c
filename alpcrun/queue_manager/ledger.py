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
"""

from __future__ import annotations

import itertools

from alpcrun.proto import Batch
from alpcrun.queue_manager.deadletters import DeadLetterEntry
from alpcrun.queue_manager.journal import Journal, NullJournal
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

    def session_removed(self, session_id: str) -> None:
        """A closed session passed its retention and is forgotten."""
        self._journal.session_removed(session_id)

    def session_adopted(self, record: SessionRecord) -> None:
        """A session recovered from the journal joins the totals."""
        c = self.counters
        c.submitted += record.submitted
        c.completed += record.completed
        c.failed += record.failed

    # ------------------------------------------------------------------ batches
    def accepted(self, record: SessionRecord, item: QueuedBatch) -> None:
        """A client batch was queued."""
        record.submitted += item.ntasks
        self.counters.submitted += item.ntasks
        self._journal.batch_added(record, item)

    def resubmitted(self, record: SessionRecord, item: QueuedBatch) -> None:
        """A batch of dead letters was queued again."""
        self._journal.batch_added(record, item)

    def retried(self, record: SessionRecord, item: QueuedBatch) -> None:
        """The failed tasks of an attempt were queued again as their own batch ``item``."""
        record.retried += item.ntasks
        self.counters.retried_tasks += item.ntasks
        self._journal.batch_added(record, item)

    def requeued(self, record: SessionRecord, item: QueuedBatch) -> None:
        """A whole batch went back to the queue after a failed attempt."""
        record.retried += item.ntasks
        self.counters.retried_tasks += item.ntasks
        self._journal.batch_changed(item)

    def finished(self, item: QueuedBatch) -> None:
        """Every task of the batch has its final result (or its session dropped it)."""
        self._journal.batch_removed(item)

    # ------------------------------------------------------------------ results
    def result_added(self, record: SessionRecord, seq: int, batch: Batch, ok: int) -> None:
        """Result batch ``seq`` holding ``ok`` successes joined the session's results."""
        record.completed += ok
        self.counters.completed += ok
        self._journal.result_added(record, seq, batch)

    def results_freed(self, record: SessionRecord, seq: int) -> None:
        """The client has every result batch up to ``seq``."""
        self._journal.results_freed(record, seq)

    # ------------------------------------------------------------------ dead letters
    def letter_added(self, record: SessionRecord, entry: DeadLetterEntry) -> None:
        """A task was dead-lettered."""
        record.failed += 1
        self.counters.failed += 1
        self._journal.letter_added(record, entry)

    def letters_removed(self, record: SessionRecord, task_ids: list[str]) -> None:
        """Dead letters were resubmitted or discarded."""
        self._journal.letters_removed(record, task_ids)

    def letters_resubmitted(self, record: SessionRecord, count: int) -> None:
        """``count`` dead letters were queued again: they no longer count as failed."""
        record.failed -= count
        self.counters.failed -= count


__all__ = ["Ledger"]
