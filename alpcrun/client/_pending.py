"""Bookkeeping that makes a session's stream survive reconnects (sans-I/O).

:class:`IdSource` numbers a session object's tasks, so a result for a task it issued and
already delivered is recognised as a repeat. :class:`Unfinished` keeps every batch sent on
the session until the final result of each of its tasks has arrived, so a new stream can
send them all again after a lost connection (the queue manager ignores a batch id it still
knows). :class:`SeqFilter` drops result messages the queue manager writes a second time
after a re-attach (those whose acknowledgement was lost with the old stream), so every
result is routed once.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator

from alpcrun.client._batcher import PackedBatch


class IdSource:
    """Task and batch ids for one session object: a random prefix plus counters.

    The 6-hex-digit prefix keeps ids unique when several processes attach to one session.
    """

    __slots__ = ("_batches", "issued", "prefix")

    def __init__(self) -> None:
        self.prefix = secrets.token_hex(3) + "-"
        self.issued = 0
        """Task ids handed out so far (the number of the next one)."""
        self._batches = itertools.count()

    def task_id(self) -> str:
        """A fresh task id."""
        number = self.issued
        self.issued = number + 1
        return f"{self.prefix}{number}"

    def batch_id(self) -> str:
        """A fresh batch id."""
        return f"{self.prefix}b{next(self._batches)}"

    def issued_since(self, task_id: str, first: int) -> bool:
        """Whether ``task_id`` came from this source with a number of at least ``first``."""
        if not task_id.startswith(self.prefix):
            return False
        number = task_id[len(self.prefix) :]
        return number.isdigit() and int(number) >= first


class Unfinished:
    """Batches sent (or queued for sending) whose tasks have not all been answered.

    Iteration is in submission order, which is the order a new stream sends them again.
    A batch's results may arrive in several parts (retried tasks come later), so completion
    is counted per task: :meth:`answered` is called once per routed task result.
    """

    __slots__ = ("_batches",)

    def __init__(self) -> None:
        self._batches: dict[PackedBatch, None] = {}

    def add(self, batch: PackedBatch) -> None:
        """Register a batch that was just handed to the stream for sending."""
        self._batches[batch] = None

    def answered(self, batch: PackedBatch) -> bool:
        """Count one task of ``batch`` as answered; forget the batch once all are.

        Args:
            batch: The batch the answered task belongs to.

        Returns:
            Whether that completed the batch.
        """
        batch.answered += 1
        if batch.answered >= batch.count:
            self._batches.pop(batch, None)
            return True
        return False

    def discard(self, batch: PackedBatch) -> None:
        """Forget a batch whose tasks have all been answered (if still registered)."""
        self._batches.pop(batch, None)

    def __contains__(self, batch: object) -> bool:
        return batch in self._batches

    def __iter__(self) -> Iterator[PackedBatch]:
        return iter(list(self._batches))

    def __len__(self) -> int:
        return len(self._batches)

    def clear(self) -> None:
        """Forget every batch (the stream has ended for good)."""
        self._batches.clear()


class SeqFilter:
    """Which result messages of a session were already routed, by their ``seq`` number.

    The queue manager numbers a session's result messages 1, 2, ... and, when a client
    attaches again, writes the unacknowledged ones again with their original numbers before
    new ones. A message numbered at or below the highest one routed is such a repeat. One
    filter lives as long as the session object, across reconnects.
    """

    __slots__ = ("dropped", "last")

    def __init__(self) -> None:
        self.last = 0
        """Highest ``seq`` routed so far."""
        self.dropped = 0
        """Result messages dropped as repeats."""

    def accept(self, seq: int) -> bool:
        """Whether the message numbered ``seq`` is new (and record it as routed).

        Args:
            seq: The message's ``ClientStreamResponse.seq``; 0 means unnumbered (a server
                that does not number results), which is always accepted.

        Returns:
            False for a repeat, which the caller drops (and acknowledges again).
        """
        if seq == 0:
            return True
        if seq <= self.last:
            self.dropped += 1
            return False
        self.last = seq
        return True
