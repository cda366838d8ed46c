"""Auto-batching: packs tasks into per-priority ``ClientStreamRequest`` batches (sans-I/O)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from alpcrun.proto import ClientStreamRequest, PayloadRef


class PackedBatch:
    """One batch: being filled, then sent and kept until every task of it is answered.

    Compared by identity, so it can key the registry of unfinished batches without
    touching the protobuf message.
    """

    __slots__ = ("answered", "count", "nbytes", "request", "tasks")

    def __init__(self, request: ClientStreamRequest) -> None:
        self.request = request
        """The ``ClientStreamRequest`` carrying the batch (built in place)."""
        self.tasks = request.batch.tasks
        self.count = 0
        """Tasks in the batch."""
        self.nbytes = 0
        """Payload bytes in the batch."""
        self.answered = 0
        """Tasks whose final result has arrived (kept by the stream, not the batcher)."""


class Batcher:
    """Packs tasks into batches of at most ``max_tasks`` tasks and about ``max_bytes`` bytes.

    A full batch is handed to ``emit`` (as a :class:`PackedBatch`) at once; partly filled
    ones wait for :meth:`flush` (which the stream calls after its linger time). Tasks of
    different priorities go to separate batches, because priority is a batch field. The
    request message is built in place, so emitting a batch copies nothing.

    Args:
        session_id: Written into every batch.
        new_batch_id: Returns a fresh batch id, unique within the session.
        max_tasks: Most tasks per batch.
        max_bytes: A batch is emitted once its payload bytes reach this; a task that would
            push a non-empty batch past it starts a new batch.
        emit: Receives each finished batch, in order.
    """

    __slots__ = (
        "_emit",
        "_max_bytes",
        "_max_tasks",
        "_new_batch_id",
        "_open",
        "_session_id",
        "shared_level",
    )

    def __init__(
        self,
        *,
        session_id: str,
        new_batch_id: Callable[[], str],
        max_tasks: int,
        max_bytes: int,
        emit: Callable[[PackedBatch], None],
    ) -> None:
        self._session_id = session_id
        self._new_batch_id = new_batch_id
        self._max_tasks = max_tasks
        self._max_bytes = max_bytes
        self._emit = emit
        self._open: dict[int, PackedBatch] = {}
        self.shared_level = 0
        """Shared-data level new batches require (0: they use no shared data)."""

    def add(
        self, task_id: str, payload: bytes, priority: int, refs: Sequence[PayloadRef] = ()
    ) -> PackedBatch:
        """Append one task (with payload ``refs``) to the open batch of ``priority``.

        The batch is emitted when full.

        Returns:
            The batch the task went into.
        """
        size = len(payload)
        current = self._open.get(priority)
        if current is None:
            current = self._start(priority)
        elif current.nbytes + size > self._max_bytes:
            self._emit_open(priority)
            current = self._start(priority)
        if refs:
            current.tasks.add(id=task_id, payload=payload).refs.extend(refs)
        else:
            current.tasks.add(id=task_id, payload=payload)
        current.count += 1
        current.nbytes += size
        if current.count >= self._max_tasks or current.nbytes >= self._max_bytes:
            self._emit_open(priority)
        return current

    def flush(self) -> int:
        """Emit every partly filled batch, highest priority first.

        Returns:
            The number of batches emitted.
        """
        emitted = 0
        for priority in sorted(self._open, reverse=True):
            self._emit_open(priority)
            emitted += 1
        return emitted

    def clear(self) -> None:
        """Drop every open batch without emitting it."""
        self._open.clear()

    @property
    def open_tasks(self) -> int:
        """Tasks waiting in partly filled batches."""
        return sum(batch.count for batch in self._open.values())

    def _start(self, priority: int) -> PackedBatch:
        request = ClientStreamRequest()
        batch = request.batch
        batch.id = self._new_batch_id()
        batch.session_id = self._session_id
        batch.priority = priority
        if self.shared_level:
            batch.use_shared_data = True
            batch.required_shared_data_update_level = self.shared_level
        current = self._open[priority] = PackedBatch(request)
        return current

    def _emit_open(self, priority: int) -> None:
        self._emit(self._open.pop(priority))
