"""TLS and mutual TLS between every alpcrun server and client, with in-process servers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from alpcrun.client import AsyncClient, Client
from alpcrun.config import ClientSettings
from alpcrun.errors import Unavailable
from alpcrun.testing import running_central_cache, running_node_agent, running_queue_manager
from tests.pki import Pki, make_pki
from workers_sdk import TaskContext, Worker
from workers_sdk.runner import WorkerRunner

from .test_worker_runner import KEY, running, settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class Upper(Worker):
    """Uppercases payloads."""

    async def handle(self, task: TaskContext) -> bytes:
        return task.payload.upper()


class SharedEcho(Worker):
    """Answers ``<shared data>:<payload>``."""

    async def handle(self, task: TaskContext) -> bytes:
        return b"%s:%s" % (task.shared_data(), task.payload)


def client_settings(qm: str, **extra: object) -> ClientSettings:
    values: dict[str, object] = {"queue_manager": qm, "api_key": KEY, **extra}
    return ClientSettings(**values)  # type: ignore[arg-type]


async def test_map_runs_over_tls_from_client_through_queue_manager_to_worker(pki: Pki):
    """A map goes client → queue manager → worker and back with every hop on TLS."""
    async with running_queue_manager(api_key=KEY, **pki.server()) as qm:
        worker = WorkerRunner(
            Upper(), settings(qm.address, node_agent=None, central_cache=None, **pki.client())
        )
        cs = client_settings(qm.address, **pki.client())

        def blocking() -> list[bytes]:
            with Client(settings=cs) as sync_client, sync_client.session(app_id="t") as s:
                return [r.payload for r in s.map([b"x"])]

        async with running(worker):
            async with AsyncClient(settings=cs) as client, client.session(app_id="tls") as session:
                results = [r.payload async for r in session.map([b"a", b"b"], ordered=True)]
            assert results == [b"A", b"B"]
            assert await asyncio.to_thread(blocking) == [b"X"]
        assert worker.statistics().tasks_done == 3


async def test_shared_data_flows_over_tls_through_central_cache_and_node_agent(pki: Pki):
    """Upload (checked with the queue manager), node-agent pull and worker reads run on TLS."""
    async with (
        running_queue_manager(api_key=KEY, **pki.server()) as qm,
        running_central_cache(api_key=KEY, queue_manager=qm.address, **pki.server()) as cc,
        running_node_agent(cc.address, api_key=KEY, **pki.server()) as na,
    ):
        worker = WorkerRunner(
            SharedEcho(),
            settings(qm.address, node_agent=na.address, central_cache=cc.address, **pki.client()),
        )
        cs = client_settings(qm.address, central_cache=cc.address, **pki.client())
        async with (
            running(worker),
            AsyncClient(settings=cs) as client,
            client.session(app_id="tls-shared") as session,
        ):
            await session.set_shared_data(b"curve", ttl=60)
            assert await (await session.submit(b"x")) == b"curve:x"
        assert na.cache is not None
        assert na.cache.statistics().central_fetches == 1


async def test_central_cache_asks_the_queue_manager_over_tls(pki: Pki):
    """The central cache's session poll reaches a TLS queue manager and drops closed data."""
    async with (
        running_queue_manager(api_key=KEY, **pki.server()) as qm,
        running_central_cache(api_key=KEY, queue_manager=qm.address, **pki.server()) as cc,
    ):
        async with AsyncClient(settings=client_settings(qm.address, **pki.client())) as client:
            session = await client.create_session(app_id="tls-poll")
            await session.close()
        cc.store.reserve(1)
        cc.store.store(session.id, 1, b"v", 60, update=False)
        assert await cc.drop_closed_sessions() == 1
        assert session.id not in cc.store.sessions()


async def test_mutual_tls_requires_a_client_certificate(pki: Pki):
    """With tls_client_auth a client without a certificate is refused, one with it is served."""
    async with running_queue_manager(api_key=KEY, **pki.server(tls_client_auth=True)) as qm:
        anonymous = client_settings(qm.address, reconnect_timeout=0, **pki.client())
        async with AsyncClient(settings=anonymous) as client:
            with pytest.raises(Unavailable):
                await asyncio.wait_for(client.create_session(app_id="no-cert"), 20)
        signed = client_settings(
            qm.address,
            **pki.client(tls_cert=str(pki.client_cert), tls_key=str(pki.client_key)),
        )
        async with AsyncClient(settings=signed) as client, client.session(app_id="m") as s:
            assert s.id


@pytest.mark.parametrize(
    ("server_tls", "client_tls"),
    [
        pytest.param(True, "plaintext", id="plaintext-client-tls-server"),
        pytest.param(True, "wrong-ca", id="client-with-another-ca"),
        pytest.param(False, "right-ca", id="tls-client-plaintext-server"),
    ],
)
async def test_mismatched_tls_fails_fast_with_unavailable(
    pki: Pki, server_tls: bool, client_tls: str
):
    """A client whose TLS does not match the server's gets Unavailable at once, never a hang."""
    server = pki.server() if server_tls else {}
    client_extra = {
        "plaintext": {},
        "wrong-ca": pki.client(ca_cert=str(pki.other_ca_cert)),
        "right-ca": pki.client(),
    }[client_tls]
    async with running_queue_manager(api_key=KEY, **server) as qm:
        cs = client_settings(qm.address, reconnect_timeout=0, **client_extra)
        async with AsyncClient(settings=cs) as client:
            with pytest.raises(Unavailable) as info:
                await asyncio.wait_for(client.create_session(app_id="bad"), 20)
    if client_tls == "wrong-ca":
        assert (
            "CERTIFICATE_VERIFY_FAILED" in str(info.value) or "handshake" in str(info.value).lower()
        )


async def test_node_agent_unix_socket_stays_plaintext_under_tls(pki: Pki, tmp_path: Path):
    """With tls, a worker reads shared data over the node agent's Unix socket in plaintext."""
    sock = tmp_path / "na.sock"
    async with (
        running_queue_manager(api_key=KEY, **pki.server()) as qm,
        running_central_cache(api_key=KEY, **pki.server()) as cc,
        running_node_agent(cc.address, api_key=KEY, unix_socket=str(sock), **pki.server()) as na,
    ):
        worker = WorkerRunner(
            SharedEcho(),
            settings(qm.address, node_agent=f"unix:{sock}", central_cache=None, **pki.client()),
        )
        cs = client_settings(qm.address, central_cache=cc.address, **pki.client())
        async with (
            running(worker),
            AsyncClient(settings=cs) as client,
            client.session(app_id="tls-unix") as session,
        ):
            await session.set_shared_data(b"s", ttl=60)
            assert await (await session.submit(b"y")) == b"s:y"
        assert na.cache is not None
        assert na.cache.statistics().central_fetches == 1
