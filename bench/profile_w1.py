"""Where W1's time goes: CPU per task in the client, the queue manager and the workers.

Starts the same grid as ``throughput.py`` (a queue manager and N worker processes started through
the CLI), runs no-op maps from this process for ``--seconds``, and meanwhile samples every
process with py-spy (``--py-spy PATH``; it is not a dependency of the project: install it
anywhere, e.g. ``uv tool install py-spy``). It prints, per process, the CPU time per task (from
``/proc``) and the functions where the samples land, by their own time and grouped into costs
(gRPC, protobuf, asyncio, alpcrun's own code). Without py-spy it prints the CPU split only.

    .venv/bin/python bench/profile_w1.py --py-spy ~/.local/bin/py-spy --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.throughput import Grid, _client, running_grid  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
_LINE = re.compile(r":\d+\)$")

# Sample frames are grouped by the file they run in; the first match wins.
GROUPS = (
    ("gRPC core poller thread (C: HTTP/2, sockets)", ("Thread.run (threading.py",)),
    ("grpc (cygrpc, channel, server)", ("grpc/", "cygrpc", "_cython")),
    ("protobuf (build, parse, serialise)", ("google/protobuf",)),
    ("asyncio event loop", ("asyncio/",)),
    ("alpcrun queue manager", ("alpcrun/queue_manager",)),
    ("alpcrun client SDK", ("alpcrun/client",)),
    ("worker SDK", ("workers_sdk",)),
    ("alpcrun other", ("alpcrun/",)),
    ("benchmark driver", ("bench/",)),
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def drive(grid: Grid, seconds: float, batch: int) -> int:
    """Run 100,000-task maps until ``seconds`` have passed; return the tasks done."""
    done = 0
    payloads = [i.to_bytes(8, "little") for i in range(100_000)]
    async with _client(grid, batch) as client, client.session(app_id="profile") as session:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            async for result in session.map(payloads):
                if not result.ok:
                    raise AssertionError(f"task {result.index} failed")
                done += 1
    return done


def summarise(raw: Path, top: int) -> list[str]:
    """Own-time leaves and grouped costs of py-spy's collapsed stacks (``--format raw``)."""
    if not raw.exists():
        return ["  (py-spy wrote no profile: see its output above)"]
    leaves: collections.Counter[str] = collections.Counter()
    groups: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        leaf = _LINE.sub(")", stack.rsplit(";", 1)[-1])  # a function, whatever its line
        leaves[leaf] += count
        group = next(
            (name for name, keys in GROUPS if any(k in leaf for k in keys)), "other (C, builtins)"
        )
        groups[group] += count
    if not total:
        return ["  (no samples)"]
    out = [f"  {total} samples; by where the time is spent (own time):"]
    out += [f"    {n / total:6.1%}  {g}" for g, n in groups.most_common()]
    out.append(f"  top {top} functions (own time):")
    out += [f"    {n / total:6.1%}  {leaf}" for leaf, n in leaves.most_common(top)]
    return out


async def profile(grid: Grid, args: argparse.Namespace, tmp: Path) -> None:
    """Warm up, then run W1 for ``args.seconds`` under py-spy and print what it cost."""
    await drive(grid, 2.0, args.batch)  # warm-up; one event loop for every gRPC call
    pids = {name: proc.pid for name, proc in grid.procs}
    pids["client"] = os.getpid()
    spies: dict[str, tuple[asyncio.subprocess.Process, Path]] = {}
    if args.py_spy:
        for name, pid in pids.items():
            out = tmp / f"{name}.txt"
            cmd = [args.py_spy, "record", "--pid", str(pid), "--rate", "250", "--nonblocking"]
            cmd += ["--format", "raw", "--output", str(out)]
            cmd += ["--duration", str(max(1, round(args.seconds)))]
            spy = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL)
            spies[name] = (spy, out)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    start = time.monotonic()
    tasks = await drive(grid, args.seconds, args.batch)
    wall = time.monotonic() - start
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    for proc, _ in spies.values():
        await asyncio.wait_for(proc.wait(), args.seconds + 60)
    print(f"W1: {tasks:,} no-op tasks in {wall:.1f}s = {tasks / wall:,.0f} tasks/s")
    print(f"batch {args.batch}, {args.workers} workers; CPU per task by process:")
    for name in pids:
        used = after[name] - before[name]
        print(f"  {name:14s} {used / tasks * 1e6:7.2f} µs/task  ({used / wall:5.0%} of a core)")
    for name, (_, out) in spies.items():
        print(f"\n{name}:")
        print("\n".join(summarise(out, args.top)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to run (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--batch", type=int, default=1000, help="client batch size (default 1000)")
    parser.add_argument("--py-spy", metavar="PATH", help="py-spy executable (sampling profiles)")
    parser.add_argument("--top", type=int, default=12, help="functions listed per process")
    args = parser.parse_args(argv)
    with running_grid(args.workers, None) as grid, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(profile(grid, args, Path(tmp)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
