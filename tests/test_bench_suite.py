"""The benchmark suite: ``python -m bench --quick`` end to end, and its report code."""

from __future__ import annotations

import contextlib
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

psutil = pytest.importorskip("psutil")
pytest.importorskip("matplotlib")

from bench.suite import plot, report  # noqa: E402 - after the optional-dependency checks
from bench.suite.common import WORKLOADS  # noqa: E402
from bench.suite.procs import MARKER  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _carrying(markers: list[str]) -> list[int]:
    """Pids of processes whose environment holds one of ``NAME=value`` markers."""
    wanted = [m.split("=", 1) for m in markers]
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            env = proc.environ()
            if any(env.get(name) == value for name, value in wanted):
                found.append(proc.pid)
    return found


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_quick_run_end_to_end(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    logs = "".join(f"\n--- {f.name}\n{f.read_text()[-3000:]}" for f in tmp_path.glob("logs/*"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + logs
    data = json.loads((tmp_path / "latest.json").read_text())
    dated = list(tmp_path.glob("20*-*.json"))
    assert len(dated) == 1
    assert json.loads(dated[0].read_text()) == data

    machine = data["machine"]
    for key in ("cpu_model", "cores", "memory_gb", "kernel", "python", "date", "hostname"):
        assert machine[key], key
    assert data["config"]["quick"] is True

    results = [r for r in data["records"] if r["kind"] == "result"]
    alpcrun = [r for r in results if r["system"] == "alpcrun"]
    for workload in WORKLOADS:
        mine = [r for r in alpcrun if r["workload"] == workload]
        assert mine, f"no alpcrun {workload} result"
        assert all(r["failures"] == 0 for r in mine), workload
        assert all(r["tasks_per_s"] > 0 for r in mine), workload
    variants = {(r["workload"], r["variant"]) for r in alpcrun}
    assert {
        ("W1", "batch"),
        ("W1", "per_call"),
        ("W1", "inline_1k"),
        ("W5", "payload_store"),
        ("W5b", "shared"),
    } <= variants
    assert all(r["latency_ms"]["p50"] > 0 for r in alpcrun if r["workload"] in ("W2", "W3"))
    assert not [r for r in data["records"] if r["kind"] == "skip" and r["system"] == "alpcrun"]

    grpc = {r["variant"] for r in results if r["system"] == "grpc" and r["workload"] == "W1"}
    assert grpc == {"batch1", "batch100", "batch1000"}
    assert any(r["system"] == "grpc" and r["workload"] == "W2" for r in results)
    assert not [r for r in data["records"] if r["kind"] == "error"]

    for name in ("alpcrun", "grpc"):
        facts = data["systems"][name]
        assert facts["status"] == "ok"
        assert facts["cpu_s"] > 0
        assert facts["peak_rss_mb"] > 0
    assert any(r["ratio"] for r in data["ratios"] if "gRPC" in r["what"])

    table = (tmp_path / "latest.md").read_text()
    assert "| System | W1 batch tasks/s" in table
    assert "| alpcrun |" in table
    assert "grpc.aio echo" in table
    assert (tmp_path / "latest.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "logs" / "alpcrun.log").exists()

    markers = [data["systems"][name]["marker"] for name in ("alpcrun", "grpc")]
    assert _carrying(markers) == []


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_sigterm_mid_run_leaves_no_process(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--systems", "alpcrun", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        marker = ""
        for line in proc.stdout:
            if f"{MARKER}=" in line:
                marker = line.strip()
                break
        assert marker, "the orchestrator did not announce the run's marker"
        deadline = time.monotonic() + 60
        while not _carrying([marker]) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # the grid is starting or running
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, rest
    assert "interrupted" in rest
    assert _carrying([marker]) == []


# -- report code on hand-made records ----------------------------------------------------------


def _result(system: str, workload: str, variant: str, rate: Any, **extra: Any) -> dict[str, Any]:
    return {
        "system": system,
        "kind": "result",
        "workload": workload,
        "variant": variant,
        "tasks_per_s": rate,
        "failures": extra.pop("failures", 0),
        **extra,
    }


RECORDS: list[dict[str, Any]] = [
    _result("alpcrun", "W1", "batch", 100.0),
    _result("alpcrun", "W1", "batch", 300.0),
    _result("alpcrun", "W1", "batch", 200.0, failures=2),
    _result("alpcrun", "W1", "per_call", float("nan")),
    _result("alpcrun", "W1", "per_call", None),
    _result("alpcrun", "W1", "per_call", True),
    _result("alpcrun", "W1", "inline_1k", 50.0),
    _result("alpcrun", "W2", "closed_loop", 1000.0, latency_ms={"p50": 1.0, "p99": 9.0}),
    _result("alpcrun", "W2", "closed_loop", 800.0, latency_ms={"p50": 3.0, "p99": math.inf}),
    _result("alpcrun", "W5b", "shared", 25.0),
    _result("alpcrun", "W4", "map", 1000.0),
    {
        "system": "alpcrun",
        "kind": "skip",
        "workload": "W5",
        "variant": "payload_store",
        "why": "payload store not built yet",
    },
    _result("grpc", "W1", "batch1000", 1000.0),
    _result("grpc", "W1", "batch1", 10.0),
    _result("ray", "W1", "batch", 400.0),
    _result("ray", "W1", "per_call", 150.0),
    _result("ray", "W2", "closed_loop", 500.0, latency_ms={"p50": 4.0, "p99": 6.0}),
    {
        "system": "dask",
        "kind": "error",
        "workload": "W1",
        "variant": "batch",
        "why": "boom | with a pipe\nand a newline",
    },
    {"system": "ray", "kind": "meta", "versions": {}},
    {"kind": "result"},
    {
        "system": "celery",
        "kind": "result",
        "workload": "W3",
        "variant": "window",
        "tasks_per_s": "fast",
        "failures": "many",
        "latency_ms": "n/a",
    },
]
SYSTEMS = [
    ("alpcrun", "alpcrun"),
    ("grpc", "grpc echo"),
    ("ray", "Ray"),
    ("dask", "Dask"),
    ("celery", "Celery"),
    ("arq", "arq"),
]


def test_aggregate_median_min_max_and_bad_values() -> None:
    rows = report.aggregate(RECORDS)
    batch = rows[("alpcrun", "W1", "batch")]
    assert batch.rate() == (200.0, 100.0, 300.0)
    assert batch.failures == 2
    assert rows[("alpcrun", "W1", "per_call")].rate() is None  # nan, None and bools dropped
    w2 = rows[("alpcrun", "W2", "closed_loop")]
    assert report.median(w2.p50s) == 2.0
    assert report.median(w2.p99s) == 9.0  # inf dropped
    assert rows[("alpcrun", "W5", "payload_store")].skips == ["payload store not built yet"]
    assert rows[("dask", "W1", "batch")].errors
    celery = rows[("celery", "W3", "window")]
    assert not celery.ok
    assert celery.failures == 0
    assert ("ray", "?", "-") not in rows  # meta records are not rows
    assert ("?", "?", "-") in rows  # an empty result is kept, not fatal
    json.dumps([row.to_json() for row in rows.values()], allow_nan=False)


def test_pick_prefers_the_natural_variant_and_falls_back() -> None:
    rows = report.aggregate(RECORDS)
    assert report.pick(rows, "grpc", "W1", "batch").variant == "batch1000"  # type: ignore[union-attr]
    assert report.pick(rows, "grpc", "W1", "per_call").variant == "batch1"  # type: ignore[union-attr]
    # alpcrun's per_call has no usable figure: the cell shows no other variant instead.
    per_call = report.pick(rows, "alpcrun", "W1", "per_call")
    assert per_call is not None
    assert per_call.variant == "per_call"
    assert not per_call.ok
    assert report.pick(rows, "arq", "W1", "batch") is None
    assert report.pick(rows, "alpcrun", "W5").variant == "payload_store"  # type: ignore[union-attr]


def test_ratios() -> None:
    rows = report.aggregate(RECORDS)
    got = {r["what"]: r for r in report.ratios(rows, ["ray", "dask", "celery", "arq"])}
    grpc = next(r for w, r in got.items() if "gRPC" in w)
    assert grpc["ratio"] == pytest.approx(0.2)
    peer = next(r for w, r in got.items() if "best peer" in w)
    assert peer["ratio"] == pytest.approx(0.5)
    assert peer["b"] == "ray W1/batch"
    w2 = next(r for w, r in got.items() if w.startswith("W2 p50: ray"))
    assert w2["ratio"] == pytest.approx(2.0)
    shared = next(r for w, r in got.items() if "W5b" in w)
    assert shared["ratio"] == pytest.approx(0.5)
    empty = report.ratios({}, [])
    assert empty
    assert all(r["ratio"] is None for r in empty)


def test_markdown_table_cells_and_footnotes() -> None:
    rows = report.aggregate(RECORDS)
    ratio_list = report.ratios(rows, ["ray", "dask", "celery", "arq"])
    text = report.markdown(rows, SYSTEMS, {"arq": "environment not ready: no uv"}, 2, ratio_list)
    lines = text.splitlines()
    header = lines[0]
    assert header.startswith("| System | W1 batch tasks/s | W1 one call/task")
    width = header.count("|")
    table = lines[: len(SYSTEMS) + 2]
    assert all(line.count("|") == width for line in table), table
    alpcrun = next(line for line in lines if line.startswith("| alpcrun |"))
    assert "200 (100\u2013300)" in alpcrun
    assert "0.50 (0.50\u20130.50)" in alpcrun  # W4: 1,000/s of an ideal 2,000/s
    assert "2.00 / 9.00" in alpcrun
    dask = next(line for line in lines if line.startswith("| Dask |"))
    assert "error[^" in dask
    arq = next(line for line in lines if line.startswith("| arq |"))
    assert "—[^" in arq
    assert any("environment not ready: no uv" in line for line in lines if line.startswith("[^"))
    assert any("payload store not built yet" in line for line in lines if line.startswith("[^"))
    assert "\nand a newline" not in text  # reasons are flattened to one line
    assert "### Ratios" in text


def test_plot_writes_a_png(tmp_path: Path) -> None:
    rows = report.aggregate(RECORDS)
    path = tmp_path / "plot.png"
    plot.plot(rows, SYSTEMS, path, "test")
    assert path.read_bytes()[:8] == PNG_MAGIC
    empty = tmp_path / "empty.png"
    plot.plot({}, SYSTEMS, empty, "nothing")
    assert empty.read_bytes()[:8] == PNG_MAGIC
