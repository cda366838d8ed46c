"""The central cache stores shared data only for sessions its queue manager reports open."""

from __future__ import annotations

import asyncio

import pytest

from alpcrun.cache.client import SharedDataClient
from alpcrun.client import AsyncClient
from alpcrun.errors import SessionNotFound, Unavailable
from alpcrun.proto.channel import insecure_channel
from alpcrun.testing import running_central_cache, running_queue_manager

pytestmark = pytest.mark.integration
KEY = "test-key"


def nothing_stored(cc) -> bool:
    st = cc.store.statistics()
    return (st.sessions, st.bytes_used, st.bytes_reserved) == (0, 0, 0)


async def test_unknown_session_is_not_found_and_nothing_is_stored():
    """Set and Update for an id the queue manager does not know are NOT_FOUND naming it."""
    async with (
        running_queue_manager(api_key=KEY) as qm,
        running_central_cache(queue_manager=qm.address) as cc,
        insecure_channel(cc.address) as ch,
    ):
        c = SharedDataClient(ch, api_key=KEY)
        with pytest.raises(SessionNotFound, match=r"header\.session_id.*'no-such-session'"):
            await c.set("no-such-session", b"x" * 4096)
        with pytest.raises(SessionNotFound, match="no-such-session"):
            await c.update("no-such-session", b"y", level=2)
        assert nothing_stored(cc)


async def test_open_session_is_stored_and_asked_about_once():
    """An open session's uploads succeed; the queue manager is asked once for all of them."""
    async with (
        running_queue_manager(api_key=KEY) as qm,
        running_central_cache(queue_manager=qm.address) as cc,
        AsyncClient(qm.address, api_key=KEY) as ac,
        insecure_channel(cc.address) as ch,
    ):
        session = await ac.create_session(app_id="shared")
        c = SharedDataClient(ch, api_key=KEY)
        assert await c.set(session.id, b"level one", ttl_s=30) == 30
        await asyncio.gather(c.get(session.id, 1), c.update(session.id, b"two", level=2))
        await c.update(session.id, b"level three", level=3)
        assert (await c.get(session.id, 3)).value == b"level three"
        assert cc.open_sessions is not None
        assert cc.open_sessions.statistics().lookups == 1


async def test_closed_session_is_not_found():
    """A session closed on the queue manager gets NOT_FOUND, also right after the poll."""
    async with (
        running_queue_manager(api_key=KEY) as qm,
        running_central_cache(queue_manager=qm.address) as cc,
        AsyncClient(qm.address, api_key=KEY) as ac,
        insecure_channel(cc.address) as ch,
    ):
        c = SharedDataClient(ch, api_key=KEY)
        closed_before = await ac.create_session(app_id="shared")
        await closed_before.close()
        with pytest.raises(SessionNotFound, match="is closed"):
            await c.set(closed_before.id, b"late")
        remembered = await ac.create_session(app_id="shared")
        await c.set(remembered.id, b"one")  # now remembered as open
        await remembered.close()
        await cc.drop_closed_sessions()  # deletes its data and forgets it
        with pytest.raises(SessionNotFound, match="is closed"):
            await c.set(remembered.id, b"again")
        assert nothing_stored(cc)


async def test_unreachable_queue_manager_is_unavailable_not_an_acceptance():
    """With the queue manager down, uploads fail UNAVAILABLE and nothing is stored."""
    async with (
        running_central_cache(queue_manager="127.0.0.1:1") as cc,  # nothing listens on 1
        insecure_channel(cc.address) as ch,
    ):
        with pytest.raises(Unavailable, match="cannot check session 's'"):
            await SharedDataClient(ch, api_key=KEY).set("s", b"x")
        assert nothing_stored(cc)
        metrics = {m.samples[0].name: m.samples[0].value for m in cc._collector().collect()}
        assert metrics["alpcrun_cache_session_check_failures_total"] == 1
        assert metrics["alpcrun_cache_session_refused_total"] == 0


async def test_standalone_central_cache_accepts_any_session():
    """Without a queue manager the central cache stores shared data under any id."""
    async with running_central_cache() as cc, insecure_channel(cc.address) as ch:
        await SharedDataClient(ch, api_key=KEY).set("any-id", b"x")
        assert cc.open_sessions is None
        assert cc.store.sessions() == ["any-id"]
