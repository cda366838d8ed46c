"""The blocking Client / Session twins against the fake Queue server.

The fake server runs on the test's event loop, so each blocking scenario runs in a worker
thread (``asyncio.to_thread``) while the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from alpcrun.client import Client, Progress, Session
from alpcrun.config import ClientSettings
from alpcrun.errors import SessionClosed, TaskFailed

pytestmark = pytest.mark.integration


def make_sync(fake, **settings) -> Client:
    return Client(api_key="k", settings=ClientSettings(queue_manager=fake.address, **settings))


async def test_sync_submit_and_map(fake):
    """Client.session() works blocking: submit futures and a map iterator."""

    def scenario():
        with make_sync(fake) as client, client.session(app_id="demo") as session:
            assert isinstance(session, Session)
            future = session.submit(b"abc")
            assert isinstance(future, concurrent.futures.Future)
            assert future.result(timeout=5) == b"cba"
            with pytest.raises(TaskFailed):
                session.submit(b"boom").result(timeout=5)
            calls: list[Progress] = []
            results = list(
                session.map([str(i).encode() for i in range(3000)], progress=calls.append)
            )
            ordered = list(session.map([b"a", b"b", b"c"], ordered=True))
            return session, results, ordered, calls

    session, results, ordered, calls = await asyncio.to_thread(scenario)
    assert sorted(r.index for r in results) == list(range(3000))
    assert all(r.value() == str(r.index).encode()[::-1] for r in results)
    assert [r.payload for r in ordered] == [b"a", b"b", b"c"]
    assert calls[-1] == Progress(submitted=3000, completed=3000, failed=0)
    assert fake.sessions[session.id].closed.is_set()


async def test_sync_map_early_break_and_close(fake):
    """Breaking out of a sync map cancels it; close() fails pending futures."""

    def scenario():
        client = make_sync(fake, max_batch_tasks=10)
        try:
            session = client.create_session(app_id="demo")
            for result in session.map(b"x" for _ in range(100_000)):
                assert result.ok
                break
            fake.withhold = True
            future = session.submit(b"never")
            session.flush()
            session.close()
            with pytest.raises(SessionClosed):
                future.result(timeout=5)
            stats = session.statistics()
        finally:
            client.close()
        return stats

    stats = await asyncio.to_thread(scenario)
    assert stats.submitted < 1000
    assert not [t for t in threading.enumerate() if t.name == "alpcrun-client-loop"]


async def test_sync_attach_update_dead_letters(fake):
    """attach_session, update and dead_letters have blocking twins."""

    def scenario():
        with make_sync(fake) as client:
            session = client.create_session(app_id="demo")
            assert session.submit(b"ok").result(timeout=5) == b"ko"
            with pytest.raises(TaskFailed):
                session.submit(b"boom").result(timeout=5)
            session.update(max_workers=3)
            assert session.attributes.max_workers == 3
            session.detach()
            again = client.attach_session(session.id)
            dead = again.dead_letters()
            again.close()
            return dead

    dead = await asyncio.to_thread(scenario)
    assert len(dead) == 1
    assert dead[0].error is not None
