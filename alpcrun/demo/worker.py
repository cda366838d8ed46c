"""The demo's worker: prices one Monte Carlo chunk per task.

Start it with ``alpcrun worker alpcrun.demo.worker:MonteCarloWorker`` (or
``python -m workers_sdk alpcrun.demo.worker:MonteCarloWorker``).
"""

from __future__ import annotations

from alpcrun.demo.pricing import ChunkResult, decode_task, encode_result, mc_chunk
from workers_sdk import NonRetryableError, TaskContext, Worker


class MonteCarloWorker(Worker):
    """Prices one chunk per task with :func:`~alpcrun.demo.pricing.mc_chunk`.

    ``handle`` is synchronous: numpy releases the GIL for most of the work, and the worker
    SDK runs sync handlers in its thread pool so the event loop stays responsive.
    """

    def handle(self, task: TaskContext) -> bytes:
        """Price one chunk.

        Args:
            task: The task; its payload is an encoded chunk (see :mod:`alpcrun.demo.pricing`).

        Returns:
            The encoded :class:`~alpcrun.demo.pricing.ChunkResult`.

        Raises:
            NonRetryableError: The payload is malformed; retrying cannot help.
        """
        try:
            chunk = decode_task(task.payload)
        except ValueError as exc:
            raise NonRetryableError(f"bad demo task payload: {exc}") from exc
        total, total_sq = mc_chunk(chunk.option, chunk.paths, chunk.seed)
        return encode_result(ChunkResult(total=total, total_sq=total_sq, count=chunk.paths // 2))


__all__ = ["MonteCarloWorker"]
