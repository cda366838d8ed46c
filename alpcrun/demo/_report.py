"""Sans-I/O parts of the demo client: per-option aggregation and the text progress display."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from alpcrun.demo.pricing import Option, black_scholes, decode_result

_BAR_WIDTH = 30


@dataclass(frozen=True, slots=True)
class OptionEstimate:
    """The Monte Carlo estimate of one option's unit price next to its analytic price."""

    mc: float
    """Monte Carlo mean of the unit price (NaN when no chunk of the option came back)."""
    stderr: float
    """Standard error of ``mc`` (NaN with fewer than two samples)."""
    analytic: float
    """Black-Scholes unit price."""
    samples: int
    """Number of independent samples behind ``mc``."""

    @property
    def error_in_stderrs(self) -> float:
        """``|mc - analytic| / stderr`` (0 when both agree exactly, inf for a zero stderr)."""
        diff = abs(self.mc - self.analytic)
        if diff == 0.0:
            return 0.0
        return diff / self.stderr if self.stderr > 0 else math.inf


class PortfolioAggregator:
    """Adds up chunk results per option as they arrive, in any order.

    Task ``index`` maps to option ``index // chunks_per_option``.

    Args:
        portfolio: The options, in task order.
        chunks_per_option: Number of consecutive tasks per option.
    """

    def __init__(self, portfolio: Sequence[Option], chunks_per_option: int) -> None:
        if chunks_per_option < 1:
            raise ValueError("chunks_per_option must be at least 1")
        self._portfolio = list(portfolio)
        self._chunks = chunks_per_option
        n = len(self._portfolio)
        self._total = [0.0] * n
        self._total_sq = [0.0] * n
        self._count = [0] * n

    def add(self, index: int, payload: bytes) -> None:
        """Add the result payload of task ``index``.

        Raises:
            ValueError: The payload is malformed.
            IndexError: ``index`` lies outside the portfolio's tasks.
        """
        option = index // self._chunks
        if not 0 <= option < len(self._portfolio):
            raise IndexError(f"task index {index} is outside the portfolio")
        result = decode_result(payload)
        self._total[option] += result.total
        self._total_sq[option] += result.total_sq
        self._count[option] += result.count

    def estimates(self) -> list[OptionEstimate]:
        """Return the current estimate of every option, in portfolio order."""
        out = []
        for option, total, total_sq, n in zip(
            self._portfolio, self._total, self._total_sq, self._count, strict=True
        ):
            mean = total / n if n else math.nan
            if n > 1:
                variance = max(total_sq - n * mean * mean, 0.0) / (n - 1)
                stderr = math.sqrt(variance / n)
            else:
                stderr = math.nan
            out.append(OptionEstimate(mean, stderr, black_scholes(option), n))
        return out

    def portfolio_value(self) -> tuple[float, float, float]:
        """Return ``(mc, stderr, analytic)`` of the whole position (quantities applied).

        Options are priced from independent random streams, so their variances add.
        """
        mc = variance = analytic = 0.0
        for option, est in zip(self._portfolio, self.estimates(), strict=True):
            mc += option.quantity * est.mc
            variance += (option.quantity * est.stderr) ** 2
            analytic += option.quantity * est.analytic
        return mc, math.sqrt(variance), analytic


class ProgressDisplay:
    """Renders task progress on a text stream.

    On a terminal it redraws one line in place (carriage return); elsewhere (a log file, a
    pipe) it prints a plain line each time another tenth of the tasks is done.

    Args:
        out: Where to write.
        total: Number of tasks of the run.
        clock: Seconds, monotonic; injectable for tests.
    """

    def __init__(
        self, out: TextIO, total: int, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._out = out
        self._total = max(total, 1)
        self._clock = clock
        self._start = clock()
        self._tty = out.isatty()
        self._decile = 0
        self._drawn = False

    def update(self, done: int, failed: int) -> None:
        """Show that ``done`` tasks have finished, ``failed`` of them in error."""
        elapsed = self._clock() - self._start
        rate = done / elapsed if elapsed > 0 else 0.0
        fraction = min(done / self._total, 1.0)
        if self._tty:
            filled = int(fraction * _BAR_WIDTH)
            bar = "#" * filled + "." * (_BAR_WIDTH - filled)
            self._out.write(
                f"\r[{bar}] {fraction:4.0%} {done}/{self._total} tasks "
                f"{rate:,.0f}/s failed {failed}  "
            )
            self._out.flush()
            self._drawn = True
            return
        decile = int(fraction * 10)
        if decile > self._decile:
            self._decile = decile
            self._out.write(
                f"{fraction:4.0%} {done}/{self._total} tasks, {rate:,.0f}/s, failed {failed}\n"
            )
            self._out.flush()

    def close(self) -> None:
        """End the in-place line so later output starts on a fresh one."""
        if self._drawn:
            self._out.write("\n")
            self._out.flush()
            self._drawn = False


__all__ = ["OptionEstimate", "PortfolioAggregator", "ProgressDisplay"]
