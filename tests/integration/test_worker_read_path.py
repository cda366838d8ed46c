"""Workers' shared-data reads through the node read path, and their fallbacks (real servers)."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pydantic
import pytest

from alpcrun.cache.app import CentralCacheServer, NodeAgent
from alpcrun.cache.client import SharedDataClient
from alpcrun.config import WorkerSettings
from alpcrun.errors import SessionNotFound, Unavailable
from alpcrun.proto.channel import insecure_channel
from alpcrun.testing import running_central_cache, running_node_agent
from workers_sdk import _shared
from workers_sdk._shared import CachedSharedData

pytestmark = pytest.mark.integration
KEY = "test-key"


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for Unix sockets (AF_UNIX paths are limited to ~107 bytes)."""
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="wrp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def grid(
    **overrides: Any,
) -> AsyncIterator[tuple[CentralCacheServer, NodeAgent, SharedDataClient]]:
    async with (
        running_central_cache() as cc,
        running_node_agent(cc.address, **overrides) as na,
        insecure_channel(cc.address) as cch,
    ):
        yield cc, na, SharedDataClient(cch, api_key=KEY)


def worker_settings(cc: CentralCacheServer | None, na: NodeAgent, **extra: Any) -> WorkerSettings:
    values: dict[str, Any] = {
        "api_key": KEY,
        "node_agent": na.address,
        "node_read_path": na.read_address,
        "central_cache": cc.address if cc is not None else None,
        **extra,
    }
    return WorkerSettings(**values)


def read_requests(na: NodeAgent) -> int:
    assert na.read_server is not None
    return na.read_server.service.requests


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def cached(settings: WorkerSettings) -> AsyncIterator[CachedSharedData]:
    shared = CachedSharedData(settings)
    try:
        yield shared
    finally:
        await shared.aclose()


async def test_reads_go_through_the_read_path():
    async with grid() as (cc, na, central):
        await central.set("s", b"via read path")
        async with cached(worker_settings(cc, na)) as shared:
            assert await shared.get("s", 1) == b"via read path"
            assert await shared.get("s", 1) == b"via read path"  # memoised: no second read
            assert (shared.node_reads, shared.central_reads) == (1, 0)
            assert read_requests(na) == 1
            assert na.read_server is not None
            assert na.read_server.service.connections == 1
        assert na.cache is not None
        lru = na.cache.statistics().lru
        assert (lru.hits, lru.misses) == (0, 1)  # one lookup in all: gRPC was not asked too


async def test_unix_read_path_is_used_too(sock_dir: Path):
    sock = sock_dir / "r.sock"
    async with grid(read_socket=str(sock)) as (cc, na, central):
        await central.set("s", b"local")
        async with cached(worker_settings(cc, na, node_read_path=f"unix:{sock}")) as shared:
            assert await shared.get("s", 1) == b"local"
            assert (shared.node_reads, shared.central_reads) == (1, 0)
        assert read_requests(na) == 1


async def test_errors_from_the_read_path_are_raised_not_fallen_back_from():
    async with grid() as (cc, na, _central):
        async with cached(worker_settings(cc, na)) as shared:
            with pytest.raises(SessionNotFound):
                await shared.get("ghost", 1)
            assert (shared.node_reads, shared.central_reads) == (0, 0)
        assert read_requests(na) == 1
        assert na.cache is not None
        assert na.cache.statistics().central_fetches == 1  # only the read path's fetch


async def test_a_closed_read_port_falls_back_to_grpc():
    port = closed_port()
    async with grid() as (cc, na, central):
        await central.set("s", b"one")
        await central.update("s", b"two", level=2)
        settings = worker_settings(cc, na, node_read_path=f"127.0.0.1:{port}")
        assert settings.read_path_address() == f"127.0.0.1:{port}"
        async with cached(settings) as shared:
            assert await shared.get("s", 1) == b"one"
            assert await shared.get("s", 2) == b"two"
            assert (shared.node_reads, shared.central_reads) == (2, 0)  # the agent's gRPC
        assert read_requests(na) == 0
        assert na.cache is not None
        assert na.cache.statistics().central_fetches == 2


async def test_an_unreachable_read_path_is_not_retried_within_the_pause(sock_dir: Path):
    """After a failed connect, reads use gRPC for READ_PATH_RETRY_S even once it is there."""
    sock = sock_dir / "late.sock"
    async with grid() as (cc, na, central):
        await central.set("s", b"one")
        await central.update("s", b"two", level=2)
        async with cached(worker_settings(cc, na, node_read_path=f"unix:{sock}")) as shared:
            assert await shared.get("s", 1) == b"one"  # nothing listens on the socket yet
            async with running_node_agent(
                cc.address, read_port="off", read_socket=str(sock)
            ) as late:
                assert await shared.get("s", 2) == b"two"
                assert read_requests(late) == 0
                assert late.read_server is not None
                assert late.read_server.service.connections == 0  # not even dialled
            assert (shared.node_reads, shared.central_reads) == (2, 0)


async def test_the_read_path_is_tried_again_after_the_pause(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(_shared, "READ_PATH_RETRY_S", 0.0)
    sock = sock_dir / "late.sock"
    async with grid() as (cc, na, central):
        await central.set("s", b"one")
        await central.update("s", b"two", level=2)
        async with cached(worker_settings(cc, na, node_read_path=f"unix:{sock}")) as shared:
            assert await shared.get("s", 1) == b"one"
            async with running_node_agent(
                cc.address, read_port="off", read_socket=str(sock)
            ) as late:
                assert await shared.get("s", 2) == b"two"
                assert read_requests(late) == 1  # the read path came back into use
            assert (shared.node_reads, shared.central_reads) == (2, 0)


async def test_central_down_a_cached_level_is_served_through_the_read_path():
    async with grid() as (cc, na, central):
        await central.set("s", b"cached")
        async with cached(worker_settings(cc, na)) as first:
            assert await first.get("s", 1) == b"cached"
        await cc.stop(grace=0)
        async with cached(worker_settings(cc, na)) as shared:
            assert await shared.get("s", 1) == b"cached"
            assert (shared.node_reads, shared.central_reads) == (1, 0)
        assert read_requests(na) == 2


async def test_central_down_an_uncached_level_skips_grpc_to_the_agent_and_raises():
    """The read path answered UNAVAILABLE: gRPC to the same agent would say the same, so the
    central cache is asked next (down too: Unavailable)."""
    async with grid() as (cc, na, central):
        await central.set("s", b"one")
        await central.update("s", b"two", level=2)
        await cc.stop(grace=0)
        async with cached(worker_settings(cc, na)) as shared:
            with pytest.raises(Unavailable):
                await shared.get("s", 2)
            assert (shared.node_reads, shared.central_reads) == (0, 0)
        assert read_requests(na) == 1
        assert na.cache is not None
        st = na.cache.statistics()
        assert (st.central_fetches, st.central_fetch_failures) == (1, 1)  # no gRPC retry


async def test_central_down_and_no_central_configured_raises_the_agents_unavailable():
    async with grid() as (cc, na, central):
        await central.set("s", b"one")
        await cc.stop(grace=0)
        async with cached(worker_settings(None, na)) as shared:
            with pytest.raises(Unavailable, match="central cache unreachable"):
                await shared.get("s", 1)
        assert na.cache is not None
        assert na.cache.statistics().central_fetch_failures == 1


async def test_read_path_off_uses_grpc_only():
    async with grid() as (cc, na, central):
        await central.set("s", b"grpc")
        async with cached(worker_settings(cc, na, node_read_path="off")) as shared:
            assert await shared.get("s", 1) == b"grpc"
            assert (shared.node_reads, shared.central_reads) == (1, 0)
        assert read_requests(na) == 0


# --- resolving node_read_path ---------------------------------------------------------------


def test_auto_is_the_node_agents_host_on_port_3338():
    assert WorkerSettings(node_agent="10.1.2.3:3337").read_path_address() == "10.1.2.3:3338"
    assert WorkerSettings(node_agent="node-a:1234").read_path_address() == "node-a:3338"
    assert WorkerSettings().node_read_path == "auto"
    assert WorkerSettings().read_path_address() == "localhost:3338"
    assert WorkerSettings(node_agent="node-a").read_path_address() == "node-a:3338"
    assert WorkerSettings(node_agent="dns:///node-a:3337").read_path_address() == "node-a:3338"
    assert WorkerSettings(node_agent="[::1]:3337").read_path_address() == "[::1]:3338"


def test_auto_is_off_with_tls_or_a_unix_node_agent_or_no_node_agent():
    assert WorkerSettings(node_agent="10.1.2.3:3337", tls=True).read_path_address() is None
    assert WorkerSettings(node_agent="unix:/run/alpcrun/na.sock").read_path_address() is None
    assert WorkerSettings(node_agent=None).read_path_address() is None
    assert WorkerSettings(node_agent=None, node_read_path="h:1").read_path_address() is None


@pytest.mark.parametrize("value", ["off", "OFF", "none", "", " off "])
def test_off_resolves_to_none(value: str):
    settings = WorkerSettings(node_agent="10.1.2.3:3337", node_read_path=value)
    assert settings.node_read_path == "off"
    assert settings.read_path_address() is None


@pytest.mark.parametrize("value", ["10.9.9.9:4000", "unix:/run/alpcrun/read.sock"])
def test_an_explicit_address_is_used_as_given(value: str):
    settings = WorkerSettings(node_agent="10.1.2.3:3337", node_read_path=value)
    assert settings.read_path_address() == value


@pytest.mark.parametrize("value", ["nohost", "host:", "host:99999", "unix:", ":3338"])
def test_a_bad_value_is_a_validation_error_naming_node_read_path(value: str):
    with pytest.raises(pydantic.ValidationError, match="node_read_path"):
        WorkerSettings(node_read_path=value)
