"""The demo client: price an option portfolio by Monte Carlo on the grid, check it analytically.

Start a queue manager and a few ``alpcrun.demo.worker:MonteCarloWorker`` workers, then::

    summary = await run_demo("localhost:1337", api_key="k")
    print(format_summary(summary))
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

from alpcrun.client import AsyncClient, Progress
from alpcrun.config import ClientSettings, load_settings
from alpcrun.demo._report import PortfolioAggregator, ProgressDisplay
from alpcrun.demo.market import encode_market, encode_ref_task
from alpcrun.demo.pricing import Option, encode_task, make_portfolio, task_seed

BATCH_TASKS = 100
"""Tasks per batch: small enough to spread a run over every worker, large enough to amortise."""
INFLIGHT_BATCHES_PER_WORKER = 4
"""Batches a worker may hold at once, so it never waits for the next one."""


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """The outcome of :func:`run_demo`."""

    tasks: int
    """Tasks submitted (options x chunks per option)."""
    failed: int
    """Tasks that came back with an error (their chunks are left out of the estimates)."""
    wall_seconds: float
    """Time from opening the session to the last result."""
    tasks_per_second: float
    """``tasks / wall_seconds``."""
    portfolio_mc: float
    """Monte Carlo value of the portfolio (quantities applied)."""
    portfolio_stderr: float
    """Standard error of ``portfolio_mc``."""
    portfolio_analytic: float
    """Black-Scholes value of the portfolio."""
    max_abs_error_in_stderrs: float
    """Largest ``|MC - Black-Scholes|`` of a single option, in that option's standard errors."""


def _payloads(
    portfolio: Sequence[Option], chunks_per_option: int, paths_per_chunk: int, seed: int
) -> Iterator[bytes]:
    """Yield the task payloads lazily, option by option, chunk by chunk."""
    for i, option in enumerate(portfolio):
        for chunk in range(chunks_per_option):
            yield encode_task(option, paths_per_chunk, task_seed(seed, i, chunk))


def _ref_payloads(
    options: int, chunks_per_option: int, paths_per_chunk: int, seed: int
) -> Iterator[bytes]:
    """Yield reference tasks (option index, paths, seed) in the order of :func:`_payloads`."""
    for i in range(options):
        for chunk in range(chunks_per_option):
            yield encode_ref_task(i, paths_per_chunk, task_seed(seed, i, chunk))


async def run_demo(
    address: str,
    api_key: str,
    *,
    options: int = 100,
    chunks_per_option: int = 100,
    paths_per_chunk: int = 2000,
    seed: int = 7,
    out: TextIO = sys.stderr,
    central_cache: str | None = None,
) -> DemoSummary:
    """Price a random portfolio by Monte Carlo on the grid and compare with Black-Scholes.

    Submits one task per (option, chunk) through one session's ``map``, adds up the results
    per option as they arrive and draws a progress line on ``out``.

    Args:
        address: Queue manager ``host:port``.
        api_key: The grid's API key.
        options: Number of options in the portfolio.
        chunks_per_option: Tasks per option.
        paths_per_chunk: Simulated terminal prices per task (even).
        seed: Seed of the portfolio and of every chunk's random stream.
        out: Where the progress display goes.
        central_cache: Central cache ``host:port``: when given, the portfolio's market data
            is uploaded once as the session's shared data and each task carries only an
            option index, a path count and a seed (workers read the rest through their node
            agent); otherwise every task carries its option.

    Returns:
        The run's summary.

    Raises:
        ValueError: A count is out of range or ``paths_per_chunk`` is odd.
        alpcrun.errors.AlpcrunError: The grid refused the session or the stream failed.
    """
    if options < 1 or chunks_per_option < 1:
        raise ValueError("options and chunks_per_option must be at least 1")
    if paths_per_chunk < 2 or paths_per_chunk % 2:
        raise ValueError(f"paths_per_chunk must be a positive even number, got {paths_per_chunk}")
    portfolio = make_portfolio(options, seed)
    total = options * chunks_per_option
    aggregator = PortfolioAggregator(portfolio, chunks_per_option)
    settings = load_settings(
        ClientSettings, max_batch_tasks=BATCH_TASKS, central_cache=central_cache
    )
    display = ProgressDisplay(out, total)

    def on_progress(progress: Progress) -> None:
        display.update(progress.completed + progress.failed, progress.failed)

    failed = 0
    async with AsyncClient(address, api_key=api_key, settings=settings) as client:
        start = time.perf_counter()
        try:
            async with client.session(
                app_id="demo", max_inflight_batches_per_worker=INFLIGHT_BATCHES_PER_WORKER
            ) as session:
                payloads = _payloads(portfolio, chunks_per_option, paths_per_chunk, seed)
                if central_cache is not None:
                    await session.set_shared_data(encode_market(portfolio))
                    payloads = _ref_payloads(options, chunks_per_option, paths_per_chunk, seed)
                async for result in session.map(payloads, progress=on_progress):
                    if result.ok:
                        aggregator.add(result.index, result.payload)
                    else:
                        failed += 1
        finally:
            display.close()
        wall = time.perf_counter() - start
    mc, stderr, analytic = aggregator.portfolio_value()
    worst = max((e.error_in_stderrs for e in aggregator.estimates() if e.samples > 1), default=0.0)
    return DemoSummary(
        tasks=total,
        failed=failed,
        wall_seconds=wall,
        tasks_per_second=total / wall if wall > 0 else 0.0,
        portfolio_mc=mc,
        portfolio_stderr=stderr,
        portfolio_analytic=analytic,
        max_abs_error_in_stderrs=worst,
    )


def format_summary(summary: DemoSummary) -> str:
    """Render a summary as a few aligned lines (no trailing newline)."""
    rows = [
        ("tasks", f"{summary.tasks:,} ({summary.failed:,} failed)"),
        ("wall time", f"{summary.wall_seconds:.2f} s"),
        ("throughput", f"{summary.tasks_per_second:,.0f} tasks/s"),
        ("portfolio (MC)", f"{summary.portfolio_mc:,.4f} ± {summary.portfolio_stderr:,.4f}"),
        ("portfolio (Black-Scholes)", f"{summary.portfolio_analytic:,.4f}"),
        ("worst option deviation", f"{summary.max_abs_error_in_stderrs:.2f} standard errors"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name + ':':<{width + 1}} {value}" for name, value in rows)


__all__ = [
    "BATCH_TASKS",
    "INFLIGHT_BATCHES_PER_WORKER",
    "DemoSummary",
    "format_summary",
    "run_demo",
]
