"""The scheduler benchmark runs (small sizes) so it never rots."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "scheduler.py"


def test_scheduler_bench_runs_and_binds_every_worker():
    spec = importlib.util.spec_from_file_location("bench_scheduler", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.run(sessions=300, workers=40, ticks=5, churn=3, seed=2)
    assert result["bound_workers_at_end"] == 40
    assert result["binds"] >= 40
    assert result["plan"]["p50_ms"] > 0
