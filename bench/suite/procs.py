"""Running one driver: its own session and marker, JSON lines in, resources sampled, cleanup.

Every process a driver starts inherits the marker variable (``ALPCRUN_BENCH_RUN=<uuid>``).
After the driver exits or times out its process group is ended, then every process that
carries the marker in its environment (daemons that started their own session too) gets
SIGTERM, and SIGKILL ~3 s later.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.suite.envs import REPO_ROOT, driver_env

MARKER = "ALPCRUN_BENCH_RUN"
SAMPLE_S = 0.5
SCAN_EVERY = 6
"""Samples between two scans of every process for the marker (a scan reads /proc/*/environ)."""
GRACE_S = 3.0
NETNS_PREFIX = ("unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"')


@dataclass
class DriverRun:
    """What one driver run gave: its records and how it ran."""

    records: list[dict[str, Any]] = field(default_factory=list)
    returncode: int | None = None
    timed_out: bool = False
    interrupted: bool = False
    netns: str = "not requested"
    wall_s: float = 0.0
    cpu_s: float = 0.0
    """CPU seconds (user + system) of the driver's whole process tree, as last sampled."""
    peak_rss_mb: float = 0.0
    """Largest sum of the tree's resident memory seen in one sample."""
    leftovers_killed: int = 0
    """Processes of the run still alive after the driver exited (or was stopped)."""
    run_id: str = ""
    non_json_lines: int = 0


def marked(run_id: str, pgid: int | None = None) -> list[psutil.Process]:
    """Processes whose environment carries ``MARKER=run_id`` (or in process group ``pgid``)."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if pgid is not None and os.getpgid(proc.pid) == pgid:
                found.append(proc)
                continue
            if proc.environ().get(MARKER) == run_id:
                found.append(proc)
    return found


def reap(run_id: str, pgid: int | None) -> int:
    """End the run's process group and every process carrying its marker.

    Returns how many there were, not counting the driver itself (its pid is ``pgid``).
    """
    procs = marked(run_id, pgid)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    if pgid is not None:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=GRACE_S)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    if pgid is not None:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=GRACE_S)
    return sum(1 for proc in procs if proc.pid != pgid)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a driver still running: SIGTERM to its process group, SIGKILL after a grace time."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


_netns_ok: str | None = None


def netns_check() -> str:
    """``""`` when ``unshare --net`` works here, else why not."""
    global _netns_ok
    if _netns_ok is None:
        if shutil.which("unshare") is None or shutil.which("ip") is None:
            _netns_ok = "unshare or ip not found"
        else:
            try:
                done = subprocess.run(
                    [*NETNS_PREFIX, "true"], capture_output=True, timeout=10, check=False
                )
                err = done.stderr.decode(errors="replace").strip()
                _netns_ok = "" if done.returncode == 0 else f"unshare refused: {err[:200]}"
            except (OSError, subprocess.TimeoutExpired) as exc:
                _netns_ok = f"unshare failed: {exc}"
    return _netns_ok


class _Sampler:
    """CPU seconds and peak RSS of a process tree, plus reparented processes of the run."""

    def __init__(self, root: int, run_id: str) -> None:
        self.root = root
        self.run_id = run_id
        self.known: dict[int, psutil.Process] = {}
        self.cpu: dict[int, float] = {}
        self.peak_rss = 0
        self.count = 0

    def _members(self) -> Iterable[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.root)
            self.known.setdefault(root.pid, root)
            for child in root.children(recursive=True):
                self.known.setdefault(child.pid, child)
        if self.count % SCAN_EVERY == 0:
            for proc in marked(self.run_id):
                self.known.setdefault(proc.pid, proc)
        return list(self.known.values())

    def sample(self) -> None:
        rss = 0
        for proc in self._members():
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    self.cpu[proc.pid] = times.user + times.system
                    rss += proc.memory_info().rss
            except psutil.Error:
                self.known.pop(proc.pid, None)
        self.peak_rss = max(self.peak_rss, rss)
        self.count += 1


def _read_stdout(
    stream: Any, records: list[dict[str, Any]], log: Any, counter: list[int], system: str
) -> None:
    for raw in stream:
        line = raw.decode(errors="replace").rstrip("\n")
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and "kind" in record:
            records.append({"system": system, **record})
        else:
            counter[0] += 1
            log.write(f"[stdout] {line}\n".encode())
            log.flush()


def run_driver(
    system: str,
    python: Path,
    driver: Path,
    config_json: str,
    log_path: Path,
    *,
    netns: bool,
    timeout: float,
    run_id: str | None = None,
) -> DriverRun:
    """Run one driver to the end (or ``timeout``); everything it started is ended after.

    ``run_id`` is the marker's value (default: a new UUID).
    """
    run = DriverRun(run_id=run_id or uuid.uuid4().hex)
    cmd = [str(python), str(driver), "--config", config_json]
    if netns:
        why = netns_check()
        run.netns = "own network namespace" if not why else f"none ({why})"
        if not why:
            cmd = [*NETNS_PREFIX, *cmd]
    env = driver_env(python, MARKER, run.run_id)
    start = time.monotonic()
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        counter = [0]
        reader = threading.Thread(
            target=_read_stdout, args=(proc.stdout, run.records, log, counter, system), daemon=True
        )
        reader.start()
        sampler = _Sampler(proc.pid, run.run_id)
        try:
            while proc.poll() is None:
                sampler.sample()
                if time.monotonic() - start > timeout:
                    run.timed_out = True
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(SAMPLE_S)
        except KeyboardInterrupt:
            run.interrupted = True
            raise
        finally:
            run.wall_s = time.monotonic() - start
            _stop(proc)
            run.leftovers_killed = reap(run.run_id, proc.pid)
            reader.join(timeout=5)
            run.returncode = proc.returncode
            run.cpu_s = sum(sampler.cpu.values())
            run.peak_rss_mb = sampler.peak_rss / 1e6
            run.non_json_lines = counter[0]
    if run.timed_out:
        run.records.append(
            {"system": system, "kind": "error", "workload": "*", "variant": "*",
             "why": f"driver timed out after {timeout:.0f}s and was stopped"}
        )  # fmt: skip
    return run
