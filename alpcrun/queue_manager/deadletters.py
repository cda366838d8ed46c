"""A session's dead-letter queue: tasks that used up their attempts or failed for good.

Each letter keeps the *input* task (payload and refs, so it can be resubmitted) with
``error`` set to the last attempt's error (its reason code says why: ``error``,
``worker_lost``, ``timeout`` or ``non_retryable``) and ``attempt`` set to the attempts made,
plus what is needed to rebuild a batch around it. Letters are kept in the order they died;
task ids are unique within a session, so a task id names one letter. The queue counts the
charged bytes of its letters (``bytes``) for the dead-letter bounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ulid import ULID

from alpcrun.proto import Batch, Task
from alpcrun.queue_manager.limits import charged
from alpcrun.queue_manager.queues import QueuedBatch

RESUBMIT_TASKS = 100
RESUBMIT_BYTES = 1 << 19
"""Dead letters are resubmitted in batches of at most this many tasks and bytes (a single
larger letter travels alone: it fitted in the batch it came in)."""


@dataclass(slots=True)
class DeadLetterEntry:
    """One dead-lettered task."""

    task: Task
    """The input task with ``error`` and ``attempt`` (attempts made) set."""
    batch_id: str
    """The client batch it came in."""
    dead_at: float
    """Wall-clock time it was dead-lettered."""
    priority: int = 0
    """Its batch's priority."""
    use_shared_data: bool = False
    """Its batch read the session's shared data."""
    shared_level: int = 0
    """Its batch's required shared-data update level."""
    nbytes: int = 0
    """Charged bytes (set when it joins a queue)."""


class DeadLetterQueue:
    """Dead letters of one session by task id, oldest first."""

    __slots__ = ("_letters", "bytes")

    def __init__(self) -> None:
        self._letters: dict[str, DeadLetterEntry] = {}
        self.bytes = 0
        """Charged bytes of the letters held."""

    def __len__(self) -> int:
        return len(self._letters)

    def __iter__(self) -> Iterator[DeadLetterEntry]:
        return iter(list(self._letters.values()))

    def add(self, entry: DeadLetterEntry) -> None:
        """Add a letter (a task dead-lettered again replaces its earlier letter)."""
        old = self._letters.pop(entry.task.id, None)
        if old is not None:
            self.bytes -= old.nbytes
        entry.nbytes = charged(entry.task.ByteSize() + len(entry.batch_id), 1)
        self.bytes += entry.nbytes
        self._letters[entry.task.id] = entry

    def get(self, task_id: str) -> DeadLetterEntry | None:
        """The letter of this task, or None."""
        return self._letters.get(task_id)

    def page(self, after: str, limit: int) -> tuple[list[DeadLetterEntry], str]:
        """Up to ``limit`` letters after task id ``after`` ('' = from the start).

        Returns the letters and the id to pass as ``after`` for the next page ('' when this
        page is the last). An ``after`` that is no longer a letter starts from the beginning
        of what is left after it in order, or from the start if unknown.
        """
        items = iter(self._letters.values())
        if after and after in self._letters:
            for entry in items:
                if entry.task.id == after:
                    break
        out: list[DeadLetterEntry] = []
        for entry in items:
            if len(out) == limit:
                return out, out[-1].task.id
            out.append(entry)
        return out, ""

    def take(self, task_ids: Iterable[str] | None) -> tuple[list[DeadLetterEntry], list[str]]:
        """Remove and return the named letters (all when ``task_ids`` is None).

        Returns the removed letters (oldest first) and the named ids that were not letters.
        """
        if task_ids is None:
            taken = list(self._letters.values())
            self._letters.clear()
            self.bytes = 0
            return taken, []
        taken, missing = [], []
        for tid in dict.fromkeys(task_ids):
            entry = self._letters.pop(tid, None)
            if entry is None:
                missing.append(tid)
            else:
                self.bytes -= entry.nbytes
                taken.append(entry)
        return taken, missing

    def clear(self) -> None:
        """Drop every letter."""
        self._letters.clear()
        self.bytes = 0


def _chunks(entries: list[DeadLetterEntry]) -> Iterator[list[DeadLetterEntry]]:
    chunk: list[DeadLetterEntry] = []
    size = 0
    for entry in entries:
        n = entry.task.ByteSize() + 8
        if chunk and (len(chunk) >= RESUBMIT_TASKS or size + n > RESUBMIT_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += n
    if chunk:
        yield chunk


def resubmit_batches(
    session_id: str,
    entries: list[DeadLetterEntry],
    reset_attempts: bool,
    cap: int,
    keys: Iterator[int],
) -> Iterator[QueuedBatch]:
    """New queued batches (ids ``resubmit-<ULID>``) for dead letters taken from the queue.

    Letters are grouped by what their batch shared (priority, shared-data needs) and by the
    attempts they keep: none with ``reset_attempts``, else their own capped at ``cap`` (so
    each gets at least one more attempt).
    """
    groups: dict[tuple[int, int, bool, int], list[DeadLetterEntry]] = {}
    for entry in entries:
        used = 0 if reset_attempts else min(entry.task.attempt, cap)
        key = (used, entry.priority, entry.use_shared_data, entry.shared_level)
        groups.setdefault(key, []).append(entry)
    for (used, priority, shared, level), members in groups.items():
        for chunk in _chunks(members):
            batch = Batch(
                id=f"resubmit-{ULID()}",
                session_id=session_id,
                priority=priority,
                use_shared_data=shared,
                required_shared_data_update_level=level,
            )
            for entry in chunk:
                task = batch.tasks.add()
                task.CopyFrom(entry.task)
                task.ClearField("error")
                task.attempt = 0
            yield QueuedBatch(batch, len(chunk), batch.ByteSize(), priority, next(keys), used)


__all__ = ["DeadLetterEntry", "DeadLetterQueue", "resubmit_batches"]
