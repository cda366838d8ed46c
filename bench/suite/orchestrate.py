"""``python -m bench``: every system of the suite alone, one after the other, then the report.

For each system: make its environment (``.bench/venvs/<name>``, Debian packages), run its
driver (``bench/suite/drivers/drive_<name>.py``) in its own session with a marker variable,
read its JSON lines, sample its CPU and memory, end whatever it left behind. Then aggregate and
write ``<date>-<host>.json``, ``latest.json``, ``latest.md`` and ``latest.png`` under ``--out``.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from bench.suite import envs, plot, procs, report
from bench.suite.common import WORKLOADS, Config
from bench.suite.systems import SYSTEMS, System

DEFAULT_OUT = envs.REPO_ROOT / "bench" / "results"
DEFAULT_TIMEOUT_S = 360.0
QUICK_SYSTEMS = ("alpcrun", "grpc")


def quick_config(cores: int) -> Config:
    """Small N and short runs: the whole alpcrun + grpc run in well under a minute."""
    return Config(
        cores=cores,
        reps=2,
        warmup=100,
        rep_seconds=0.3,
        sizes={"W1": 5_000, "W2": 200, "W4": 400, "W5": 40, "W5b": 5_000},
        min_sizes={"W1": 500, "W2": 50, "W4": 100, "W5": 10, "W5b": 500},
        w3_seconds=1.0,
        quick=True,
    )


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else platform)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict[str, Any]:
    """What the figures depend on."""
    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run_system(
    system: System, config: Config, out: Path, *, install: bool, timeout: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run one system's driver; its facts and its records."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{system.name}.log"
    log.write_bytes(b"")
    facts: dict[str, Any] = {"label": system.label, "peer": system.peer, "log": str(log)}
    if not system.driver.exists():
        facts["status"] = f"no driver ({system.driver.relative_to(envs.REPO_ROOT)})"
        return facts, []
    try:
        envs.ensure_apt(system, install=install, log=log)
        python = envs.ensure_python(system, install=install, log=log)
    except envs.EnvError as exc:
        facts["status"] = f"environment not ready: {exc}"
        return facts, []
    facts["python"] = str(python)
    run_id = uuid.uuid4().hex
    print(f"   {procs.MARKER}={run_id}", flush=True)
    run = procs.run_driver(
        system.name,
        python,
        system.driver,
        config.to_json(),
        log,
        netns=system.netns,
        timeout=timeout,
        run_id=run_id,
    )
    facts.update(
        {
            "status": "timed out"
            if run.timed_out
            else ("ok" if run.returncode == 0 else f"driver exited with {run.returncode}"),
            "returncode": run.returncode,
            "timed_out": run.timed_out,
            "netns": run.netns,
            "wall_s": round(run.wall_s, 2),
            "cpu_s": round(run.cpu_s, 2),
            "peak_rss_mb": round(run.peak_rss_mb, 1),
            "leftovers_killed": run.leftovers_killed,
            "marker": f"{procs.MARKER}={run.run_id}",
            "non_json_lines": run.non_json_lines,
        }
    )
    metas = [r for r in run.records if r.get("kind") == "meta"]
    if metas:
        facts["meta"] = {k: v for k, v in metas[0].items() if k not in ("kind", "system")}
    if run.returncode not in (0, None) and not run.timed_out:
        run.records.append(
            {
                "system": system.name,
                "kind": "error",
                "workload": "*",
                "variant": "*",
                "why": f"driver exited with {run.returncode} (see {log})",
            }
        )
    return facts, run.records


def write_report(
    out: Path,
    config: Config,
    systems: Sequence[System],
    facts: dict[str, dict[str, Any]],
    records: list[dict[str, Any]],
    machine: dict[str, Any],
) -> Path:
    """The JSON, Markdown and PNG outputs; returns the dated JSON's path."""
    rows = report.aggregate(records)
    peers = [s.name for s in systems if s.peer]
    batch = facts.get("alpcrun", {}).get("meta", {}).get("notes", {}).get("client_batch_tasks")
    ratio_list = report.ratios(rows, peers, int(batch) if isinstance(batch, int) else 1000)
    data = {
        "suite": "alpcrun side-by-side benchmark",
        "machine": machine,
        "config": asdict(config),
        "systems": facts,
        "summary": [row.to_json() for row in rows.values()],
        "ratios": ratio_list,
        "records": records,
    }
    out.mkdir(parents=True, exist_ok=True)
    dated = out / f"{time.strftime('%Y-%m-%d')}-{machine['hostname']}.json"
    text = json.dumps(data, indent=1) + "\n"
    dated.write_text(text)
    (out / "latest.json").write_text(text)
    labels = [(s.name, s.label) for s in systems]
    status = {n: f["status"] for n, f in facts.items() if f.get("status") != "ok"}
    header = (
        f"# Benchmark {machine['date']} on {machine['hostname']}\n\n"
        f"{machine['cpu_model']}, {machine['cores']} cores, {machine['memory_gb']} GB, "
        f"Linux {machine['kernel']}, Python {machine['python']}; workers = {config.cores}, "
        f"{config.reps} repetitions after a discarded warm-up"
        f"{' (quick mode: small N)' if config.quick else ''}. gRPC echo: its batch1000 is "
        f"compared with alpcrun's W1 batch (client max_batch_tasks {batch or 1000}), its "
        f"batch1 sits in the one-call column.\n\n"
    )
    table = report.markdown(rows, labels, status, config.cores, ratio_list)
    (out / "latest.md").write_text(header + table)
    plot.plot(rows, labels, out / "latest.png", f"{machine['hostname']} {machine['date']}")
    return dated


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run alpcrun, the gRPC baseline and the peers side by side, each alone "
        "with one worker process per core, and write a JSON, a Markdown table and a plot.",
        epilog="Writes <out>/<date>-<host>.json, latest.json, latest.md, latest.png and "
        "logs/<system>.log. Peers run in .bench/venvs/<name>. See bench/README.md.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small N, 2 repetitions, W3 1 s; alpcrun and grpc only unless --systems is given "
        "(well under a minute)",
    )
    parser.add_argument(
        "--systems",
        metavar="LIST",
        help=f"comma-separated subset of {','.join(SYSTEMS)} (default: all)",
    )
    parser.add_argument(
        "--reps", type=int, metavar="N", help="timed repetitions per workload (default 5; 2 quick)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        default=DEFAULT_OUT,
        help="output directory (default bench/results/)",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="never create environments or apt-get install; systems lacking them are not run",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds one system may run before it is stopped (default {DEFAULT_TIMEOUT_S:.0f})",
    )
    args = parser.parse_args(argv)
    names = args.systems.split(",") if args.systems else None
    if names is None:
        names = list(QUICK_SYSTEMS if args.quick else SYSTEMS)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown or not names:
        parser.error(f"unknown systems {unknown}; choose from {','.join(SYSTEMS)}")
    args.systems = names
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; 0 when every system ran, 1 when one failed, 130 when interrupted."""
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    cores = os.cpu_count() or 1
    config = quick_config(cores) if args.quick else Config(cores=cores, workloads=WORKLOADS)
    if args.reps is not None:
        config = replace(config, reps=args.reps)
    systems = [SYSTEMS[n] for n in SYSTEMS if n in args.systems]
    machine = machine_facts()
    print(f"bench: {', '.join(s.name for s in systems)} on {cores} cores -> {args.out}", flush=True)
    facts: dict[str, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    code = 0
    try:
        for system in systems:
            print(f"== {system.name}", flush=True)
            fact, recs = run_system(
                system, config, args.out, install=not args.no_install, timeout=args.timeout
            )
            facts[system.name] = fact
            records += recs
            results = sum(1 for r in recs if r.get("kind") == "result")
            print(
                f"   {fact['status']}: {results} results, {fact.get('wall_s', 0)} s, "
                f"{fact.get('leftovers_killed', 0)} leftovers killed",
                flush=True,
            )
            code |= fact["status"] != "ok"
    except KeyboardInterrupt:
        print("\ninterrupted; every process started was stopped", file=sys.stderr)
        code = 130
        status = "interrupted while running"
        for system in systems:
            if system.name not in facts:
                facts[system.name] = {"label": system.label, "peer": system.peer, "status": status}
                status = "not run (interrupted)"
    if code != 130 or any(r.get("kind") == "result" for r in records):
        dated = write_report(args.out, config, systems, facts, records, machine)
        print(f"wrote {dated}, latest.json, latest.md, latest.png")
        print((args.out / "latest.md").read_text())
    return code
