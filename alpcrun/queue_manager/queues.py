"""Per-session task queue of batches: priority (batch priority desc, then arrival) or FIFO."""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass

from alpcrun.proto import Batch


@dataclass(slots=True)
class QueuedBatch:
    """A batch waiting in (or dispatched from) a session's queue; the proto is kept as it is."""

    batch: Batch
    """The client's batch, untouched but for ``dispatch_id`` when dispatched."""
    ntasks: int
    """Number of tasks in the batch."""
    nbytes: int
    """Serialized size of the batch, for byte bounds."""
    priority: int
    """Per-batch priority (higher first in priority queues)."""
    key: int = 0
    """Unique id of this queued batch within the queue manager (journal key)."""
    attempts: int = 0
    """Attempts made of its tasks (every task of a queued batch has made the same number)."""
    started_at: float = 0.0
    """Monotonic time its current attempt was reckoned to start (0: not yet; task_timeout)."""


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    """Counters of one task queue."""

    batches: int
    """Queued batches."""
    tasks: int
    """Queued tasks."""
    bytes: int
    """Queued batch bytes."""


class TaskQueue:
    """A queue of batches, O(log n) for priority order, O(1) for FIFO.

    ``push_front`` puts a batch back at the head (used to requeue in-flight batches of a
    lost worker) ahead of everything of equal or lower priority.
    """

    def __init__(self, *, fifo: bool = False) -> None:
        self._fifo = fifo
        self._deque: deque[QueuedBatch] = deque()
        self._heap: list[tuple[int, int, QueuedBatch]] = []
        self._back = itertools.count()
        self._front = itertools.count(-1, -1)
        self.batches = 0
        """Queued batches (``len(queue)``)."""
        self.tasks = 0
        """Queued tasks."""
        self.bytes = 0
        """Queued bytes."""

    @property
    def fifo(self) -> bool:
        """True for a FIFO queue, False for a priority queue."""
        return self._fifo

    def __len__(self) -> int:
        return self.batches

    def push(self, item: QueuedBatch) -> None:
        """Append a batch (by priority, then arrival)."""
        self.batches += 1
        self.tasks += item.ntasks
        self.bytes += item.nbytes
        if self._fifo:
            self._deque.append(item)
        else:
            heapq.heappush(self._heap, (-item.priority, next(self._back), item))

    def push_front(self, item: QueuedBatch) -> None:
        """Put a batch back at the head of its priority level."""
        self.batches += 1
        self.tasks += item.ntasks
        self.bytes += item.nbytes
        if self._fifo:
            self._deque.appendleft(item)
        else:
            heapq.heappush(self._heap, (-item.priority, next(self._front), item))

    def pop(self) -> QueuedBatch | None:
        """Remove and return the next batch, or None when empty."""
        if self._fifo:
            if not self._deque:
                return None
            item = self._deque.popleft()
        else:
            if not self._heap:
                return None
            item = heapq.heappop(self._heap)[2]
        self.batches -= 1
        self.tasks -= item.ntasks
        self.bytes -= item.nbytes
        return item

    def drain(self) -> list[QueuedBatch]:
        """Remove and return every queued batch in dispatch order."""
        out = []
        while (item := self.pop()) is not None:
            out.append(item)
        return out

    def set_fifo(self, fifo: bool) -> None:
        """Switch between FIFO and priority order, keeping the queued batches."""
        if fifo == self._fifo:
            return
        items = self.drain()
        self._fifo = fifo
        for item in items:
            self.push(item)

    def statistics(self) -> QueueStatistics:
        """Current counts."""
        return QueueStatistics(batches=len(self), tasks=self.tasks, bytes=self.bytes)
