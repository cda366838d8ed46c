"""The journal's salvage and transaction-size settings: flags, environment, bounds."""

from __future__ import annotations

import pytest

from alpcrun.cli.main import build_parser
from alpcrun.config import QueueManagerSettings, load_settings
from alpcrun.errors import ConfigError


def test_salvage_is_off_unless_asked_by_flag_or_environment(monkeypatch):
    """A damaged journal is refused by default; the flag or the environment asks for salvage."""
    monkeypatch.delenv("ALPCRUNCH_QM_JOURNAL_SALVAGE", raising=False)
    assert load_settings(QueueManagerSettings).journal_salvage is False
    flags = build_parser().parse_args(["queue-manager", "--journal", "j.db", "--journal-salvage"])
    assert load_settings(
        QueueManagerSettings, journal_salvage=flags.journal_salvage
    ).journal_salvage
    assert build_parser().parse_args(["queue-manager"]).journal_salvage is None  # env decides
    monkeypatch.setenv("ALPCRUNCH_QM_JOURNAL_SALVAGE", "true")
    assert load_settings(QueueManagerSettings).journal_salvage is True


def test_transaction_size_defaults_to_1mib_and_takes_sizes(monkeypatch):
    """journal_max_transaction_bytes is 1 MiB unless set, and accepts sizes such as 256KB."""
    monkeypatch.delenv("ALPCRUNCH_QM_JOURNAL_MAX_TRANSACTION_BYTES", raising=False)
    assert load_settings(QueueManagerSettings).journal_max_transaction_bytes == 1 << 20
    monkeypatch.setenv("ALPCRUNCH_QM_JOURNAL_MAX_TRANSACTION_BYTES", "256KB")
    assert load_settings(QueueManagerSettings).journal_max_transaction_bytes == 256 << 10


def test_a_transaction_size_under_64kib_is_refused_naming_the_setting():
    """A cap so small that every change is a transaction of its own is refused."""
    with pytest.raises(ConfigError, match=r"journal_max_transaction_bytes(.|\n)*65536"):
        load_settings(QueueManagerSettings, journal_max_transaction_bytes="4KB")
