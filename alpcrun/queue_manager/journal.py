"""What the core tells a journal, and the journal that keeps nothing.

The core calls these hooks synchronously as its state changes; they must not block. A
durable journal (:mod:`alpcrun.queue_manager.sqlite_journal`) records them and writes them
in batches; until a change is written, the core does not let results that depend on it
reach a client (``ResultBuffer.limit``), so a crash can lose only work a client will send
again and results it has not seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from alpcrun.proto import Batch
from alpcrun.queue_manager.deadletters import DeadLetterEntry
from alpcrun.queue_manager.queues import QueuedBatch
from alpcrun.queue_manager.records import SessionRecord


class Journal(Protocol):
    """Receives every durable change of the core's state."""

    @property
    def enabled(self) -> bool:
        """Whether changes are kept (results then wait for :meth:`Journal` writes)."""

    @property
    def failure(self) -> str | None:
        """Why the journal cannot write now (None while it can): changes are then refused."""

    def session_changed(self, record: SessionRecord) -> None:
        """A session was created or its attributes, state or counters changed."""

    def session_removed(self, session_id: str) -> None:
        """A closed session passed its retention: forget it and everything of it."""

    def batch_added(self, record: SessionRecord, item: QueuedBatch) -> None:
        """A batch entered the session's work (submitted, a retry of some tasks, resubmitted)."""

    def batch_changed(self, item: QueuedBatch) -> None:
        """A batch's attempt count changed (a failed attempt put it back)."""

    def batch_removed(self, item: QueuedBatch) -> None:
        """Every task of the batch has a final result (or the session dropped it)."""

    def result_added(self, record: SessionRecord, seq: int, batch: Batch) -> None:
        """Result batch ``seq`` was added to the session's result buffer."""

    def results_freed(self, record: SessionRecord, seq: int) -> None:
        """Result batches numbered ``seq`` or lower need not be kept."""

    def letter_added(self, record: SessionRecord, entry: DeadLetterEntry) -> None:
        """A task was dead-lettered."""

    def letters_removed(self, record: SessionRecord, task_ids: Iterable[str]) -> None:
        """Dead letters were resubmitted or discarded."""


class NullJournal:
    """Keeps nothing: state lives in memory only and a crash loses it."""

    enabled = False
    failure: str | None = None

    def session_changed(self, record: SessionRecord) -> None:
        """Do nothing."""

    def session_removed(self, session_id: str) -> None:
        """Do nothing."""

    def batch_added(self, record: SessionRecord, item: QueuedBatch) -> None:
        """Do nothing."""

    def batch_changed(self, item: QueuedBatch) -> None:
        """Do nothing."""

    def batch_removed(self, item: QueuedBatch) -> None:
        """Do nothing."""

    def result_added(self, record: SessionRecord, seq: int, batch: Batch) -> None:
        """Do nothing."""

    def results_freed(self, record: SessionRecord, seq: int) -> None:
        """Do nothing."""

    def letter_added(self, record: SessionRecord, entry: DeadLetterEntry) -> None:
        """Do nothing."""

    def letters_removed(self, record: SessionRecord, task_ids: Iterable[str]) -> None:
        """Do nothing."""


__all__ = ["Journal", "NullJournal"]
