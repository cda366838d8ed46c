"""Option pricing for the demo: Black-Scholes, Monte Carlo chunks and their binary wire format.

Everything here is pure (no I/O, no global state) so the worker, the client and the tests
share one implementation.

Wire formats (little-endian, fixed size, no pickle):

Task payload, :data:`TASK_SIZE` = 54 bytes, ``struct`` format ``<BB5dIQ``::

    offset  size  type     field
    0       1     uint8    format version (1)
    1       1     uint8    option kind (0 = call, 1 = put)
    2       8     float64  spot
    10      8     float64  strike
    18      8     float64  rate (continuously compounded, per year)
    26      8     float64  vol (per sqrt(year))
    34      8     float64  maturity_years
    42      4     uint32   paths (even, >= 2)
    46      8     uint64   seed

Result payload, :data:`RESULT_SIZE` = 24 bytes, ``struct`` format ``<ddQ``::

    offset  size  type     field
    0       8     float64  sum of the samples
    8       8     float64  sum of the squared samples
    16      8     uint64   number of samples (antithetic pairs: paths // 2)

The quantity of an option is not sent: workers price one unit and the client scales.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass

import numpy as np

TASK_VERSION = 1
"""Version byte at the start of every task payload."""

_TASK = struct.Struct("<BB5dIQ")
_RESULT = struct.Struct("<ddQ")

TASK_SIZE = _TASK.size
"""Size in bytes of an encoded task payload."""
RESULT_SIZE = _RESULT.size
"""Size in bytes of an encoded result payload."""

_MAX_PATHS = 2**32 - 2
_MATURITIES = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0)


class OptionKind(enum.IntEnum):
    """Call or put; the value is the kind's code in the task payload."""

    CALL = 0
    PUT = 1


@dataclass(frozen=True, slots=True)
class Option:
    """A European option position on one non-dividend-paying underlying.

    Raises:
        ValueError: A price, strike, volatility or maturity is not positive.
    """

    kind: OptionKind
    """Call or put."""
    spot: float
    """Current price of the underlying."""
    strike: float
    """Strike price."""
    rate: float
    """Continuously compounded risk-free rate, per year."""
    vol: float
    """Volatility of the underlying, per square root of a year."""
    maturity_years: float
    """Time to expiry in years."""
    quantity: float = 1.0
    """Number of options held (negative for a short position)."""

    def __post_init__(self) -> None:
        for name in ("spot", "strike", "vol", "maturity_years"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"Option.{name} must be a positive number, got {value!r}")
        if not math.isfinite(self.rate):
            raise ValueError(f"Option.rate must be finite, got {self.rate!r}")


@dataclass(frozen=True, slots=True)
class ChunkTask:
    """One unit of work: simulate ``paths`` terminal prices of one option."""

    option: Option
    """The option to price (its ``quantity`` is not transmitted and decodes as 1)."""
    paths: int
    """Number of terminal prices to simulate (even: they come in antithetic pairs)."""
    seed: int
    """Seed of the chunk's random stream (unsigned 64-bit)."""


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """The sums a worker returns for one chunk; add them up across chunks."""

    total: float
    """Sum of the samples (discounted antithetic pair averages)."""
    total_sq: float
    """Sum of the squared samples."""
    count: int
    """Number of samples."""


def _check_paths(paths: int) -> None:
    if paths < 2 or paths % 2 or paths > _MAX_PATHS:
        raise ValueError(f"paths must be an even number in [2, {_MAX_PATHS}], got {paths}")


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def black_scholes(option: Option) -> float:
    """Analytic Black-Scholes price of one unit of ``option``.

    Args:
        option: The option; its ``quantity`` is ignored.

    Returns:
        The price of a single option.
    """
    s, k, r, v, t = option.spot, option.strike, option.rate, option.vol, option.maturity_years
    sd = v * math.sqrt(t)
    d1 = (math.log(s / k) + (r + 0.5 * v * v) * t) / sd
    d2 = d1 - sd
    discount = math.exp(-r * t)
    if option.kind is OptionKind.CALL:
        return s * _norm_cdf(d1) - k * discount * _norm_cdf(d2)
    return k * discount * _norm_cdf(-d2) - s * _norm_cdf(-d1)


def mc_chunk(option: Option, paths: int, seed: int) -> tuple[float, float]:
    """Simulate ``paths`` antithetic terminal prices under geometric Brownian motion.

    Draws ``paths // 2`` standard normals ``z`` from ``numpy.random.default_rng(seed)`` and
    prices each with its mirror ``-z``. One sample is the discounted payoff averaged over
    such a pair, so the samples are independent and their variance gives an honest
    standard error.

    Args:
        option: The option; its ``quantity`` is ignored (one unit is priced).
        paths: Number of terminal prices; a positive even number.
        seed: Seed of the random stream (a non-negative integer).

    Returns:
        ``(sum, sum_sq)`` over the ``paths // 2`` samples.

    Raises:
        ValueError: ``paths`` is not a positive even number.
    """
    _check_paths(paths)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(paths // 2)
    t = option.maturity_years
    drift = (option.rate - 0.5 * option.vol * option.vol) * t
    diffusion = option.vol * math.sqrt(t) * z
    up = option.spot * np.exp(drift + diffusion)
    down = option.spot * np.exp(drift - diffusion)
    if option.kind is OptionKind.CALL:
        payoff = np.maximum(up - option.strike, 0.0) + np.maximum(down - option.strike, 0.0)
    else:
        payoff = np.maximum(option.strike - up, 0.0) + np.maximum(option.strike - down, 0.0)
    samples = payoff * (0.5 * math.exp(-option.rate * t))
    return float(samples.sum()), float(np.dot(samples, samples))


def task_seed(base_seed: int, option_index: int, chunk: int) -> int:
    """Derive an independent 64-bit seed for one chunk of one option.

    Args:
        base_seed: The run's seed.
        option_index: Position of the option in the portfolio.
        chunk: Position of the chunk within the option.

    Returns:
        A seed for :func:`mc_chunk`; distinct inputs give statistically independent streams.
    """
    state = np.random.SeedSequence([base_seed, option_index, chunk]).generate_state(2)
    return (int(state[0]) << 32) | int(state[1])


def make_portfolio(n: int, seed: int) -> list[Option]:
    """Build a deterministic portfolio of ``n`` varied options.

    Spots lie in 50-150, strikes 70-130 % of spot, volatilities 10-60 %, rates 0-5 %,
    maturities from three months to five years, quantities 1-100; calls and puts are mixed.
    Values are rounded so they print readably.

    Args:
        n: Number of options.
        seed: Seed; the same ``(n, seed)`` always gives the same portfolio.

    Returns:
        The options, in a fixed order.
    """
    rng = np.random.default_rng(seed)
    options = []
    for _ in range(n):
        spot = round(float(rng.uniform(50.0, 150.0)), 2)
        options.append(
            Option(
                kind=OptionKind.PUT if rng.random() < 0.5 else OptionKind.CALL,
                spot=spot,
                strike=round(spot * float(rng.uniform(0.7, 1.3)), 2),
                rate=round(float(rng.uniform(0.0, 0.05)), 4),
                vol=round(float(rng.uniform(0.1, 0.6)), 3),
                maturity_years=_MATURITIES[int(rng.integers(len(_MATURITIES)))],
                quantity=float(rng.integers(1, 101)),
            )
        )
    return options


def encode_task(option: Option, paths: int, seed: int) -> bytes:
    """Encode one chunk as a task payload (layout in the module docstring).

    Raises:
        ValueError: ``paths`` is not even and in range, or ``seed`` is not an unsigned
            64-bit integer.
    """
    _check_paths(paths)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an unsigned 64-bit integer, got {seed}")
    return _TASK.pack(
        TASK_VERSION,
        option.kind.value,
        option.spot,
        option.strike,
        option.rate,
        option.vol,
        option.maturity_years,
        paths,
        seed,
    )


def decode_task(payload: bytes) -> ChunkTask:
    """Decode a task payload written by :func:`encode_task`.

    Raises:
        ValueError: The payload has the wrong size, version, kind or field values.
    """
    if len(payload) != TASK_SIZE:
        raise ValueError(f"task payload must be {TASK_SIZE} bytes, got {len(payload)}")
    version, kind, spot, strike, rate, vol, maturity, paths, seed = _TASK.unpack(payload)
    if version != TASK_VERSION:
        raise ValueError(f"unsupported task payload version {version}")
    _check_paths(paths)
    option = Option(OptionKind(kind), spot, strike, rate, vol, maturity)
    return ChunkTask(option=option, paths=paths, seed=seed)


def encode_result(result: ChunkResult) -> bytes:
    """Encode a chunk result (layout in the module docstring)."""
    return _RESULT.pack(result.total, result.total_sq, result.count)


def decode_result(payload: bytes) -> ChunkResult:
    """Decode a result payload written by :func:`encode_result`.

    Raises:
        ValueError: The payload has the wrong size.
    """
    if len(payload) != RESULT_SIZE:
        raise ValueError(f"result payload must be {RESULT_SIZE} bytes, got {len(payload)}")
    total, total_sq, count = _RESULT.unpack(payload)
    return ChunkResult(total=total, total_sq=total_sq, count=count)


__all__ = [
    "RESULT_SIZE",
    "TASK_SIZE",
    "TASK_VERSION",
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
