"""``alpcrun scaler`` settings: flags over ALPCRUNCH_SCALER_* env over defaults, bounds checked."""

from __future__ import annotations

import pytest

from alpcrun.cli.main import build_parser
from alpcrun.cli.scaler import settings_from
from alpcrun.errors import ConfigError


def test_flags_and_env(monkeypatch):
    """Flags win over the environment; durations take Go-style strings."""
    monkeypatch.setenv("ALPCRUNCH_SCALER_NAMESPACE", "grid")
    monkeypatch.setenv("ALPCRUNCH_SCALER_MAX_REPLICAS", "9")
    args = build_parser().parse_args(
        ["scaler", "--deployment", "w", "--max-replicas", "12", "--scale-down-window", "2m"]
    )
    s = settings_from(args)
    assert (s.deployment, s.namespace, s.max_replicas) == ("w", "grid", 12)
    assert s.scale_down_window == 120
    assert s.metric == "alpcrun_workers_wanted"


def test_min_above_max_is_a_config_error():
    """min_replicas above max_replicas is refused with the setting named."""
    args = build_parser().parse_args(["scaler", "--min-replicas", "5", "--max-replicas", "2"])
    with pytest.raises(ConfigError, match="min_replicas"):
        settings_from(args)


def test_unknown_metric_is_refused_by_the_parser(capsys):
    """--metric only takes the scaling gauges."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["scaler", "--metric", "alpcrun_tasks_completed_total"])
    assert "invalid choice" in capsys.readouterr().err
