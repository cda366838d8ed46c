"""OpenSessions: the central cache's memory of open sessions, against a scripted lookup."""

import asyncio

import pytest

from alpcrun.cache.sessions import OpenSessions
from alpcrun.errors import InvalidArgument, SessionNotFound, Unavailable
from alpcrun.testing import FakeClock


class FakeQueueManager:
    """Answers lookups from a dict of session -> open?; unknown ids are SessionNotFound."""

    def __init__(self, sessions, failure=None):
        self.sessions = sessions
        self.failure = failure
        self.asked = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, session_id):
        self.asked.append(session_id)
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        if session_id not in self.sessions:
            raise SessionNotFound(f"session {session_id!r} not found")
        return self.sessions[session_id]


def make(qm, remember_s=5.0, **kw):
    clock = FakeClock()
    return OpenSessions(qm, clock=clock, remember_s=remember_s, **kw), clock


async def test_open_session_is_asked_once_per_period():
    """An open session passes and is remembered for remember_s, then asked again."""
    qm = FakeQueueManager({"a": True})
    gate, clock = make(qm)
    for _ in range(3):
        await gate.check("a")
    assert qm.asked == ["a"]
    clock.advance(5.0)
    await gate.check("a")
    assert qm.asked == ["a", "a"]
    assert gate.statistics().lookups == 2


async def test_unknown_and_closed_sessions_are_not_found_naming_the_session():
    """Unknown and closed sessions are NOT_FOUND naming header.session_id, never remembered."""
    qm = FakeQueueManager({"closed": False})
    gate, _clock = make(qm)
    with pytest.raises(SessionNotFound, match=r"'ghost'.*unknown") as unknown:
        await gate.check("ghost")
    assert unknown.value.field == "header.session_id"
    with pytest.raises(SessionNotFound, match=r"'closed' is closed") as closed:
        await gate.check("closed")
    assert closed.value.field == "header.session_id"
    with pytest.raises(SessionNotFound):
        await gate.check("closed")
    assert qm.asked == ["ghost", "closed", "closed"]
    assert gate.statistics().refused == 3
    assert gate.statistics().remembered == 0


async def test_an_id_the_queue_manager_rejects_is_not_found():
    """An id the queue manager calls invalid is as unknown as any other."""
    gate, _clock = make(FakeQueueManager({}, failure=InvalidArgument("too long")))
    with pytest.raises(SessionNotFound):
        await gate.check("x" * 1000)


async def test_unreachable_queue_manager_is_unavailable_and_next_check_asks_again():
    """A failed lookup is Unavailable (not an acceptance), and is not remembered."""
    qm = FakeQueueManager({"a": True}, failure=Unavailable("connection refused"))
    gate, _clock = make(qm)
    with pytest.raises(Unavailable, match="cannot check session 'a'"):
        await gate.check("a")
    qm.failure = None
    await gate.check("a")
    assert qm.asked == ["a", "a"]
    assert gate.statistics().failures == 1


async def test_concurrent_first_checks_share_one_lookup():
    """N concurrent checks of a session not yet remembered ask the queue manager once."""
    qm = FakeQueueManager({"a": True})
    qm.gate.clear()
    gate, _clock = make(qm)
    checks = [asyncio.create_task(gate.check("a")) for _ in range(8)]
    await asyncio.sleep(0)
    qm.gate.set()
    await asyncio.gather(*checks)
    assert qm.asked == ["a"]


async def test_forget_makes_the_next_check_ask_again():
    """A session reported closed by the poll is forgotten, so its next upload is refused."""
    qm = FakeQueueManager({"a": True})
    gate, _clock = make(qm)
    await gate.check("a")
    qm.sessions["a"] = False
    gate.forget("a")
    with pytest.raises(SessionNotFound):
        await gate.check("a")


async def test_memory_is_bounded_oldest_forgotten_first():
    """Beyond max_remembered, expired entries go first, then the oldest live ones."""
    qm = FakeQueueManager(dict.fromkeys("abcd", True))
    gate, clock = make(qm, max_remembered=2)
    await gate.check("a")
    clock.advance(1.0)
    await gate.check("b")
    await gate.check("c")  # "a" is the oldest: forgotten
    assert gate.statistics().remembered == 2
    await gate.check("b")
    await gate.check("a")
    assert qm.asked == ["a", "b", "c", "a"]
