"""Tests of the demo client: aggregation, progress display, summary and run_demo on a fake grid."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from alpcrun.client import Progress, TaskResult
from alpcrun.demo import run as run_module
from alpcrun.demo._report import OptionEstimate, PortfolioAggregator, ProgressDisplay
from alpcrun.demo.pricing import (
    ChunkResult,
    Option,
    OptionKind,
    black_scholes,
    encode_result,
    make_portfolio,
    mc_chunk,
)
from alpcrun.demo.run import DemoSummary, format_summary, run_demo
from alpcrun.demo.worker import MonteCarloWorker
from alpcrun.proto import TaskError
from workers_sdk import WorkerHarness

OPTION = Option(OptionKind.CALL, spot=100.0, strike=100.0, rate=0.05, vol=0.2, maturity_years=1.0)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_aggregator_adds_chunks_in_any_order() -> None:
    """Chunks of one option add up to the mean and standard error of all their samples."""
    agg = PortfolioAggregator([OPTION, OPTION], chunks_per_option=2)
    sums = [mc_chunk(OPTION, 20_000, seed) for seed in range(4)]
    for index in (3, 0, 2, 1):
        total, total_sq = sums[index]
        agg.add(index, encode_result(ChunkResult(total, total_sq, 10_000)))
    first, second = agg.estimates()
    assert first.samples == second.samples == 20_000
    assert first.mc == pytest.approx((sums[0][0] + sums[1][0]) / 20_000)
    assert first.analytic == pytest.approx(10.450584, abs=1e-5)
    assert 0 < first.stderr < 0.1
    assert first.error_in_stderrs < 5


def test_aggregator_portfolio_value_applies_quantities() -> None:
    """The portfolio value is the quantity-weighted sum; stderrs add in quadrature."""
    long3 = Option(OptionKind.CALL, 100.0, 100.0, 0.05, 0.2, 1.0, quantity=3)
    short2 = Option(OptionKind.PUT, 100.0, 100.0, 0.05, 0.2, 1.0, quantity=-2)
    agg = PortfolioAggregator([long3, short2], chunks_per_option=1)
    # Option 0: mean 5, sample variance 10, stderr^2 5; option 1: mean 2, variance 2, stderr^2 1.
    agg.add(0, encode_result(ChunkResult(total=10.0, total_sq=60.0, count=2)))
    agg.add(1, encode_result(ChunkResult(total=4.0, total_sq=10.0, count=2)))
    mc, stderr, analytic = agg.portfolio_value()
    assert mc == pytest.approx(3 * 5 - 2 * 2)
    assert stderr == pytest.approx(math.sqrt(9 * 5 + 4 * 1))
    assert analytic == pytest.approx(3 * black_scholes(long3) - 2 * black_scholes(short2))


def test_aggregator_rejects_an_index_outside_the_portfolio() -> None:
    """A result index past the last task raises IndexError."""
    agg = PortfolioAggregator([OPTION], chunks_per_option=2)
    with pytest.raises(IndexError):
        agg.add(2, encode_result(ChunkResult(1.0, 1.0, 1)))


def test_option_estimate_deviation_handles_edge_cases() -> None:
    """Exact agreement is 0 standard errors; a difference with zero stderr is infinite."""
    assert OptionEstimate(1.0, 0.0, 1.0, 2).error_in_stderrs == 0.0
    assert OptionEstimate(1.0, 0.0, 2.0, 2).error_in_stderrs == math.inf
    assert OptionEstimate(1.5, 0.25, 1.0, 2).error_in_stderrs == pytest.approx(2.0)


def test_progress_display_prints_a_line_per_tenth_when_not_a_terminal() -> None:
    """Off a terminal there is no carriage return, one line per 10 %, none repeated."""
    out = io.StringIO()
    display = ProgressDisplay(out, total=1000, clock=iter(range(100)).__next__)
    for done in range(0, 1001, 50):
        display.update(done, failed=0)
    display.update(1000, failed=0)
    display.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 10
    assert lines[-1].startswith("100% 1000/1000 tasks")


def test_progress_display_redraws_one_line_on_a_terminal() -> None:
    """On a terminal every update starts with a carriage return; close ends the line."""
    out = _Tty()
    display = ProgressDisplay(out, total=4, clock=iter([0.0, 1.0, 2.0]).__next__)
    display.update(1, failed=0)
    display.update(4, failed=1)
    display.close()
    text = out.getvalue()
    assert text.count("\r") == 2
    assert "[" + "#" * 30 + "] 100% 4/4 tasks 2/s failed 1" in text
    assert text.endswith("\n")


def test_format_summary_aligns_every_figure() -> None:
    """The summary names tasks, wall time, throughput, both values and the worst deviation."""
    summary = DemoSummary(
        tasks=10_000,
        failed=0,
        wall_seconds=2.5,
        tasks_per_second=4000.0,
        portfolio_mc=1234.5,
        portfolio_stderr=0.75,
        portfolio_analytic=1234.0,
        max_abs_error_in_stderrs=2.25,
    )
    text = format_summary(summary)
    lines = text.splitlines()
    assert len(lines) == 6
    value_columns = {len(line) - len(line.split(":", 1)[1].lstrip()) for line in lines}
    assert len(value_columns) == 1
    assert "10,000 (0 failed)" in text
    assert "2.50 s" in text
    assert "4,000 tasks/s" in text
    assert "1,234.5000 ± 0.7500" in text
    assert "1,234.0000" in text
    assert "2.25 standard errors" in text


class _FakeSession:
    """Runs map() through the real worker in-process, answering in reverse order."""

    def __init__(self, harness: WorkerHarness, fail_index: int | None) -> None:
        self._harness = harness
        self._fail_index = fail_index

    async def map(
        self, payloads: Iterable[bytes], *, progress: Any = None
    ) -> AsyncIterator[TaskResult]:
        inputs = list(payloads)
        outputs = await self._harness.run_batch(inputs)
        failed = 0
        for index in reversed(range(len(inputs))):
            if index == self._fail_index:
                failed += 1
                yield TaskResult(index, f"t{index}", b"", TaskError(message="boom"))
            else:
                yield TaskResult(index, f"t{index}", outputs[index].payload or b"", None)
        if progress is not None:
            progress(Progress(len(inputs), len(inputs) - failed, failed))


class _FakeClient:
    """Stands in for AsyncClient; records how it was built and which session it opened."""

    instances: list[_FakeClient] = []  # noqa: RUF012 - per-test record, reset by the fixture
    fail_index: int | None = None

    def __init__(self, address: str, *, api_key: str, settings: Any) -> None:
        self.address = address
        self.api_key = api_key
        self.settings = settings
        self.session_attrs: dict[str, Any] = {}
        _FakeClient.instances.append(self)

    async def __aenter__(self) -> _FakeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    @contextlib.asynccontextmanager
    async def session(self, **attrs: Any) -> AsyncIterator[_FakeSession]:
        self.session_attrs = attrs
        async with WorkerHarness(MonteCarloWorker(), threads=2) as harness:
            yield _FakeSession(harness, self.fail_index)


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> type[_FakeClient]:
    monkeypatch.setattr(run_module, "AsyncClient", _FakeClient)
    _FakeClient.instances = []
    _FakeClient.fail_index = None
    return _FakeClient


async def test_run_demo_agrees_with_black_scholes(fake_client: type[_FakeClient]) -> None:
    """On a (fake, in-process) grid the MC portfolio matches Black-Scholes within 4 stderrs."""
    out = io.StringIO()
    summary = await run_demo(
        "qm:1337", "key", options=8, chunks_per_option=10, paths_per_chunk=2000, out=out
    )
    (client,) = fake_client.instances
    assert (client.address, client.api_key) == ("qm:1337", "key")
    assert client.settings.max_batch_tasks == run_module.BATCH_TASKS
    assert client.session_attrs == {
        "app_id": "demo",
        "max_inflight_batches_per_worker": run_module.INFLIGHT_BATCHES_PER_WORKER,
    }
    assert summary.tasks == 80
    assert summary.failed == 0
    assert summary.wall_seconds > 0
    assert summary.tasks_per_second == pytest.approx(80 / summary.wall_seconds)
    assert summary.portfolio_stderr > 0
    assert abs(summary.portfolio_mc - summary.portfolio_analytic) < 4 * summary.portfolio_stderr
    assert summary.max_abs_error_in_stderrs < 5
    expected = sum(o.quantity * black_scholes(o) for o in make_portfolio(8, seed=7))
    assert summary.portfolio_analytic == pytest.approx(expected)
    assert out.getvalue().splitlines()[-1].startswith("100% 80/80 tasks")


async def test_run_demo_counts_failed_tasks_and_leaves_them_out(
    fake_client: type[_FakeClient],
) -> None:
    """A failed chunk is counted and skipped; the estimate still stands on the others."""
    fake_client.fail_index = 3
    summary = await run_demo("qm:1", "k", options=2, chunks_per_option=5, out=io.StringIO())
    assert summary.tasks == 10
    assert summary.failed == 1
    assert math.isfinite(summary.portfolio_mc)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"options": 0}, "at least 1"),
        ({"chunks_per_option": 0}, "at least 1"),
        ({"paths_per_chunk": 1001}, "even"),
    ],
)
async def test_run_demo_rejects_bad_sizes(
    fake_client: type[_FakeClient], kwargs: dict[str, int], match: str
) -> None:
    """Counts below one and odd path counts fail before anything is submitted."""
    with pytest.raises(ValueError, match=match):
        await run_demo("qm:1", "k", out=io.StringIO(), **kwargs)
    assert fake_client.instances == []
