"""The shared-data benchmark runs (small sizes) so it never rots."""

import importlib.util
from pathlib import Path

from alpcrun.testing import running_central_cache, running_node_agent

BENCH = Path(__file__).resolve().parents[1] / "bench" / "shared_data.py"


def load():
    spec = importlib.util.spec_from_file_location("bench_shared_data", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_fan_out_sends_one_copy_per_node():
    result = await load().fan_out(8, 256 * 1024)
    assert result["central_fetches"] == 1
    assert result["central_bytes_sent_per_node"] == 256 * 1024
    assert result["without_node_cache_bytes"] == 8 * 256 * 1024


async def test_hit_latency_reports_percentiles():
    bench = load()
    async with (
        running_central_cache(api_key=bench.KEY) as cc,
        running_node_agent(cc.address, api_key=bench.KEY) as na,
    ):
        figures = await bench.hit_latency(cc.address, na.address, 1024, 20)
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]


async def test_hit_latency_over_the_unix_socket_and_the_grpc_floor(tmp_path):
    bench = load()
    sock = f"unix:{tmp_path}/node.sock"
    async with (
        running_central_cache(api_key=bench.KEY) as cc,
        running_node_agent(cc.address, api_key=bench.KEY, unix_socket=sock[5:]),
    ):
        hits = await bench.hit_latency(cc.address, sock, 1024, 20)
        floor = await bench.health_latency(sock, 20)
    assert 0 < hits["p50_ms"] <= hits["p99_ms"]
    assert 0 < floor["p50_ms"] <= floor["p99_ms"]
