"""The shared-data benchmark runs (small sizes) so it never rots."""

import importlib.util
import os
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


async def test_read_path_latency_over_tcp_and_the_unix_socket(tmp_path):
    bench = load()
    sock = f"{tmp_path}/read.sock"
    async with (
        running_central_cache(api_key=bench.KEY) as cc,
        running_node_agent(cc.address, api_key=bench.KEY, read_socket=sock) as na,
    ):
        tcp = await bench.read_latency(cc.address, na.read_address, 1024, 20)
        unix = await bench.read_latency(cc.address, f"unix:{sock}", 1024, 20)
        assert na.read_server is not None
        assert na.read_server.service.requests == 2 * (100 + 20)  # warm-up and timed reads
    assert 0 < tcp["p50_ms"] <= tcp["p99_ms"]
    assert 0 < unix["p50_ms"] <= unix["p99_ms"]


def test_both_placements_run_and_the_reader_gets_its_cpus_back():
    bench = importlib.import_module("bench.shared_data")  # by name: the child imports it too
    before = os.sched_getaffinity(0)
    result = bench.run(samples=20, readers=2, fan_bytes=1024)
    assert os.sched_getaffinity(0) == before
    assert result["placement"] == "any CPU"
    ways = {"read tcp", "read unix", "grpc tcp", "grpc unix"}
    assert set(result["hit_latency"]) == ways
    for by_size in result["hit_latency"].values():
        assert set(by_size) == {"1KiB", "1MiB"}
        assert 0 < by_size["1KiB"]["p50_ms"] <= by_size["1KiB"]["p99_ms"]
    pinned = result["pinned"]
    if len(before) == 1:
        assert pinned is None
    else:
        node_cpu = max(before)
        assert pinned["placement"].startswith(f"node agent on CPU {node_cpu}, reader on ")
        assert set(pinned["hit_latency"]) == ways
        for by_size in pinned["hit_latency"].values():
            for figures in by_size.values():
                assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert result["fan_out"]["central_fetches"] == 1
