"""``alpcrun scaler`` as a real process: scales a Deployment in the kmock Kubernetes API emulator
to the workers a live queue manager wants, and exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import free_port
from tests.integration.test_autoscaling_metrics import _deployment, emulator, queued_work

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.status, reply.read().decode()


def kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig pointing at the emulator."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": server}}],
                "users": [{"name": "test", "user": {"token": "t"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
                "current-context": "kmock",
            }
        )
    )
    return path


async def test_scaler_process_scales_up_and_stops_on_sigterm(tmp_path: Path):
    """Queued work → the scaler process sets the Deployment's scale; SIGTERM → exit 0."""
    async with emulator() as (k8s, api), queued_work() as (qm, _session):
        await asyncio.to_thread(api.create_namespaced_deployment, "grid", _deployment("w", 1))
        cmd = [sys.executable, "-m", "alpcrun.cli.main", "scaler", "--deployment", "w"]
        cmd += ["--namespace", "grid", "--max-replicas", "5", "--interval", "100ms"]
        cmd += ["--metrics-url", f"http://127.0.0.1:{qm.metrics_port}/metrics"]
        cmd += ["--kubeconfig", str(kubeconfig(tmp_path / "kubeconfig", str(k8s.url)))]
        status_port = free_port()
        cmd += ["--host", "127.0.0.1", "--metrics-port", str(status_port)]
        log = (tmp_path / "scaler.log").open("wb")
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=log, stderr=log)
        try:
            for _ in range(300):
                dep = await asyncio.to_thread(api.read_namespaced_deployment, "w", "grid")
                if dep.spec.replicas != 1:
                    break
                await asyncio.sleep(0.05)
            assert dep.spec.replicas == 5, (tmp_path / "scaler.log").read_text()
            base = f"http://127.0.0.1:{status_port}"
            assert await asyncio.to_thread(_get, base + "/healthz") == (200, "ok\n")
            assert await asyncio.to_thread(_get, base + "/readyz") == (200, "ok\n")
            code, metrics = await asyncio.to_thread(_get, base + "/metrics")
            assert code == 200
            assert "alpcrun_scaler_replicas 5.0" in metrics
            assert 'alpcrun_scaler_scalings_total{direction="up"} 1.0' in metrics
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            log.close()
        assert (
            "scaled 1 -> 5 replicas (scale_up; demand 6, desired 5)"
            in (tmp_path / "scaler.log").read_text()
        )
