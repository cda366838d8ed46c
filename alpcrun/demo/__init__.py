"""A built-in workload: Monte Carlo pricing of a European option portfolio.

The package is split by the process that uses it, so a worker never imports the client SDK:

- :mod:`alpcrun.demo.pricing` (re-exported here): options, Black-Scholes, Monte Carlo
  chunks and the binary task/result formats; pure and numpy-only.
- :mod:`alpcrun.demo.worker`: ``MonteCarloWorker``, run with
  ``alpcrun worker alpcrun.demo.worker:MonteCarloWorker``.
- :mod:`alpcrun.demo.run`: ``run_demo()``, ``DemoSummary`` and ``format_summary()``, the
  client side.
"""

from __future__ import annotations

from alpcrun.demo.pricing import ChunkResult as ChunkResult
from alpcrun.demo.pricing import ChunkTask as ChunkTask
from alpcrun.demo.pricing import Option as Option
from alpcrun.demo.pricing import OptionKind as OptionKind
from alpcrun.demo.pricing import black_scholes as black_scholes
from alpcrun.demo.pricing import decode_result as decode_result
from alpcrun.demo.pricing import decode_task as decode_task
from alpcrun.demo.pricing import encode_result as encode_result
from alpcrun.demo.pricing import encode_task as encode_task
from alpcrun.demo.pricing import make_portfolio as make_portfolio
from alpcrun.demo.pricing import mc_chunk as mc_chunk
from alpcrun.demo.pricing import task_seed as task_seed

__all__ = [
    "ChunkResult",
    "ChunkTask",
    "Option",
    "OptionKind",
    "black_scholes",
    "decode_result",
    "decode_task",
    "encode_result",
    "encode_task",
    "make_portfolio",
    "mc_chunk",
    "task_seed",
]
