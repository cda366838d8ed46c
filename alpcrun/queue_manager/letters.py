"""Dead-lettering: tasks that failed for good go to their session's dead-letter queue.

A task is dead-lettered when its attempt fails non-retryably or after ``max_attempts``;
its letter keeps the input task, so an admin can resubmit it (queued again in new batches)
or discard it.
"""

from __future__ import annotations

from alpcrun._clock import Clock
from alpcrun.proto import Task, TaskError
from alpcrun.queue_manager.deadletters import DeadLetterEntry, resubmit_batches
from alpcrun.queue_manager.ledger import Ledger
from alpcrun.queue_manager.queues import QueuedBatch
from alpcrun.queue_manager.records import SessionRecord


class DeadLetterOffice:
    """Adds dead letters, and takes them out again to resubmit or discard.

    Args:
        clock: Wall-clock time of each letter.
        ledger: Counts and journals letters and resubmitted batches.
    """

    __slots__ = ("_clock", "_ledger")

    def __init__(self, *, clock: Clock, ledger: Ledger) -> None:
        self._clock = clock
        self._ledger = ledger

    def add(self, record: SessionRecord, item: QueuedBatch, index: int, error: TaskError) -> None:
        """Dead-letter task ``index`` of ``item`` with the last attempt's ``error``."""
        letter = Task()
        letter.CopyFrom(item.batch.tasks[index])
        letter.error.CopyFrom(error)
        letter.attempt = item.attempts
        b = item.batch
        entry = DeadLetterEntry(
            letter,
            b.id,
            self._clock.time(),
            b.priority,
            b.use_shared_data,
            b.required_shared_data_update_level,
        )
        letters = record.dead_letters
        held = letters.bytes
        letters.add(entry)
        self._ledger.letter_added(record, entry, letters.bytes - held)

    def resubmit(
        self, record: SessionRecord, task_ids: list[str] | None, *, reset_attempts: bool
    ) -> tuple[int, list[str]]:
        """Queue dead letters again (all when ``task_ids`` is None); they leave the queue.

        Without ``reset_attempts`` a task keeps its attempt count but gets at least one more
        attempt. Returns how many were queued and the named ids that were not letters; the
        caller dispatches.
        """
        letters = record.dead_letters
        held = letters.bytes
        taken, missing = letters.take(task_ids)
        if not taken:
            return 0, missing
        cap = record.config.max_attempts - 1
        keys = iter(self._ledger.next_key, None)
        for item in resubmit_batches(record.id, taken, reset_attempts, cap, keys):
            record.known[item.batch.id] = item.ntasks
            record.queue.push(item)
            self._ledger.resubmitted(record, item)
        self._ledger.letters_resubmitted(record, len(taken))
        self._ledger.letters_removed(record, [e.task.id for e in taken], held - letters.bytes)
        return len(taken), missing

    def discard(self, record: SessionRecord, task_ids: list[str] | None) -> tuple[int, list[str]]:
        """Drop dead letters for good (all when ``task_ids`` is None)."""
        letters = record.dead_letters
        held = letters.bytes
        taken, missing = letters.take(task_ids)
        if taken:
            self._ledger.letters_removed(record, [e.task.id for e in taken], held - letters.bytes)
        return len(taken), missing


__all__ = ["DeadLetterOffice"]
