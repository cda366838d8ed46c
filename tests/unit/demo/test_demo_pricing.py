"""Tests of alpcrun.demo.pricing: prices, Monte Carlo chunks, portfolios and wire formats."""

from __future__ import annotations

import dataclasses
import math
import struct

import pytest

from alpcrun.demo.pricing import (
    RESULT_SIZE,
    TASK_SIZE,
    ChunkResult,
    ChunkTask,
    Option,
    OptionKind,
    black_scholes,
    decode_result,
    decode_task,
    encode_result,
    encode_task,
    make_portfolio,
    mc_chunk,
    task_seed,
)

CALL = Option(OptionKind.CALL, spot=100.0, strike=105.0, rate=0.03, vol=0.25, maturity_years=1.5)


def _mean_stderr(total: float, total_sq: float, n: int) -> tuple[float, float]:
    mean = total / n
    variance = (total_sq - n * mean * mean) / (n - 1)
    return mean, math.sqrt(variance / n)


def test_black_scholes_matches_a_textbook_value() -> None:
    """S=100, K=100, r=5%, vol=20%, T=1: the call is worth 10.4506 (Hull's classic example)."""
    option = Option(OptionKind.CALL, spot=100.0, strike=100.0, rate=0.05, vol=0.2, maturity_years=1)
    assert black_scholes(option) == pytest.approx(10.450584, abs=1e-5)


@pytest.mark.parametrize("option", make_portfolio(25, seed=3))
def test_black_scholes_satisfies_put_call_parity(option: Option) -> None:
    """C - P = S - K e^{-rT} for every option of a varied portfolio."""
    call = dataclasses.replace(option, kind=OptionKind.CALL)
    put = dataclasses.replace(option, kind=OptionKind.PUT)
    forward = option.spot - option.strike * math.exp(-option.rate * option.maturity_years)
    assert black_scholes(call) - black_scholes(put) == pytest.approx(forward, abs=1e-9)


@pytest.mark.parametrize("kind", list(OptionKind))
def test_mc_chunk_converges_to_black_scholes(kind: OptionKind) -> None:
    """200k antithetic paths land within 4 standard errors of the analytic price."""
    option = Option(kind, CALL.spot, CALL.strike, CALL.rate, CALL.vol, CALL.maturity_years)
    total, total_sq = mc_chunk(option, 200_000, seed=11)
    mean, stderr = _mean_stderr(total, total_sq, 100_000)
    assert 0 < stderr < 0.05
    assert abs(mean - black_scholes(option)) < 4 * stderr


def test_mc_chunk_is_reproducible_and_seed_dependent() -> None:
    """The same seed gives the same sums; another seed gives other sums."""
    assert mc_chunk(CALL, 2000, 5) == mc_chunk(CALL, 2000, 5)
    assert mc_chunk(CALL, 2000, 5) != mc_chunk(CALL, 2000, 6)


@pytest.mark.parametrize("paths", [0, 1, 3, -2])
def test_mc_chunk_rejects_odd_or_non_positive_paths(paths: int) -> None:
    """Antithetic pairs need a positive even number of paths."""
    with pytest.raises(ValueError, match="paths"):
        mc_chunk(CALL, paths, 1)


def test_option_rejects_non_positive_inputs() -> None:
    """A zero volatility or a negative spot is refused at construction."""
    with pytest.raises(ValueError, match="vol"):
        Option(OptionKind.CALL, spot=100, strike=100, rate=0.0, vol=0.0, maturity_years=1)
    with pytest.raises(ValueError, match="spot"):
        Option(OptionKind.PUT, spot=-1, strike=100, rate=0.0, vol=0.2, maturity_years=1)


def test_make_portfolio_is_deterministic_and_varied() -> None:
    """The same (n, seed) gives the same options; they mix kinds, strikes and maturities."""
    portfolio = make_portfolio(200, seed=7)
    assert portfolio == make_portfolio(200, seed=7)
    assert portfolio != make_portfolio(200, seed=8)
    assert make_portfolio(10, seed=7) == portfolio[:10]
    assert {o.kind for o in portfolio} == set(OptionKind)
    assert len({o.maturity_years for o in portfolio}) >= 4
    assert len({o.strike for o in portfolio}) > 150
    assert all(0.7 * o.spot - 0.01 <= o.strike <= 1.3 * o.spot + 0.01 for o in portfolio)
    assert all(o.quantity >= 1 for o in portfolio)


def test_task_seed_differs_per_chunk_and_fits_64_bits() -> None:
    """Seeds are distinct across options and chunks and are unsigned 64-bit integers."""
    seeds = {task_seed(7, i, j) for i in range(50) for j in range(50)}
    assert len(seeds) == 2500
    assert all(0 <= s < 2**64 for s in seeds)
    assert task_seed(7, 1, 2) == task_seed(7, 1, 2)


def test_task_payload_round_trips() -> None:
    """encode_task/decode_task preserve every priced field, paths and seed; quantity is not sent."""
    option = Option(OptionKind.PUT, 87.5, 90.25, 0.0125, 0.375, 2.0, quantity=40)
    payload = encode_task(option, 2000, 2**64 - 1)
    assert len(payload) == TASK_SIZE == 54
    task = decode_task(payload)
    assert task == ChunkTask(
        option=Option(OptionKind.PUT, 87.5, 90.25, 0.0125, 0.375, 2.0), paths=2000, seed=2**64 - 1
    )


def test_task_payload_layout_is_documented_little_endian() -> None:
    """The first byte is the version, the second the kind, then five float64s."""
    payload = encode_task(CALL, 4, 9)
    assert payload[0] == 1
    assert payload[1] == OptionKind.CALL
    assert struct.unpack_from("<d", payload, 2)[0] == CALL.spot
    assert struct.unpack_from("<IQ", payload, 42) == (4, 9)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"x" * 53,
        b"\x02" + encode_task(CALL, 4, 1)[1:],  # unknown version
        encode_task(CALL, 4, 1)[:1] + b"\x07" + encode_task(CALL, 4, 1)[2:],  # unknown kind
        encode_task(CALL, 4, 1)[:2] + struct.pack("<d", -1.0) + encode_task(CALL, 4, 1)[10:],
        encode_task(CALL, 4, 1)[:42] + struct.pack("<I", 3) + encode_task(CALL, 4, 1)[46:],
    ],
)
def test_decode_task_rejects_malformed_payloads(payload: bytes) -> None:
    """Wrong size, version, kind, a negative spot or odd paths raise ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - the message differs per case
        decode_task(payload)


def test_encode_task_rejects_out_of_range_seed() -> None:
    """A seed that does not fit an unsigned 64-bit integer is refused."""
    with pytest.raises(ValueError, match="seed"):
        encode_task(CALL, 2, 2**64)


def test_result_payload_round_trips() -> None:
    """encode_result/decode_result preserve the sums and the count exactly."""
    result = ChunkResult(total=1234.5678, total_sq=98765.4321, count=1000)
    payload = encode_result(result)
    assert len(payload) == RESULT_SIZE == 24
    assert decode_result(payload) == result
    with pytest.raises(ValueError, match="24 bytes"):
        decode_result(payload[:-1])
