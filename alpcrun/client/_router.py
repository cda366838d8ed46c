"""Routes each task result of a session's stream to the handle or map waiting for it (sans-I/O).

Every task gets one entry in a routing table (task id → (sink, index, batch)); a sink is a
:class:`~alpcrun.client.TaskHandle` or a running ``map``. The router pops the entry of each
result and hands the result to its sink, so the per-task cost is a dict insert, a dict pop and
one small object. The table's size is the number of unsent plus unanswered tasks, which the
window bounds.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from alpcrun.client._batcher import PackedBatch
from alpcrun.client._pending import IdSource, Unfinished
from alpcrun.client._results import Counters, TaskResult, Unclaimed
from alpcrun.errors import AlpcrunError
from alpcrun.proto import Batch, Task


class Sink(Protocol):
    """Where the results of routed tasks go: a task handle or a map."""

    def _deliver(self, result: TaskResult) -> None:
        """Take one result (called by the reader; must not raise)."""

    def _fail(self, error: AlpcrunError) -> None:
        """The results of this sink's pending tasks will never arrive."""


Route = tuple[Sink, int, PackedBatch]
"""Where one task's result goes: its sink, the index passed back, and the batch it went in."""


class Router:
    """The routing table of one stream: delivers results to sinks and counts them.

    The submit path writes :attr:`routes` directly (one dict store per task, no call); the
    router pops entries as results arrive, counts each answered task against its batch in
    ``unfinished`` and sets :attr:`space` whenever the table is below ``window``.

    Args:
        ids: The session object's id source (tells repeats from results nobody here awaits).
        counters: The session object's counters.
        unclaimed: Where results nobody here waits for go.
        unfinished: The stream's registry of batches with unanswered tasks.
        window: Most tasks unsent plus unanswered.
    """

    __slots__ = (
        "_counters",
        "_first_task",
        "_ids",
        "_unclaimed",
        "_unfinished",
        "routes",
        "space",
        "window",
    )

    def __init__(
        self,
        *,
        ids: IdSource,
        counters: Counters,
        unclaimed: Unclaimed,
        unfinished: Unfinished,
        window: int,
    ) -> None:
        self._ids = ids
        self._first_task = ids.issued
        self._counters = counters
        self._unclaimed = unclaimed
        self._unfinished = unfinished
        self.window = window
        """Most tasks unsent plus unanswered."""
        self.routes: dict[str, Route] = {}
        """Task id → route, for every task added and not answered yet."""
        self.space = asyncio.Event()
        """Set when routing left the table below the window (cleared by whoever waits)."""

    def route(self, results: Batch) -> None:
        """Hand every result of one result message to its sink (never raises for a sink).

        Results with no route are repeats of results already delivered (counted and
        dropped) or results nobody here waits for (pushed to ``unclaimed``).

        Args:
            results: The ``Batch`` of one ``ClientStreamResponse``.
        """
        routes, unfinished = self.routes, self._unfinished
        failed = received = 0
        for task in results.tasks:
            task_id = task.id
            entry = routes.pop(task_id, None)
            if entry is None:
                if self._unrouted(task, results.id):
                    received += 1
                    failed += task.HasField("error")
                continue
            sink, index, batch = entry
            if task.HasField("error"):
                result = TaskResult(index, task_id, b"", task.error)
                failed += 1
            else:
                refs = task.refs
                result = TaskResult(index, task_id, task.payload, None, tuple(refs) if refs else ())
            received += 1
            batch.answered += 1  # Unfinished.answered, inlined on the per-task path
            if batch.answered >= batch.count:
                unfinished.discard(batch)
            sink._deliver(result)
        self._counters.failed += failed
        self._counters.completed += received - failed
        if len(routes) < self.window:
            self.space.set()

    def _unrouted(self, task: Task, batch_id: str) -> bool:
        """A result with no route: a repeat of one delivered, or nobody here waits for it.

        A repeat is a task this stream issued, answered again in one of its own batches (a
        resubmitted dead letter comes back in another batch and is not a repeat).

        Returns:
            Whether the result was kept (as unclaimed) rather than dropped as a repeat.
        """
        ids = self._ids
        if batch_id.startswith(ids.prefix) and ids.issued_since(task.id, self._first_task):
            self._counters.duplicate_tasks += 1
            return False
        error = task.error if task.HasField("error") else None
        self._unclaimed.push(TaskResult(-1, task.id, task.payload, error))
        return True

    def fail(self, error: AlpcrunError) -> None:
        """Forget every route and fail each sink that had one, once, with ``error``."""
        sinks = dict.fromkeys(entry[0] for entry in self.routes.values())
        self.routes.clear()
        for sink in sinks:
            sink._fail(error)
        self.space.set()
