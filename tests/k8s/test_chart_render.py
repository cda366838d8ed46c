"""The chart renders with the real helm, passes ``helm lint --strict`` and every object it
renders is valid for Kubernetes 1.28 to 1.37, for every values combination we support."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.k8s.chart import CHART, COMBINATIONS, K8S_VERSIONS, find, helm, render
from tests.k8s.crds import SCHEMAS

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("combo", sorted(COMBINATIONS))
def test_lint_strict(combo: str, tmp_path: Path) -> None:
    """helm lint --strict accepts the chart with each values combination."""
    out = helm("lint", "--strict", str(CHART), values=COMBINATIONS[combo], tmp=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("combo", sorted(COMBINATIONS))
def test_objects_valid_for_every_kubernetes_version(combo: str, tmp_path: Path) -> None:
    """Every built-in object validates strictly against 1.28-1.37; custom resources against
    the fields of their CRDs."""
    docs = render(COMBINATIONS[combo], tmp_path)
    assert docs
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "two objects share a kind and name"
    errors: list[str] = []
    for doc in docs:
        if doc["kind"] in SCHEMAS:
            jsonschema.validate(doc, SCHEMAS[doc["kind"]])
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{version} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_validation_catches_a_bad_object() -> None:
    """The validator in use rejects a misplaced field (so the test above can fail)."""
    bad: dict[str, Any] = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "x"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "x"},
            "maxReplicas": 3,
            "metric": {"name": "alpcrun_queue_depth"},
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


def test_every_component_is_rendered_by_default(tmp_path: Path) -> None:
    """Defaults: queue manager, central cache, node agent, a worker pool, Services, a Secret."""
    kinds = {(d["kind"], d["metadata"]["name"]) for d in render({}, tmp_path)}
    for expected in [
        ("Deployment", "grid-alpcrun-queue-manager"),
        ("Service", "grid-alpcrun-queue-manager"),
        ("Deployment", "grid-alpcrun-central-cache"),
        ("Service", "grid-alpcrun-central-cache"),
        ("DaemonSet", "grid-alpcrun-node-agent"),
        ("Service", "grid-alpcrun-node-agent"),
        ("Deployment", "grid-alpcrun-worker-default"),
        ("PodDisruptionBudget", "grid-alpcrun-worker-default"),
        ("Secret", "grid-alpcrun-api-key"),
    ]:
        assert expected in kinds
    assert not [k for k in kinds if k[0] in ("HorizontalPodAutoscaler", "ScaledObject")]


def test_minimal_renders_only_queue_manager_and_workers(tmp_path: Path) -> None:
    """Caches and PDBs switched off leave no trace."""
    docs = render(COMBINATIONS["minimal"], tmp_path)
    assert not find(docs, "DaemonSet")
    assert not find(docs, "PodDisruptionBudget")
    assert {d["metadata"]["name"] for d in find(docs, "Deployment")} == {
        "grid-alpcrun-queue-manager",
        "grid-alpcrun-worker-default",
    }


def test_chart_refuses_kubernetes_older_than_1_28(tmp_path: Path) -> None:
    """kubeVersion in Chart.yaml stops an install on a cluster the chart was not validated for."""
    old = helm("template", "grid", str(CHART), "--kube-version", "1.27.0", values={}, tmp=tmp_path)
    assert old.returncode != 0
    assert "kubeVersion" in old.stderr or "incompatible" in old.stderr, old.stderr
    new = helm("template", "grid", str(CHART), "--kube-version", "1.37.0", values={}, tmp=tmp_path)
    assert new.returncode == 0, new.stderr
