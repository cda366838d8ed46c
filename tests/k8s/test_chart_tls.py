"""The chart's TLS environment names settings every alpcrun process really reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alpcrun.config import (
    CentralCacheSettings,
    NodeAgentSettings,
    QueueManagerSettings,
    WorkerSettings,
    _Base,
)
from tests.k8s.chart import CHART, FULLNAME, RELEASE, env_of, helm, one, render

pytestmark = pytest.mark.timeout(120)

PROCESSES: list[tuple[str, str, str, type[_Base], bool]] = [
    ("Deployment", f"{FULLNAME}-queue-manager", "ALPCRUNCH_QM_", QueueManagerSettings, True),
    ("Deployment", f"{FULLNAME}-central-cache", "ALPCRUNCH_CACHE_", CentralCacheSettings, True),
    ("DaemonSet", f"{FULLNAME}-node-agent", "ALPCRUNCH_NODE_", NodeAgentSettings, True),
    ("Deployment", f"{FULLNAME}-worker-default", "ALPCRUNCH_WORKER_", WorkerSettings, False),
]
TLS = {"enabled": True, "existingSecret": "my-tls"}


def _env(doc: dict[str, Any]) -> dict[str, Any]:
    [container] = doc["spec"]["template"]["spec"]["containers"]
    return env_of(container)


def test_every_tls_variable_the_chart_sets_is_a_setting(tmp_path: Path) -> None:
    """Under TLS and mTLS each process gets TLS, its files, and only names its settings know."""
    docs = render({"tls": {**TLS, "clientAuth": True}}, tmp_path)
    for kind, name, prefix, cls, server in PROCESSES:
        env = _env(one(docs, kind, name))
        assert env[f"{prefix}TLS"] == "true"
        assert env[f"{prefix}TLS_CERT"] == "/etc/alpcrun/tls/tls.crt"
        assert env[f"{prefix}TLS_KEY"] == "/etc/alpcrun/tls/tls.key"
        assert env[f"{prefix}CA_CERT"] == "/etc/alpcrun/tls/ca.crt"
        assert (env.get(f"{prefix}TLS_CLIENT_AUTH") == "true") is server
        for variable in env:
            if variable.startswith(prefix):
                field = variable.removeprefix(prefix).lower()
                assert field in cls.model_fields, f"{name}: {variable} is no setting"


def test_workers_dialling_the_node_agent_by_ip_expect_its_service_name(tmp_path: Path) -> None:
    """With hostPort the worker verifies the certificate against the node agent's Service name."""
    worker = f"{FULLNAME}-worker-default"
    by_ip = _env(one(render({"tls": TLS}, tmp_path), "Deployment", worker))
    assert by_ip["ALPCRUNCH_WORKER_TLS_SERVER_NAME"] == f"{FULLNAME}-node-agent"
    by_service = render({"tls": TLS, "nodeAgent": {"hostPort": False}}, tmp_path)
    assert "ALPCRUNCH_WORKER_TLS_SERVER_NAME" not in _env(one(by_service, "Deployment", worker))


def test_system_roots_leave_the_ca_file_out(tmp_path: Path) -> None:
    """tls.systemRoots verifies against the image's CA roots: no CA_CERT variable."""
    docs = render({"tls": {**TLS, "systemRoots": True}}, tmp_path)
    for kind, name, prefix, _cls, _server in PROCESSES:
        env = _env(one(docs, kind, name))
        assert env[f"{prefix}TLS"] == "true"
        assert f"{prefix}CA_CERT" not in env


def test_schema_refuses_client_auth_without_the_secret_ca(tmp_path: Path) -> None:
    """tls.clientAuth with tls.systemRoots is refused: servers need ca.crt to check clients."""
    values = {"tls": {**TLS, "systemRoots": True, "clientAuth": True}}
    out = helm("template", RELEASE, str(CHART), values=values, tmp=tmp_path)
    assert out.returncode != 0
    assert "at '/tls'" in out.stderr
    ok = helm(
        "template", RELEASE, str(CHART), values={"tls": {**TLS, "clientAuth": True}}, tmp=tmp_path
    )
    assert ok.returncode == 0, ok.stderr
