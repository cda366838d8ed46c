"""deploy/: example manifests current and valid, Dockerfiles sound, KEDA and adapter examples."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.k8s.chart import K8S_VERSIONS, ROOT
from tests.k8s.crds import SCHEMAS

pytestmark = pytest.mark.timeout(120)
DEPLOY = ROOT / "deploy"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_manifests_are_current_and_valid():
    """deploy/manifests/ is what the chart renders now, and every object in it validates."""
    rendered = _script("render_manifests").render_all()
    committed = {p.name: p.read_text() for p in (DEPLOY / "manifests").glob("*.yaml")}
    assert set(committed) == set(rendered)
    stale = [name for name, text in rendered.items() if committed[name] != text]
    assert not stale, f"run scripts/render_manifests.py: {stale} are stale"
    for text in committed.values():
        for doc in (d for d in yaml.safe_load_all(text) if d):
            if doc["kind"] in SCHEMAS:
                jsonschema.validate(doc, SCHEMAS[doc["kind"]])
            else:
                kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)
                kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda", "Dockerfile.worker"])
def test_dockerfiles_run_as_non_root_with_a_healthcheck(name: str):
    """Each image ends as uid 10001, declares a HEALTHCHECK and runs the alpcrun CLI."""
    text = (DEPLOY / name).read_text()
    instructions = [
        line.split(None, 1)
        for line in re.sub(r"\\\n", " ", text).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    users = [arg.strip() for op, arg in instructions if op == "USER"]
    assert users
    assert users[-1] == "10001:10001"
    assert any(op == "HEALTHCHECK" for op, _ in instructions)
    assert ["ENTRYPOINT", '["alpcrun"]'] in [[op, arg.strip()] for op, arg in instructions]
    for op, arg in instructions:
        if op == "COPY" and "--from" not in arg:
            sources = [s for s in arg.split() if not s.startswith("--")][:-1]
            for source in sources:
                if name != "Dockerfile.worker":  # the worker recipe copies the user's files
                    assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"


def test_image_installs_the_scaler_dependency():
    """The image carries the kubernetes client the scaler needs."""
    assert '".[k8s]"' in (DEPLOY / "Dockerfile").read_text()
    assert '".[gpu,k8s]"' in (DEPLOY / "Dockerfile.cuda").read_text()


def test_keda_example_is_a_valid_scaled_object():
    """The standalone KEDA example validates and scales on an alpcrun gauge."""
    doc = yaml.safe_load((DEPLOY / "keda" / "scaledobject.yaml").read_text())
    jsonschema.validate(doc, SCHEMAS["ScaledObject"])
    assert "alpcrun_workers_wanted" in doc["spec"]["triggers"][0]["metadata"]["query"]


def test_adapter_rules_expose_every_scaling_metric_per_namespace():
    """prometheus-adapter serves the four scaling gauges as External metrics by namespace."""
    values = yaml.safe_load((DEPLOY / "prometheus-adapter" / "values.yaml").read_text())
    rules = values["rules"]["external"]
    names = [r["name"]["as"] for r in rules]
    assert names == [
        "alpcrun_queue_depth",
        "alpcrun_workers_wanted",
        "alpcrun_session_queue_depth",
        "alpcrun_session_workers_wanted",
    ]
    for rule in rules:
        assert rule["seriesQuery"].startswith(rule["name"]["as"] + "{")
        assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}


def test_dashboard_is_valid_grafana_json():
    """The dashboard loads, has unique panel ids and a namespace variable every query uses."""
    dash = json.loads((DEPLOY / "grafana" / "alpcrun-dashboard.json").read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "namespace"}
    for panel in dash["panels"]:
        for target in panel["targets"]:
            assert 'namespace="$namespace"' in target["expr"], target["expr"]


def test_readme_paths_exist():
    """Files the deploy docs point at exist."""
    for rel in ["deploy/Dockerfile", "helm/alpcrun/values.schema.json", "docs/kubernetes.md"]:
        assert Path(ROOT / rel).is_file(), rel
