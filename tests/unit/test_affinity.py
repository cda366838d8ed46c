"""cpu_affinity: the CPU list syntax and its checks (pinning a process: tests/integration)."""

from __future__ import annotations

import os

import pytest

from alpcrun.affinity import MAX_CPU, format_cpus, parse_cpu_list, pin_process
from alpcrun.config import NodeAgentSettings, QueueManagerSettings
from alpcrun.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("3", {3}),
        ("0-3", {0, 1, 2, 3}),
        ("0,2,5-7", {0, 2, 5, 6, 7}),
        (" 1, 1-2 ", {1, 2}),
        (f"{MAX_CPU}", {MAX_CPU}),
    ],
)
def test_parses_cpuset_lists(text: str, cpus: set[int]) -> None:
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["", "a", "1-", "-1", "3-1", "1,,2", "1.5", f"{MAX_CPU + 1}"])
def test_refuses_what_is_not_a_cpu_list(text: str) -> None:
    with pytest.raises(ValueError, match="CPU"):
        parse_cpu_list(text)


@pytest.mark.parametrize(
    ("cpus", "text"), [({0}, "0"), ({0, 1, 2, 3}, "0-3"), ({0, 2, 5, 6, 7}, "0,2,5-7")]
)
def test_formats_back_to_the_shortest_list(cpus: set[int], text: str) -> None:
    assert format_cpus(frozenset(cpus)) == text
    assert parse_cpu_list(text) == cpus


def test_settings_take_a_list_a_number_or_the_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert QueueManagerSettings(auth_disabled=True).cpu_affinity is None
    assert QueueManagerSettings(auth_disabled=True, cpu_affinity=3).cpu_affinity == "3"
    monkeypatch.setenv("ALPCRUNCH_NODE_CPU_AFFINITY", "1,0")
    assert NodeAgentSettings(auth_disabled=True).cpu_affinity == "0-1"


def test_a_bad_list_in_the_settings_names_the_field() -> None:
    with pytest.raises(ValueError, match="cpu_affinity"):
        NodeAgentSettings(auth_disabled=True, cpu_affinity="2-1")


def test_a_cpu_this_process_may_not_use_is_a_config_error() -> None:
    outside = max(os.sched_getaffinity(0)) + 1
    with pytest.raises(ConfigError, match=rf"cpu_affinity \(X\): CPU\(s\) {outside} are not"):
        pin_process(frozenset({outside}), setting="cpu_affinity (X)")
