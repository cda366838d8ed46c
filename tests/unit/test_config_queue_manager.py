"""Queue-manager settings: the journal and worker-loss settings, and how they are refused."""

from __future__ import annotations

import pytest

from alpcrun.config import QueueManagerSettings, load_settings
from alpcrun.errors import ConfigError


def test_journal_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("ALPCRUNCH_QM_JOURNAL", "/tmp/qm.db")
    monkeypatch.setenv("ALPCRUNCH_QM_JOURNAL_SYNC", "full")
    s = load_settings(QueueManagerSettings)
    assert (s.journal, s.journal_sync, s.journal_flush_interval) == ("/tmp/qm.db", "full", 0.001)
    assert load_settings(QueueManagerSettings, journal="/x.db").journal == "/x.db"


def test_bind_stream_timeout_defaults_to_30s_and_takes_durations(monkeypatch):
    """bind_stream_timeout is 30 s unless set, from the environment as a duration string."""
    monkeypatch.delenv("ALPCRUNCH_QM_BIND_STREAM_TIMEOUT", raising=False)
    assert load_settings(QueueManagerSettings).bind_stream_timeout == 30.0
    monkeypatch.setenv("ALPCRUNCH_QM_BIND_STREAM_TIMEOUT", "1m")
    assert load_settings(QueueManagerSettings).bind_stream_timeout == 60.0


def test_no_journal_by_default(monkeypatch):
    monkeypatch.delenv("ALPCRUNCH_QM_JOURNAL", raising=False)
    assert load_settings(QueueManagerSettings).journal is None


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"worker_timeout": "2s"}, "heartbeat_interval (5s) must be shorter than worker_timeout"),
        ({"journal_sync": "sometimes"}, "journal_sync"),
        ({"journal_flush_interval": "5s"}, "journal_flush_interval"),
        ({"bind_stream_timeout": "0s"}, "bind_stream_timeout"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(overrides, needle):
    with pytest.raises(ConfigError, match="invalid setting") as err:
        load_settings(QueueManagerSettings, **overrides)
    assert needle in str(err.value)
