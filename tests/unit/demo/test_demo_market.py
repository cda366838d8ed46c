"""The demo's shared market data and reference tasks, and the worker reading them."""

import pytest

from alpcrun.demo.market import (
    decode_market,
    decode_ref_task,
    encode_market,
    encode_ref_task,
    is_ref_task,
)
from alpcrun.demo.pricing import decode_result, encode_task, make_portfolio
from alpcrun.demo.worker import MonteCarloWorker
from workers_sdk import NonRetryableError, WorkerHarness


def test_market_round_trip_drops_only_quantities():
    portfolio = make_portfolio(5, seed=3)
    back = decode_market(encode_market(portfolio))
    assert [(o.kind, o.spot, o.strike, o.vol) for o in back] == [
        (o.kind, o.spot, o.strike, o.vol) for o in portfolio
    ]


@pytest.mark.parametrize("bad", [b"", b"\x02\x00\x00\x00\x00", encode_market([])[:-1] + b"x"])
def test_bad_market_data(bad):
    with pytest.raises(ValueError, match="market data"):
        decode_market(bad)


def test_ref_tasks():
    payload = encode_ref_task(3, 100, 42)
    assert is_ref_task(payload)
    assert decode_ref_task(payload) == (3, 100, 42)
    with pytest.raises(ValueError, match="even"):
        decode_ref_task(encode_ref_task(3, 101, 42))


async def test_worker_prices_the_same_with_shared_market_data():
    portfolio = make_portfolio(3, seed=1)
    async with WorkerHarness(MonteCarloWorker(), shared_data=encode_market(portfolio)) as h:
        via_shared = decode_result(await h.run(encode_ref_task(2, 200, 9)))
        inline = decode_result(await h.run(encode_task(portfolio[2], 200, 9)))
        with pytest.raises(NonRetryableError, match="not in the market data"):
            await h.run(encode_ref_task(7, 200, 9))
    assert via_shared == inline
