"""Shared data: node-cache hit latency and the central cache's fan-out per node.

    python bench/shared_data.py                 # 2,000 hits per size, 64 readers of 16 MiB
    python bench/shared_data.py --quick         # 200 hits per size, 16 readers of 1 MiB
    python bench/shared_data.py --json out.json

1. **Hit latency**: a central cache and a node agent run in a child process (started with
   ``alpcrun central-cache`` / ``alpcrun node-agent`` semantics, in-process in that child);
   this process reads one cached level again and again (closed loop, one call at a time), for
   1 KiB and 1 MiB values: p50, p99, over loopback TCP and over a Unix socket. Two ways in:
   the node agent's read path (``NodeReadClient``, what the worker SDK uses first) and its
   gRPC service (``SharedDataClient``). For scale, the same figures for the standard gRPC
   health ``Check`` (a bare unary call to the same process, no auth) are reported too.
   Two placements: the node agent on any CPU, then (with two CPUs or more) the node agent
   pinned to one CPU with ``cpu_affinity`` and this process, the reader, on the others.
2. **Fan-out**: N concurrent readers on one node ask the node agent for the same value that
   is not cached yet; reported: central fetches, bytes the central cache sent (one copy per
   node expected) against the N copies it would send without a node cache.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from alpcrun.affinity import apply_setting, format_cpus, set_every_thread  # noqa: E402
from alpcrun.cache.client import SharedDataClient  # noqa: E402
from alpcrun.cache.read_client import NodeReadClient  # noqa: E402
from alpcrun.errors import SharedDataExists  # noqa: E402
from alpcrun.proto.channel import insecure_channel  # noqa: E402
from alpcrun.testing import running_central_cache, running_node_agent  # noqa: E402

KEY = "bench-key"
KIB, MIB = 1 << 10, 1 << 20


def _serve(conn: Any, cpu: int | None) -> None:
    if cpu is not None:  # what `alpcrun node-agent --cpu-affinity CPU` does
        apply_setting(str(cpu), env_prefix="ALPCRUNCH_NODE_")

    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            sock, read_sock = f"{tmp}/node.sock", f"{tmp}/read.sock"
            async with (
                running_central_cache(api_key=KEY) as cc,
                running_node_agent(
                    cc.address, api_key=KEY, unix_socket=sock, read_socket=read_sock
                ) as na,
            ):
                addresses = {
                    "grpc": {"tcp": na.address, "unix": f"unix:{sock}"},
                    "read": {"tcp": na.read_address, "unix": f"unix:{read_sock}"},
                }
                conn.send((cc.address, addresses))
                await asyncio.get_running_loop().run_in_executor(None, conn.recv)

    asyncio.run(main())


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _figures(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": _pct(times, 0.50),
        "p99_ms": _pct(times, 0.99),
        "mean_ms": statistics.fmean(times),
    }


async def _upload(central: str, size: int) -> str:
    """Store a ``size``-byte value (once per central cache); returns its session."""
    session = f"bench-{size}"
    async with insecure_channel(central) as cch:
        # Already stored when an earlier measurement used the same servers.
        with contextlib.suppress(SharedDataExists):
            await SharedDataClient(cch, api_key=KEY).set(session, b"v" * size)
    return session


async def _time_calls(call: Callable[[], Awaitable[object]], samples: int) -> dict[str, float]:
    """100 warm-up calls (the first read fetches from the central cache), then ``samples``
    timed ones, one at a time; their figures in milliseconds."""
    for _ in range(100):
        await call()
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1000)
    return _figures(times)


async def hit_latency(central: str, node: str, size: int, samples: int) -> dict[str, float]:
    """Closed-loop node-cache hits of one ``size``-byte value over gRPC, in milliseconds."""
    session = await _upload(central, size)
    async with insecure_channel(node) as nch:
        reader = SharedDataClient(nch, api_key=KEY, node=True)
        return await _time_calls(lambda: reader.get(session, 1), samples)


async def read_latency(central: str, address: str, size: int, samples: int) -> dict[str, float]:
    """Closed-loop node-cache hits over the node agent's read path, in milliseconds."""
    session = await _upload(central, size)
    reader = NodeReadClient(address, api_key=KEY)
    try:
        return await _time_calls(lambda: reader.get(session, 1), samples)
    finally:
        await reader.aclose()


async def health_latency(address: str, samples: int) -> dict[str, float]:
    """Closed-loop gRPC health ``Check`` calls to ``address``: the bare unary round trip."""
    request = health_pb2.HealthCheckRequest()
    async with insecure_channel(address) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        return await _time_calls(lambda: check(request), samples)


async def fan_out(readers: int, size: int) -> dict[str, Any]:
    """``readers`` concurrent first reads of one value through one node agent."""
    value = b"f" * size
    async with (
        running_central_cache(api_key=KEY) as cc,
        running_node_agent(cc.address, api_key=KEY) as na,
        insecure_channel(cc.address) as cch,
    ):
        await SharedDataClient(cch, api_key=KEY).set("fan", value)
        channels = [insecure_channel(na.address) for _ in range(min(readers, 8))]
        start = time.perf_counter()
        got = await asyncio.gather(
            *(
                SharedDataClient(channels[i % len(channels)], api_key=KEY, node=True).get("fan", 1)
                for i in range(readers)
            )
        )
        wall = time.perf_counter() - start
        for ch in channels:
            await ch.close(None)
        assert all(g.value == value for g in got)
        assert na.cache is not None
        st = na.cache.statistics()
        return {
            "readers": readers,
            "value_bytes": size,
            "central_fetches": st.central_fetches,
            "singleflight_joins": st.singleflight_joins,
            "central_bytes_sent_per_node": cc.service.bytes_sent,
            "without_node_cache_bytes": readers * size,
            "wall_s": wall,
        }


def latencies(samples: int, node_cpu: int | None = None) -> dict[str, Any]:
    """Hit and health-check latencies against a node agent in a child process.

    ``node_cpu``: pin the node agent (and its central cache) to that CPU and this process to
    the others while measuring; None: both may run anywhere.
    """
    allowed = frozenset(os.sched_getaffinity(0))
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=_serve, args=(child, node_cpu))
    proc.start()
    sizes = (("1KiB", KIB), ("1MiB", MIB))
    try:
        central, addresses = parent.recv()
        if node_cpu is not None:
            set_every_thread(allowed - {node_cpu})
        ways = (("read", read_latency), ("grpc", hit_latency))
        hits = {
            f"{way} {transport}": {
                label: asyncio.run(measure(central, address, n, samples)) for label, n in sizes
            }
            for way, measure in ways
            for transport, address in addresses[way].items()
        }
        grpc = addresses["grpc"]
        floor = {t: asyncio.run(health_latency(a, samples)) for t, a in grpc.items()}
    finally:
        if node_cpu is not None:
            set_every_thread(allowed)  # the reader's CPUs back
        parent.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    placement = "any CPU"
    if node_cpu is not None:
        placement = f"node agent on CPU {node_cpu}, reader on {format_cpus(allowed - {node_cpu})}"
    return {
        "placement": placement,
        "hit_latency": hits,
        "grpc_health_check": floor,
    }


def run(*, samples: int, readers: int, fan_bytes: int) -> dict[str, Any]:
    """Run both parts, the latencies in both placements; returns the figures."""
    result = latencies(samples)
    allowed = sorted(os.sched_getaffinity(0))
    result["pinned"] = latencies(samples, node_cpu=allowed[-1]) if len(allowed) > 1 else None
    result["fan_out"] = asyncio.run(fan_out(readers, fan_bytes))
    return result


def main() -> None:
    """Parse flags, run, print a table (and JSON when asked)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--samples", type=int, default=2000, help="timed hits per value size")
    p.add_argument("--readers", type=int, default=64, help="concurrent readers in the fan-out")
    p.add_argument("--fan-mib", type=int, default=16, help="fan-out value size in MiB")
    p.add_argument("--quick", action="store_true", help="200 hits, 16 readers of 1 MiB")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args()
    if args.quick:
        args.samples, args.readers, args.fan_mib = 200, 16, 1
    result = run(samples=args.samples, readers=args.readers, fan_bytes=args.fan_mib * MIB)
    for part in (result, result["pinned"]):
        if part is None:
            print("(one CPU: no pinned placement)")
            continue
        print(f"{part['placement']}:")
        rows = [
            (f"node-cache hit {size:>4}, {way:<9}", h)
            for way, by_size in part["hit_latency"].items()
            for size, h in by_size.items()
        ]
        floor = part["grpc_health_check"]
        rows += [(f"bare gRPC health Check, {k:<4}", h) for k, h in floor.items()]
        for label, h in rows:
            print(f"  {label}: p50 {h['p50_ms']:.3f} ms  p99 {h['p99_ms']:.3f} ms")
    f = result["fan_out"]
    print(
        f"fan-out: {f['readers']} readers x {f['value_bytes'] / MIB:.0f} MiB -> "
        f"{f['central_fetches']} central fetch(es), {f['central_bytes_sent_per_node'] / MIB:.0f} "
        f"MiB sent by the central cache to the node (without a node cache: "
        f"{f['without_node_cache_bytes'] / MIB:.0f} MiB), {f['wall_s']:.2f} s"
    )
    if args.json:
        result["machine"] = {
            "python": platform.python_version(),
            "cpus": multiprocessing.cpu_count(),
        }
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
