"""A session's result batches: undelivered, then written but not yet acknowledged.

Every result batch gets a per-session sequence number when it arrives. A client stream that
acknowledges (metadata ``acks: 1``) has each written batch kept until a cumulative
``ResultAck`` covers its number; when a client attaches, unacknowledged batches are put back
at the head and written again with their original numbers, so a client that lost its stream
gets every result it had not confirmed. A stream without acks frees each batch once written.

With a journal, ``limit`` holds back batches not yet written to it: a client never sees a
result that a crash could take back (and number again).

``bytes`` counts the charged bytes (:func:`~alpcrun.queue_manager.limits.charged`) of every
batch held, for the session's ``max_result_bytes`` and the queue manager's total.
"""

from __future__ import annotations

from collections import deque

from alpcrun.proto import Batch
from alpcrun.queue_manager.limits import charged

UNLIMITED = 1 << 62
"""``ResultBuffer.limit`` when nothing holds results back."""


class ResultBuffer:
    """Undelivered and unacknowledged result batches of one session, in sequence order."""

    __slots__ = ("_pending", "_sizes", "_unacked", "bytes", "limit", "seq")

    def __init__(self) -> None:
        self._pending: deque[tuple[int, Batch]] = deque()
        self._unacked: deque[tuple[int, Batch]] = deque()
        self._sizes: dict[int, int] = {}
        self.seq = 0
        """Number of the last batch pushed."""
        self.limit = UNLIMITED
        """Highest number that may be written to a client (the journal's durable point)."""
        self.bytes = 0
        """Charged bytes of the batches held (undelivered plus unacknowledged)."""

    def push(self, batch: Batch, nbytes: int = -1) -> int:
        """Add a result batch of ``nbytes`` serialized bytes (-1: measure); return its number."""
        self.seq += 1
        self._pending.append((self.seq, batch))
        self._hold(self.seq, batch, nbytes)
        return self.seq

    def _hold(self, seq: int, batch: Batch, nbytes: int) -> None:
        size = charged(batch.ByteSize() if nbytes < 0 else nbytes, len(batch.tasks))
        self._sizes[seq] = size
        self.bytes += size

    def _free(self, seq: int) -> None:
        self.bytes -= self._sizes.pop(seq, 0)

    @property
    def undelivered(self) -> int:
        """Batches waiting to be written."""
        return len(self._pending)

    @property
    def unacked(self) -> int:
        """Batches written and not yet acknowledged."""
        return len(self._unacked)

    def __len__(self) -> int:
        """Batches held (undelivered plus unacknowledged): what the buffer bound counts."""
        return len(self._pending) + len(self._unacked)

    def peek(self) -> tuple[int, Batch] | None:
        """The next batch that may be written, or None."""
        if self._pending and self._pending[0][0] <= self.limit:
            return self._pending[0]
        return None

    def restore(self, seq: int, batch: Batch) -> None:
        """Put back a journaled, unacknowledged batch (recovery; in increasing ``seq``)."""
        self._pending.append((seq, batch))
        self._hold(seq, batch, -1)
        self.seq = max(self.seq, seq)

    def written(self, seq: int, *, keep: bool) -> bool:
        """The batch ``seq`` at the head was written; keep it until acked when ``keep``.

        Returns False (and changes nothing) if ``seq`` is no longer at the head.
        """
        if not self._pending or self._pending[0][0] != seq:
            return False
        item = self._pending.popleft()
        if keep:
            self._unacked.append(item)
        else:
            self._free(seq)
        return True

    def ack(self, seq: int) -> list[Batch]:
        """Free every written batch numbered ``seq`` or lower; return the freed batches."""
        freed = []
        while self._unacked and self._unacked[0][0] <= seq:
            number, batch = self._unacked.popleft()
            self._free(number)
            freed.append(batch)
        return freed

    def rewind(self) -> int:
        """Put unacknowledged batches back at the head (for the next stream); return them."""
        n = len(self._unacked)
        self._pending.extendleft(reversed(self._unacked))
        self._unacked.clear()
        return n

    def clear(self) -> None:
        """Drop everything (the session is gone)."""
        self._pending.clear()
        self._unacked.clear()
        self._sizes.clear()
        self.bytes = 0
