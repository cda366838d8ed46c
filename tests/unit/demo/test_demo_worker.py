"""Tests of MonteCarloWorker through the worker SDK's harness."""

from __future__ import annotations

import pytest

from alpcrun.demo.pricing import (
    Option,
    OptionKind,
    decode_result,
    encode_task,
    mc_chunk,
)
from alpcrun.demo.worker import MonteCarloWorker
from workers_sdk import NonRetryableError, WorkerHarness

OPTION = Option(OptionKind.PUT, spot=95.0, strike=100.0, rate=0.02, vol=0.3, maturity_years=0.5)


async def test_worker_returns_the_sums_of_mc_chunk() -> None:
    """A task's result decodes to exactly mc_chunk's sums and paths // 2 samples."""
    async with WorkerHarness(MonteCarloWorker()) as h:
        out = await h.run(encode_task(OPTION, 2000, 42))
    result = decode_result(out)
    assert (result.total, result.total_sq) == mc_chunk(OPTION, 2000, 42)
    assert result.count == 1000


async def test_worker_runs_a_batch() -> None:
    """Every task of a batch gets its own result, in order."""
    payloads = [encode_task(OPTION, 200, seed) for seed in range(5)]
    async with WorkerHarness(MonteCarloWorker(), threads=2) as h:
        results = await h.run_batch(payloads)
    assert [r.ok for r in results] == [True] * 5
    totals = [decode_result(r.payload or b"").total for r in results]
    assert totals == [mc_chunk(OPTION, 200, seed)[0] for seed in range(5)]


async def test_worker_fails_malformed_payloads_for_good() -> None:
    """A payload that does not decode raises NonRetryableError (retrying cannot help)."""
    async with WorkerHarness(MonteCarloWorker()) as h:
        with pytest.raises(NonRetryableError, match="bad demo task payload"):
            await h.run(b"not a task")
