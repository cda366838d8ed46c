"""Settings of the central cache and the node agent: sizes, ALPCRUN.CH keys, env prefixes."""

import pytest

from alpcrun.config import CentralCacheSettings, NodeAgentSettings, load_settings, parse_bytes
from alpcrun.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [(1024, 1024), ("1GB", 1 << 30), ("512MiB", 512 << 20), ("64k", 64 << 10), ("1.5G", 3 << 29)],
)
def test_byte_sizes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["1 parsec", "", True, "-1GB"])
def test_bad_byte_sizes(bad):
    with pytest.raises(ValueError, match="size"):
        parse_bytes(bad)


def test_alpcrunch_keys_in_yaml(tmp_path, monkeypatch):
    monkeypatch.delenv("ALPCRUNCH_CONFIG", raising=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "central_cache:\n  maxTTL: 2m\n  cleanupInterval: 250ms\n"
        "node_agent:\n  cacheSize: 2GB\n  centralCacheAddr: cc:2337\n  caCert: /ca.crt\n"
    )
    cc = load_settings(CentralCacheSettings, config_file=cfg)
    assert (cc.max_ttl, cc.cleanup_interval, cc.port) == (120.0, 0.25, 2337)
    na = load_settings(NodeAgentSettings, config_file=cfg)
    assert (na.cache_size, na.central_cache_addr, na.ca_cert, na.port) == (
        2 << 30,
        "cc:2337",
        "/ca.crt",
        3337,
    )


def test_env_prefixes_and_bad_values(monkeypatch):
    monkeypatch.setenv("ALPCRUNCH_NODE_CACHE_SIZE", "256MB")
    monkeypatch.setenv("ALPCRUNCH_CACHE_MAX_BYTES", "8GB")
    assert load_settings(NodeAgentSettings).cache_size == 256 << 20
    assert load_settings(CentralCacheSettings).max_bytes == 8 << 30
    with pytest.raises(ConfigError, match="cache_size"):
        load_settings(NodeAgentSettings, cache_size="lots")
