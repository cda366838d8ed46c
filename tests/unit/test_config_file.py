"""The YAML config file's top level: sections and shared settings are read, unknown keys refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from alpcrun import config
from alpcrun.config import (
    CentralCacheSettings,
    ClientSettings,
    NodeAgentSettings,
    QueueManagerSettings,
    WorkerSettings,
    _Base,
    load_settings,
)
from alpcrun.errors import ConfigError
from alpcrun.scaler.settings import ScalerSettings

ALL = [
    QueueManagerSettings,
    WorkerSettings,
    ClientSettings,
    CentralCacheSettings,
    NodeAgentSettings,
    ScalerSettings,
]

# One file for every process: ALPCRUN.CH aliases and settings of one process at the top level.
SHARED = """\
loglevel: debug
appid: pricing
bufferSize: 500
queueType: fifo
schedulerInterval: 2s
workerTimeout: 90s
maxTTL: 2m
cleanupInterval: 250ms
cacheSize: 2GB
centralCacheAddr: cc:2337
tls: false
caCert: /ca.crt
concurrency: 3
labels: {gpu: "true"}
deployment: workers
queue_manager:
  port: 1338
worker:
  queue_manager: qm:1337
client:
  max_batch_tasks: 10
central_cache:
  max_bytes: 1GB
node_agent:
  read_port: "off"
scaler:
  max_replicas: 4
"""


@pytest.fixture(autouse=True)
def _no_stray_config(monkeypatch):
    for name in ("ALPCRUNCH_CONFIG", "ALPCRUNCH_API_KEY", "ALPCRUNCH_QM_PORT"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alpcrun.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.__name__)
def test_a_file_shared_by_every_process_loads_in_each(tmp_path, cls):
    """Every process loads a file holding every section and other processes' top-level keys."""
    settings = load_settings(cls, config_file=write(tmp_path, SHARED))
    assert settings.log_level == "debug"


def test_each_process_reads_its_own_keys_from_the_shared_file(tmp_path):
    """Top-level aliases reach the processes that have the setting; sections their process."""
    path = write(tmp_path, SHARED)
    qm = load_settings(QueueManagerSettings, config_file=path)
    assert (qm.port, qm.buffer_size, qm.queue_type) == (1338, 500, "fifo")
    assert (qm.scheduler_interval, qm.worker_timeout, qm.ca_cert) == (2.0, 90.0, "/ca.crt")
    worker = load_settings(WorkerSettings, config_file=path)
    assert (worker.queue_manager, worker.concurrency, worker.labels) == (
        "qm:1337",
        3,
        {"gpu": "true"},
    )
    assert load_settings(ClientSettings, config_file=path).max_batch_tasks == 10
    cc = load_settings(CentralCacheSettings, config_file=path)
    assert (cc.max_ttl, cc.cleanup_interval, cc.max_bytes) == (120.0, 0.25, 1 << 30)
    na = load_settings(NodeAgentSettings, config_file=path)
    assert (na.cache_size, na.central_cache_addr, na.read_port) == (2 << 30, "cc:2337", None)
    scaler = load_settings(ScalerSettings, config_file=path)
    assert (scaler.app_id, scaler.deployment, scaler.max_replicas) == ("pricing", "workers", 4)


@pytest.mark.parametrize(
    ("text", "key", "suggestion"),
    [
        ("bufer_size: 10\n", "bufer_size", "buffer_size"),
        ("queue_manger:\n  port: 1\n", "queue_manger", "queue_manager"),
        ("bufferSise: 10\n", "bufferSise", "bufferSize"),
        ("worker_timout: 5s\n", "worker_timout", "worker_timeout"),
    ],
)
@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.__name__)
def test_a_misspelled_top_level_key_is_an_error_naming_key_file_and_fix(
    tmp_path, cls, text, key, suggestion
):
    """A top-level key no process reads is a ConfigError naming it, the file and the likely key."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(cls, config_file=path)
    message = str(err.value)
    assert f"config file {path}: unknown top-level key {key!r}" in message
    assert f"did you mean {suggestion!r}" in message
    assert "queue_manager, worker, client, central_cache, node_agent, scaler" in message


def test_an_unknown_key_without_a_close_match_lists_the_sections(tmp_path):
    """With nothing close to suggest, the error still says what a top-level key may be."""
    with pytest.raises(
        ConfigError, match=r"unknown top-level key 'zzz'; a top-level key is a section"
    ):
        load_settings(WorkerSettings, config_file=write(tmp_path, "zzz: 1\n"))


def test_an_unknown_key_is_refused_also_through_the_environment(tmp_path, monkeypatch):
    """ALPCRUNCH_CONFIG files are checked the same way as --config ones."""
    monkeypatch.setenv("ALPCRUNCH_CONFIG", str(write(tmp_path, "log_levle: info\n")))
    with pytest.raises(ConfigError, match="did you mean 'log_level'"):
        load_settings(ClientSettings)


def test_a_setting_holding_a_mapping_at_the_top_level_is_refused(tmp_path):
    """A top-level setting given a mapping (e.g. ``tls:`` written as a section) is an error."""
    path = write(tmp_path, "tls:\n  cert: /tls.crt\n")
    with pytest.raises(ConfigError, match="top-level key 'tls' is a setting, not a section"):
        load_settings(QueueManagerSettings, config_file=path)


def test_an_unknown_key_inside_a_section_is_still_refused(tmp_path):
    """Inside its own section a misspelled key stays an error naming it."""
    path = write(tmp_path, "queue_manager:\n  bufer_size: 10\n")
    with pytest.raises(ConfigError, match="bufer_size"):
        load_settings(QueueManagerSettings, config_file=path)


def _settings_classes(cls: type[_Base]) -> list[type[_Base]]:
    out = []
    for sub in cls.__subclasses__():
        if sub.section:
            out.append(sub)
        out.extend(_settings_classes(sub))
    return out


def test_every_process_section_and_setting_is_a_valid_top_level_key():
    """The accepted keys cover every settings class, the scaler's too, and every alias."""
    classes = set(_settings_classes(_Base))
    assert ScalerSettings in classes
    valid = config._top_level_keys()
    for cls in classes:
        assert cls.section in config._SECTIONS
        assert set(cls.model_fields) <= valid, cls.__name__
    assert config._OTHER_PROCESSES["scaler"] == set(ScalerSettings.model_fields)
    assert set(config._ALIASES) <= valid
