"""The shared-data servers' common base: what a server class must provide."""

from __future__ import annotations

import pytest

from alpcrun.cache.app import CentralCacheServer, NodeAgent, _Server
from alpcrun.config import NodeAgentSettings


def test_a_server_without_its_services_fails_at_instantiation():
    """A ``_Server`` subclass missing ``_add_services`` is refused with TypeError when built."""

    class NoServices(_Server):
        def _collector(self):
            raise AssertionError("never called")

    with pytest.raises(TypeError, match=r"abstract method '?_add_services"):
        NoServices(NodeAgentSettings(auth_disabled=True), None)  # type: ignore[abstract]


def test_the_shipped_servers_are_complete():
    """The central cache and the node agent implement every abstract method."""
    assert not CentralCacheServer.__abstractmethods__
    assert not NodeAgent.__abstractmethods__
