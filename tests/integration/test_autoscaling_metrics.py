"""The chart's autoscalers and the scaler read metrics a live queue manager really exports,
under the same names and labels, and the scaler scales a Deployment through the Kubernetes API
(the kmock emulator) to the workers the queue manager wants."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from kmock._internal.apps import Server
from prometheus_client.parser import text_string_to_metric_families

from alpcrun.client import AsyncClient
from alpcrun.config import ClientSettings
from alpcrun.queue_manager import QueueManager
from alpcrun.scaler.demand import MetricsDemand
from alpcrun.scaler.kube import DeploymentScale, apps_api
from alpcrun.scaler.policy import Reason, ScaleDecider, ScalePolicy
from alpcrun.scaler.runner import ScalerRunner
from alpcrun.scaler.status import ScalerStatus
from alpcrun.testing import FakeClock, running_queue_manager
from tests.k8s.chart import COMBINATIONS, ROOT, find, render

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
KEY = "scale-key"
# Labels Prometheus itself puts on every scraped series (target labels), not the exporter.
TARGET_LABELS = {"namespace", "service", "pod", "job", "instance", "endpoint", "container"}


def _get(qm: QueueManager) -> str:
    url = f"http://127.0.0.1:{qm.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


async def scrape(qm: QueueManager) -> dict[str, list[dict[str, str]]]:
    """Metric name → label sets of its samples, from the queue manager's /metrics (read on
    another thread: the endpoint answers on this event loop)."""
    text = await asyncio.to_thread(_get, qm)
    out: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(dict(sample.labels))
    return out


@asynccontextmanager
async def queued_work(tasks: int = 40) -> AsyncIterator[tuple[QueueManager, Any]]:
    """A queue manager with metrics and a session of queued tasks (no worker to take them)."""
    async with running_queue_manager(api_key=KEY, host="127.0.0.1", metrics_port=0) as qm:
        settings = ClientSettings(max_batch_tasks=5)  # 8 batches: 6 workers wanted (max_workers)
        async with AsyncClient(qm.address, api_key=KEY, settings=settings) as client:
            async with client.session(app_id="pricing", max_workers=6) as session:
                for i in range(tasks):
                    await session.submit(str(i).encode())
                await session.flush()
                for _ in range(250):  # every batch queued (they arrive one by one)
                    if await _value(qm, "alpcrun_queue_depth") == tasks:
                        break
                    await asyncio.sleep(0.02)
                yield qm, session


async def _value(qm: QueueManager, metric: str) -> float:
    text = await asyncio.to_thread(_get, qm)
    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == metric
    )


def referenced_metrics(docs: list[dict[str, Any]]) -> list[tuple[str, set[str]]]:
    """(metric name, label names it is filtered on) for every HPA, ScaledObject and scaler."""
    refs: list[tuple[str, set[str]]] = []
    for hpa in find(docs, "HorizontalPodAutoscaler"):
        for m in hpa["spec"]["metrics"]:
            metric = m["external"]["metric"]
            selector = set(metric.get("selector", {}).get("matchLabels", {}))
            refs.append((metric["name"], selector - TARGET_LABELS))
    for so in find(docs, "ScaledObject"):
        for trigger in so["spec"]["triggers"]:
            query = trigger["metadata"]["query"]
            for name, matchers in re.findall(r"(alpcrun_[a-z_]+)\{([^}]*)\}", query):
                refs.append((name, set(re.findall(r"(\w+)=", matchers)) - TARGET_LABELS))
    for dep in find(docs, "Deployment"):
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        if args[0] == "scaler":
            flags = dict(a[2:].split("=", 1) for a in args[1:])
            refs.append((flags["metric"], {"app_id"} if "app-id" in flags else set()))
    return refs


async def test_chart_autoscalers_reference_exported_metrics_and_labels(tmp_path: Path):
    """Every metric an HPA, a ScaledObject or the scaler reads is exported under that name,
    with the labels it filters on, by a live queue manager with queued work."""
    combos = ["hpa-queue-depth", "hpa-workers-wanted-app", "keda", "scaler", "gpu-workers"]
    refs = [
        ref for combo in combos for ref in referenced_metrics(render(COMBINATIONS[combo], tmp_path))
    ]
    assert {name for name, _ in refs} >= {
        "alpcrun_workers_wanted",
        "alpcrun_queue_depth",
        "alpcrun_session_workers_wanted",
    }
    async with queued_work() as (qm, _session):
        exported = await scrape(qm)
        for name, labels in refs:
            assert name in exported, f"{name} is not exported"
            assert exported[name], f"{name} has no sample"
            for sample_labels in exported[name]:
                assert labels <= set(sample_labels), f"{name} lacks labels {labels}"
        assert await _value(qm, "alpcrun_queue_depth") == 40
        assert await _value(qm, "alpcrun_workers_wanted") == 6


async def test_adapter_rules_and_dashboard_use_exported_metrics():
    """The prometheus-adapter rules and the Grafana dashboard query only exported metrics."""
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus-adapter" / "values.yaml").read_text())
    external = rules["rules"]["external"]
    dashboard = (ROOT / "deploy" / "grafana" / "alpcrun-dashboard.json").read_text()
    async with queued_work() as (qm, _session):
        exported = set(await scrape(qm))
        for rule in external:
            [series] = re.findall(r"(alpcrun_[a-z_]+)", rule["seriesQuery"])
            assert series in exported
        used = set(re.findall(r"alpcrun_[a-z_]+", dashboard))
        assert used
        missing = {m for m in used if m not in exported and f"{m}_total" not in exported}
        assert not missing, missing


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "grid"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "worker", "image": "alpcrun:0.1.0"}]},
            },
        },
    }


@asynccontextmanager
async def emulator() -> AsyncIterator[tuple[kmock.KubernetesEmulator, Any]]:
    """The kmock Kubernetes API emulator and an AppsV1Api client pointed at it."""
    async with kmock.KubernetesEmulator() as k8s, Server(k8s):
        yield k8s, apps_api(host=str(k8s.url))


async def test_deployment_scale_reads_and_patches_the_scale_subresource():
    """DeploymentScale talks to /scale only: GET to read, PATCH spec.replicas to change."""
    async with emulator() as (k8s, api):
        await asyncio.to_thread(api.create_namespaced_deployment, "grid", _deployment("w", 2))
        target = DeploymentScale(api, name="w", namespace="grid")
        assert await asyncio.to_thread(target.get_replicas) == 2
        await asyncio.to_thread(target.set_replicas, 5)
        dep = await asyncio.to_thread(api.read_namespaced_deployment, "w", "grid")
        assert dep.spec.replicas == 5
        calls = [(str(r.method.value), r.subresource, r.data) for r in k8s if r.name == "w"]
        assert ("PATCH", "scale", {"spec": {"replicas": 5}}) in calls
        assert all(sub == "scale" for method, sub, _ in calls if method == "PATCH")


async def test_missing_deployment_is_an_api_error():
    """Scaling a Deployment that does not exist fails loudly (the runner logs and retries)."""
    from kubernetes.client.exceptions import ApiException

    async with emulator() as (_k8s, api):
        target = DeploymentScale(api, name="absent", namespace="grid")
        with pytest.raises(ApiException):
            await asyncio.to_thread(target.get_replicas)


async def test_scaler_scales_workers_to_what_the_queue_manager_wants():
    """End to end: queued work on a live queue manager → the scaler patches the Deployment up;
    the work gone and the window passed → it scales back down to the minimum."""
    clock = FakeClock()
    policy = ScalePolicy(min_replicas=1, max_replicas=4, scale_down_window_s=60, max_step_down=10)
    async with emulator() as (_k8s, api), queued_work() as (qm, session):
        await asyncio.to_thread(api.create_namespaced_deployment, "grid", _deployment("w", 1))
        target = DeploymentScale(api, name="w", namespace="grid")
        assert await _value(qm, "alpcrun_workers_wanted") == 6
        status = ScalerStatus(clock=clock, stale_after_s=60)
        runner = ScalerRunner(
            decider=ScaleDecider(policy, clock=clock),
            demand=MetricsDemand(
                f"http://127.0.0.1:{qm.metrics_port}/metrics", "alpcrun_workers_wanted"
            ),
            target=target,
            interval_s=0.01,
            status=status,
        )
        up = await runner.step()
        assert (up.current, up.desired, up.replicas, up.reason) == (1, 4, 4, Reason.SCALE_UP)
        assert await asyncio.to_thread(target.get_replicas) == 4  # 6 wanted, max_replicas 4
        await session.close()
        for _ in range(200):
            if await _value(qm, "alpcrun_workers_wanted") == 0:
                break
            await asyncio.sleep(0.02)
        clock.advance(61)
        down = await runner.step()
        assert down.replicas == 1
        assert await asyncio.to_thread(target.get_replicas) == 1
        assert status.ready() == (True, "ok")
        assert (
            status.registry.get_sample_value("alpcrun_scaler_scalings_total", {"direction": "up"})
            == 1
        )
        assert (
            status.registry.get_sample_value("alpcrun_scaler_scalings_total", {"direction": "down"})
            == 1
        )


async def test_runner_survives_an_unreachable_queue_manager():
    """A failed round changes nothing and the loop goes on until stopped."""
    async with emulator() as (_k8s, api):
        await asyncio.to_thread(api.create_namespaced_deployment, "grid", _deployment("w", 3))
        target = DeploymentScale(api, name="w", namespace="grid")
        status = ScalerStatus(clock=FakeClock(), stale_after_s=60)
        runner = ScalerRunner(
            decider=ScaleDecider(ScalePolicy(), clock=FakeClock()),
            demand=MetricsDemand("http://127.0.0.1:9/metrics", "alpcrun_workers_wanted"),
            target=target,
            interval_s=0.01,
            status=status,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert await asyncio.to_thread(target.get_replicas) == 3
        assert (
            status.registry.get_sample_value("alpcrun_scaler_rounds_total", {"outcome": "failed"})
            >= 2
        )
        assert (
            status.registry.get_sample_value("alpcrun_scaler_rounds_total", {"outcome": "ok"}) == 0
        )
        assert not status.ready()[0]
        assert status.live()[0]
