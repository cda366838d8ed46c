"""Time per scheduler tick with many sessions and workers (the pure policy plus the core).

    python bench/scheduler.py                      # 10,000 sessions, 1,000 workers, 200 ticks
    python bench/scheduler.py --quick              # 1,000 sessions, 100 workers, 20 ticks
    python bench/scheduler.py --json out.json

The grid is built in one process with a fake clock and recording outlets (no sockets): the
figure is the cost of the policy and of carrying out its decisions, which is what the tick
loop of the queue manager spends on one core. See bench/README.md for the scenario.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from alpcrun.proto import Batch, SessionAttributes, WorkerRegistration  # noqa: E402
from alpcrun.queue_manager.core import QueueCore  # noqa: E402
from alpcrun.queue_manager.records import SessionRecord, WorkerPhase  # noqa: E402
from alpcrun.queue_manager.scheduler import Scheduler  # noqa: E402
from alpcrun.testing import FakeClock  # noqa: E402


class _Sink:
    """Stands in for a gRPC stream: swallows what the core sends."""

    def send(self, message: object) -> None:
        pass

    def close(self) -> None:
        pass


class Grid:
    """A core with many sessions of mixed attributes and many workers with mixed labels."""

    def __init__(self, sessions: int, workers: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = FakeClock()
        self.core = QueueCore(clock=self.clock, scheduler=Scheduler(min_bind_seconds=1.0))
        self.n = 0
        for _ in range(sessions):
            self.add_session()
        for _ in range(workers):
            self.add_worker()

    def add_session(self, top: int = 7) -> SessionRecord:
        rng = self.rng
        attrs = SessionAttributes(
            app_id="bench",
            priority=rng.randint(0, top),
            preemptible=rng.random() < 0.3,
            min_workers=1 if rng.random() < 0.05 else 0,
            max_workers=rng.choice((0, 0, 0, 4, 16)),
        )
        if rng.random() < 0.05:
            attrs.worker_selector["gpu"] = "true"
        s = self.core.create_session(attrs)
        for _ in range(rng.randint(1, 20)):
            self.n += 1
            b = Batch(id=f"b{self.n}")
            b.tasks.add(id=f"t{self.n}", payload=b"x")
            self.core.submit(s, b)
        return s

    def add_worker(self) -> None:
        labels = {"gpu": "true"} if self.rng.random() < 0.1 else {}
        self.core.register_worker(WorkerRegistration(node="n", pod="p", labels=labels), _Sink())

    def churn(self, k: int) -> None:
        """k sessions finish (closed), k new ones arrive, k workers are replaced."""
        open_ids = [sid for sid, s in self.core.sessions.items() if not s.closed]
        for sid in self.rng.sample(open_ids, min(k, len(open_ids))):
            self.core.close_session(sid)
        for _ in range(k):
            self.add_session(top=10)  # urgent work arrives: it may preempt
        for wid in self.rng.sample(list(self.core.workers), min(k, len(self.core.workers))):
            self.core.worker_lost(wid)
            self.add_worker()


def _ms(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50_ms": statistics.median(samples) * 1e3,
        "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e3,
        "max_ms": samples[-1] * 1e3,
    }


def run(sessions: int, workers: int, ticks: int, churn: int, seed: int) -> dict[str, Any]:
    """Build the grid, time the first (cold) plan, then ``ticks`` ticks with churn."""
    grid = Grid(sessions, workers, seed)
    core = grid.core
    gc.collect()
    t0 = time.perf_counter()
    core.schedule()
    cold = time.perf_counter() - t0
    plans: list[float] = []
    full: list[float] = []
    for _ in range(ticks):
        grid.clock.advance(1.0)
        grid.churn(churn)
        for wid in list(core.workers):
            core.heartbeat(wid)
        t0 = time.perf_counter()
        now = grid.clock.monotonic()
        actions = core.scheduler.plan(core.sessions.values(), core.workers.values(), now)
        plans.append(time.perf_counter() - t0)
        del actions
        t0 = time.perf_counter()
        core.tick()  # lost workers, expiry, then plan + carry out (the queue manager's tick)
        full.append(time.perf_counter() - t0)
    bound = sum(1 for w in core.workers.values() if w.phase is WorkerPhase.BOUND)
    return {
        "sessions": sessions,
        "workers": workers,
        "ticks": ticks,
        "churn_per_tick": churn,
        "cold_plan_ms": cold * 1e3,
        "plan": _ms(plans),
        "tick": _ms(full),
        "bound_workers_at_end": bound,
        "preemptions": core.unbinds_by_reason.get("preempted", 0),
        "binds": core.binds,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run, print a summary (and JSON when asked)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1_000)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--churn", type=int, default=20, help="sessions/workers replaced per tick")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1,000 sessions, 100 workers")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="disable the cyclic garbage collector while timing (shows what its pauses cost)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sessions, args.workers, args.ticks, args.churn = 1_000, 100, 20, 5
    if args.no_gc:
        gc.disable()
    result = run(args.sessions, args.workers, args.ticks, args.churn, args.seed)
    result["gc"] = not args.no_gc
    result["python"] = platform.python_version()
    result["machine"] = platform.machine()
    print(
        f"{result['sessions']:,} sessions, {result['workers']:,} workers, "
        f"{result['ticks']} ticks with {result['churn_per_tick']} sessions and workers "
        "replaced per tick"
    )
    print(f"  cold plan (every worker idle): {result['cold_plan_ms']:.1f} ms")
    for name in ("plan", "tick"):
        r = result[name]
        print(
            f"  {name:5s} p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
            f"max {r['max_ms']:.2f} ms"
        )
    print(
        f"  {result['binds']:,} binds, {result['preemptions']:,} preemptions, "
        f"{result['bound_workers_at_end']:,} workers bound at the end"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
