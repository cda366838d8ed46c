"""TLS settings: the environment names the Helm chart sets, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from alpcrun.cache.app import NodeAgent
from alpcrun.client import AsyncClient
from alpcrun.config import (
    CentralCacheSettings,
    ClientSettings,
    NodeAgentSettings,
    QueueManagerSettings,
    WorkerSettings,
    load_settings,
)
from alpcrun.errors import ConfigError
from alpcrun.queue_manager import QueueManager
from alpcrun.tls import client_tls, server_tls
from tests.pki import Pki, make_pki
from workers_sdk import TaskContext, Worker
from workers_sdk.runner import WorkerRunner


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class Noop(Worker):
    async def handle(self, task: TaskContext) -> bytes:
        return b""


SERVERS = [
    (QueueManagerSettings, "ALPCRUNCH_QM_"),
    (CentralCacheSettings, "ALPCRUNCH_CACHE_"),
    (NodeAgentSettings, "ALPCRUNCH_NODE_"),
]


@pytest.mark.parametrize(("cls", "prefix"), SERVERS)
def test_servers_read_the_tls_environment_the_chart_sets(pki, monkeypatch, cls, prefix):
    """TLS, TLS_CERT, TLS_KEY and CA_CERT under each server's prefix turn TLS on."""
    for name, value in pki.env(prefix, server=True).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(f"{prefix}TLS_CLIENT_AUTH", "true")
    settings = load_settings(cls, api_key="k")
    assert settings.tls
    assert settings.tls_client_auth
    tls = server_tls(settings)
    assert tls is not None
    assert tls.cert_chain == pki.server_cert.read_bytes()
    assert tls.client_ca == pki.ca_cert.read_bytes()


@pytest.mark.parametrize(
    ("cls", "prefix"),
    [
        (WorkerSettings, "ALPCRUNCH_WORKER_"),
        (ClientSettings, "ALPCRUNCH_CLIENT_"),
        (CentralCacheSettings, "ALPCRUNCH_CACHE_"),
        (NodeAgentSettings, "ALPCRUNCH_NODE_"),
    ],
)
def test_clients_read_the_tls_environment(pki, monkeypatch, cls, prefix):
    """Every process that dials a server reads TLS, CA_CERT, TLS_SERVER_NAME and its cert."""
    for name, value in pki.env(prefix, server=True).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(f"{prefix}TLS_SERVER_NAME", "alpcrun-node-agent")
    tls = client_tls(load_settings(cls, api_key="k"))
    assert tls is not None
    assert tls.root_certs == pki.ca_cert.read_bytes()
    assert tls.server_name == "alpcrun-node-agent"
    assert tls.cert_chain == pki.server_cert.read_bytes()


def test_tls_off_means_no_material():
    """Without tls, nothing is read and channels stay plaintext."""
    settings = QueueManagerSettings(api_key="k", tls_cert="/nowhere.crt")  # type: ignore[arg-type]
    assert server_tls(settings) is None
    assert client_tls(WorkerSettings(ca_cert="/nowhere.crt")) is None


def test_client_auth_without_tls_is_refused():
    """tls_client_auth alone would silently serve plaintext, so it is a ConfigError."""
    settings = QueueManagerSettings(api_key="k", tls_client_auth=True)  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"tls_client_auth \(ALPCRUNCH_QM_TLS_CLIENT_AUTH\) needs"
    ):
        server_tls(settings)


def _qm(**values: object) -> QueueManagerSettings:
    return QueueManagerSettings(api_key="k", tls=True, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing cert", "tls_cert (ALPCRUNCH_QM_TLS_CERT): cannot read {missing}"),
        ("missing key", "tls_key (ALPCRUNCH_QM_TLS_KEY): cannot read {missing}"),
        ("no key", "tls_cert (ALPCRUNCH_QM_TLS_CERT) is set but tls_key"),
        ("no cert", "tls_key (ALPCRUNCH_QM_TLS_KEY) is set but tls_cert"),
        ("neither", "tls (ALPCRUNCH_QM_TLS) is on: set tls_cert"),
        ("not pem", "tls_cert (ALPCRUNCH_QM_TLS_CERT): {notpem} is not a PEM file"),
        ("mismatched key", "tls_key (ALPCRUNCH_QM_TLS_KEY): {client_key} is not an unencrypted"),
        ("client auth, no ca", "tls_client_auth (ALPCRUNCH_QM_TLS_CLIENT_AUTH) is on"),
        ("ca not a cert", "ca_cert (ALPCRUNCH_QM_CA_CERT): {server_key} holds no usable CA"),
        ("missing ca", "ca_cert (ALPCRUNCH_QM_CA_CERT): cannot read {missing}"),
    ],
)
def test_bad_server_material_is_a_config_error_naming_setting_and_path(
    pki, tmp_path: Path, case, expected
):
    """Each misconfiguration fails at construction with the setting, its env name and path."""
    missing, notpem = tmp_path / "missing.pem", tmp_path / "notpem.crt"
    notpem.write_text("hello\n")
    good = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key)}
    values = {
        "missing cert": {**good, "tls_cert": str(missing)},
        "missing key": {**good, "tls_key": str(missing)},
        "no key": {"tls_cert": str(pki.server_cert)},
        "no cert": {"tls_key": str(pki.server_key)},
        "neither": {},
        "not pem": {**good, "tls_cert": str(notpem)},
        "mismatched key": {**good, "tls_key": str(pki.client_key)},
        "client auth, no ca": {**good, "tls_client_auth": True},
        "ca not a cert": {**good, "tls_client_auth": True, "ca_cert": str(pki.server_key)},
        "missing ca": {**good, "tls_client_auth": True, "ca_cert": str(missing)},
    }[case]
    paths = {"missing": missing, "notpem": notpem, "client_key": pki.client_key}
    paths["server_key"] = pki.server_key
    with pytest.raises(ConfigError) as info:
        QueueManager(settings=_qm(**values))
    assert expected.format(**paths) in str(info.value)


def test_node_agent_accepts_tls_now(pki):
    """The node agent no longer refuses tls; it serves and dials with it."""
    agent = NodeAgent(settings=NodeAgentSettings(api_key="k", **pki.server()))  # type: ignore[arg-type]
    assert agent.client_tls is not None
    assert agent.client_tls.root_certs == pki.ca_cert.read_bytes()


def test_sdk_clients_check_their_files_when_built(pki, tmp_path: Path):
    """AsyncClient and WorkerRunner raise ConfigError for a CA file that is not there."""
    missing = str(tmp_path / "ca.pem")
    with pytest.raises(ConfigError, match=r"ca_cert \(ALPCRUNCH_CLIENT_CA_CERT\): cannot read"):
        AsyncClient(settings=ClientSettings(tls=True, ca_cert=missing))
    with pytest.raises(ConfigError, match=r"ca_cert \(ALPCRUNCH_WORKER_CA_CERT\): cannot read"):
        WorkerRunner(Noop(), WorkerSettings(tls=True, ca_cert=missing))
    assert client_tls(ClientSettings(tls=True)) is not None  # no CA: the system roots
