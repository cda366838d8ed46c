"""The demo's worker: prices one Monte Carlo chunk per task.

Start it with ``alpcrun worker alpcrun.demo.worker:MonteCarloWorker`` (or
``python -m workers_sdk alpcrun.demo.worker:MonteCarloWorker``).
"""

from __future__ import annotations

import threading

from alpcrun.demo.market import decode_market, decode_ref_task, is_ref_task
from alpcrun.demo.pricing import ChunkResult, Option, decode_task, encode_result, mc_chunk
from workers_sdk import NonRetryableError, TaskContext, Worker


class MonteCarloWorker(Worker):
    """Prices one chunk per task with :func:`~alpcrun.demo.pricing.mc_chunk`.

    ``handle`` is synchronous: numpy releases the GIL for most of the work, and the worker
    SDK runs sync handlers in its thread pool so the event loop stays responsive.
    A task is either self-contained (``pricing.encode_task``) or refers to an option of the
    session's shared market data (``market.encode_ref_task``); the decoded market data is
    kept per (session, level).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._market: tuple[tuple[str, int], list[Option]] | None = None

    def _option(self, task: TaskContext) -> tuple[Option, int, int]:
        index, paths, seed = decode_ref_task(task.payload)
        key = (task.session_id, task.shared_data_level)
        with self._lock:
            if self._market is None or self._market[0] != key:
                self._market = (key, decode_market(task.shared_data()))
            options = self._market[1]
        if index >= len(options):
            raise ValueError(f"option index {index} is not in the market data")
        return options[index], paths, seed

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
            if is_ref_task(task.payload):
                option, paths, seed = self._option(task)
            else:
                chunk = decode_task(task.payload)
                option, paths, seed = chunk.option, chunk.paths, chunk.seed
        except (ValueError, LookupError) as exc:
            raise NonRetryableError(f"bad demo task payload: {exc}") from exc
        total, total_sq = mc_chunk(option, paths, seed)
        return encode_result(ChunkResult(total=total, total_sq=total_sq, count=paths // 2))


__all__ = ["MonteCarloWorker"]
