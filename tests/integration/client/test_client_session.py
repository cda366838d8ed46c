"""AsyncClient / AsyncSession against the in-process fake Queue server."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from alpcrun.client import AsyncClient, Progress, TaskHandle
from alpcrun.config import ClientSettings
from alpcrun.errors import (
    PermissionDenied,
    ReconnectFailed,
    SessionClosed,
    SessionError,
    SessionNotFound,
    TaskFailed,
    Unauthenticated,
    Unavailable,
)
from alpcrun.proto import QueueType, SessionState, Task

pytestmark = pytest.mark.integration


async def test_submit_and_await(client):
    """A submitted task's handle resolves to the server's output."""
    async with client.session(app_id="demo") as session:
        handle = await session.submit(b"hello")
        assert isinstance(handle, TaskHandle)
        assert await handle == b"olleh"
        assert handle.done()
        assert handle.result() == b"olleh"
        assert handle.task_id.startswith(handle.task_id.split("-")[0] + "-")


async def test_session_lifecycle_calls(client, fake):
    """session() creates the session on enter and closes it on exit, with resolved attributes."""
    async with client.session(app_id="demo", max_workers=4, queue_type="fifo") as session:
        assert session.id in fake.sessions
        assert session.attributes.app_id == "demo"
        assert session.attributes.priority == 5  # filled in by the server
        assert session.attributes.queue_type == QueueType.QUEUE_TYPE_FIFO
    assert fake.sessions[session.id].closed.is_set()
    assert session.state == SessionState.SESSION_STATE_CLOSED
    with pytest.raises(SessionClosed):
        await session.submit(b"late")


async def test_session_closed_even_when_body_raises(client, fake):
    """The session context manager closes the session when its body raised."""
    with pytest.raises(KeyError):
        async with client.session(app_id="demo") as session:
            raise KeyError("body")
    assert fake.sessions[session.id].closed.is_set()


async def test_map_completion_order(client):
    """map yields every result once; by default in completion order."""
    payloads = [f"p{i}".encode() for i in range(50)]
    async with client.session(app_id="demo") as session:
        results = [r async for r in session.map(payloads)]
    assert sorted(r.index for r in results) == list(range(50))
    assert all(r.ok and r.payload == payloads[r.index][::-1] for r in results)
    assert [r.index for r in results] != list(range(50))  # the fake answers in reverse


async def test_map_input_order(make_client):
    """map(ordered=True) yields in input order across many batches."""
    client = make_client(max_batch_tasks=7)
    payloads = [f"p{i}".encode() for i in range(100)]
    async with client.session(app_id="demo") as session:
        results = [r async for r in session.map(payloads, ordered=True)]
    assert [r.index for r in results] == list(range(100))
    assert [r.value() for r in results] == [p[::-1] for p in payloads]


async def test_map_over_async_generator(client):
    """map accepts an async iterable of payloads."""

    async def gen():
        for i in range(30):
            if i % 10 == 0:
                await asyncio.sleep(0.001)
            yield str(i).encode()

    async with client.session(app_id="demo") as session:
        results = {r.index: r.payload async for r in session.map(gen())}
    assert results == {i: str(i).encode()[::-1] for i in range(30)}


async def test_map_of_nothing(client):
    """map over an empty input ends at once."""
    async with client.session(app_id="demo") as session:
        assert [r async for r in session.map([])] == []


async def test_map_input_error_is_raised(client):
    """An exception from the input iterable ends the map with that exception."""

    def gen():
        yield b"a"
        raise LookupError("input broke")

    async with client.session(app_id="demo") as session:
        with pytest.raises(LookupError, match="input broke"):
            _ = [r async for r in session.map(gen())]
        with pytest.raises(TypeError, match="bytes"):
            _ = [r async for r in session.map(["text"])]


async def test_failed_task_raises_task_failed(client):
    """A dead-lettered task makes its handle raise TaskFailed with reason and type."""
    async with client.session(app_id="demo") as session:
        handle = await session.submit(b"boom")
        with pytest.raises(TaskFailed, match="boom!") as info:
            await handle
    assert info.value.task_id == handle.task_id
    assert info.value.reason == "non_retryable"
    assert info.value.error_type == "ValueError"


async def test_failed_tasks_in_map_and_dead_letters(client):
    """In a map a failed task is a result with error set; dead_letters() lists it."""
    payloads = [b"ok1", b"boom", b"ok2", b"boom"]
    async with client.session(app_id="demo") as session:
        results = sorted([r async for r in session.map(payloads)], key=lambda r: r.index)
        assert [r.ok for r in results] == [True, False, True, False]
        assert results[1].error is not None
        assert results[1].error.message == "boom!"
        with pytest.raises(TaskFailed):
            results[3].value()
        dead = await session.dead_letters()
        stats = session.statistics()
    assert sorted(r.task_id for r in dead) == sorted([results[1].task_id, results[3].task_id])
    assert all(r.error is not None and r.index == -1 for r in dead)
    assert (stats.submitted, stats.completed, stats.failed, stats.pending) == (4, 2, 2, 0)


async def test_progress_final_call(client):
    """The progress callback's last call carries the final counts."""
    calls: list[Progress] = []
    payloads = [b"boom" if i % 100 == 0 else b"x" for i in range(2500)]
    async with client.session(app_id="demo") as session:
        n = 0
        async for _ in session.map(payloads, progress=calls.append):
            n += 1
    assert n == 2500
    assert calls[-1] == Progress(submitted=2500, completed=2475, failed=25)
    assert len(calls) < 50  # rate-limited, not one call per chunk


async def test_api_key_and_session_metadata(client, fake):
    """Every call carries api_key; the client stream also carries sessionid."""
    async with client.session(app_id="demo") as session:
        await (await session.submit(b"x"))
        await session.update(priority=7)
    for name in ("CreateSession", "ClientStream", "UpdateSession", "CloseSession"):
        assert [md.get("api_key") for md in fake.metadata_of(name)] == ["k"], name
    assert fake.metadata_of("ClientStream")[0]["sessionid"] == session.id


async def test_auth_errors_map_to_domain_errors(make_client, fake):
    """A missing or wrong key raises Unauthenticated / PermissionDenied."""
    fake.api_key = "secret"
    with pytest.raises(Unauthenticated):
        await make_client(api_key=None).create_session(app_id="a")
    with pytest.raises(PermissionDenied):
        await make_client(api_key="nope").create_session(app_id="a")


async def test_update_refreshes_attributes(client, fake):
    """update() sends only the given attributes and refreshes session.attributes."""
    async with client.session(app_id="demo", tags=["a"]) as session:
        assert await session.update(priority=7, tags=["b", "c"]) is None
        assert session.attributes.priority == 7
        assert list(session.attributes.tags) == ["b", "c"]
        sent = fake.update_requests[-1].attributes
        assert sent.HasField("priority")
        assert not sent.HasField("app_id")
        assert sent.replace_tags
        with pytest.raises(TypeError):
            await session.update(colour="red")


async def test_unknown_kwarg_rejected_before_any_call(client, fake):
    """An unknown session attribute raises TypeError without calling the server."""
    with pytest.raises(TypeError, match="bogus"):
        await client.create_session(app_id="a", bogus=1)
    assert fake.metadata_of("CreateSession") == []


async def test_close_fails_pending_handles(client, fake):
    """close() fails handles still waiting with SessionClosed."""
    fake.withhold = True
    session = await client.create_session(app_id="demo")
    handle = await session.submit(b"never")
    await session.flush()
    await session.close()
    with pytest.raises(SessionClosed):
        await handle
    await session.close()  # idempotent


async def test_stream_error_fails_pending(make_client):
    """With reconnects disabled, a stream that fails fails pending handles at once."""
    client = make_client(reconnect_timeout=0)
    async with client.session(app_id="demo") as session:
        handle = await session.submit(b"kill")
        with pytest.raises(ReconnectFailed, match="reconnect_timeout=0") as caught:
            await handle
        assert isinstance(caught.value, Unavailable)
        assert isinstance(caught.value.__cause__, Unavailable)
        assert session.statistics().reconnects == 0
        # The next submit opens a fresh stream.
        assert await (await session.submit(b"ab")) == b"ba"


async def test_a_repeated_result_reaches_its_handle_once(client, fake):
    """A task answered twice in its own batch is delivered once; the repeat is counted."""
    fake.repeat_as = ""
    async with client.session(app_id="demo") as session:
        handles = [await session.submit(b"%d" % i) for i in range(3)]
        assert [await h for h in handles] == [b"0", b"1", b"2"]
        await until_stats(session, lambda s: s.duplicate_tasks == 3)
        stats = session.statistics()
        assert (stats.completed, stats.duplicate_messages) == (3, 0)
        assert await session.unclaimed_results() == []


async def test_a_result_in_a_foreign_batch_is_unclaimed_not_dropped(client, fake):
    """A second result for a task under another batch id (a resubmitted dead letter) is kept
    for unclaimed_results()."""
    fake.repeat_as = "resubmit-1"
    async with client.session(app_id="demo") as session:
        handle = await session.submit(b"ab")
        assert await handle == b"ba"
        again = await session.unclaimed_results(wait=5)
        assert [(r.task_id, r.payload) for r in again] == [(handle.task_id, b"ba")]
        assert session.statistics().duplicate_tasks == 0


async def test_idempotent_calls_are_sent_again_after_unavailable(client, fake):
    """UpdateSession, GetSession and CloseSession failing with UNAVAILABLE are sent again."""
    fake.unavailable = {"UpdateSession": 2, "GetSession": 1, "CloseSession": 1}
    session = await client.create_session(app_id="demo")
    await session.update(priority=8)
    assert session.attributes.priority == 8
    again = await client.attach_session(session.id)
    await again.close()
    calls = [name for name, _ in fake.calls if name != "ClientStream"]
    assert calls.count("UpdateSession") == 3
    assert calls.count("GetSession") == 2
    assert calls.count("CloseSession") == 2
    assert fake.sessions[session.id].closed.is_set()


async def test_create_session_is_not_sent_twice(client, fake):
    """A CreateSession that fails once received is not sent again: Unavailable, one call."""
    fake.unavailable = {"CreateSession": 1}
    with pytest.raises(Unavailable) as caught:
        await client.create_session(app_id="demo")
    assert not isinstance(caught.value, ReconnectFailed)
    assert [name for name, _ in fake.calls] == ["CreateSession"]
    assert (await client.create_session(app_id="demo")).id in fake.sessions


async def until_stats(session, predicate, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not predicate(session.statistics()):  # noqa: ASYNC110 - counters have no event
            await asyncio.sleep(0.01)


async def test_stream_that_keeps_failing_is_given_up(make_client, fake):
    """A batch that kills every stream is resent on each reconnect until reconnect_timeout."""
    client = make_client(reconnect_timeout=0.6)
    async with client.session(app_id="demo") as session:
        start = asyncio.get_running_loop().time()
        handle = await session.submit(b"kill")
        with pytest.raises(ReconnectFailed, match=r"within reconnect_timeout=0\.6s"):
            await handle
        elapsed = asyncio.get_running_loop().time() - start
        assert 0.5 <= elapsed < 3.0
        reconnects = session.statistics().reconnects
        assert reconnects >= 2
        # Every reconnect sent the unanswered batch again, under its original id.
        kill_batches = [batch_id for _, batch_id, n, _ in fake.batches]
        assert len(kill_batches) == reconnects + 1
        assert len(set(kill_batches)) == 1


async def test_detach_and_attach(client, make_client, fake):
    """detach() leaves the session open; attach_session() re-attaches and gets buffered results."""
    session = await client.create_session(app_id="demo")
    fake.withhold = True
    handle = await session.submit(b"x")
    await session.flush()
    await session.detach()
    assert not fake.sessions[session.id].closed.is_set()
    with pytest.raises(SessionError):
        await handle
    fake.sessions[session.id].preload = [Task(id="old-1", payload=b"buffered")]
    other = await make_client().attach_session(session.id)
    results = await other.unclaimed_results(wait=5)
    assert [(r.task_id, r.payload, r.index) for r in results] == [("old-1", b"buffered", -1)]
    fake.withhold = False
    assert await (await other.submit(b"yz")) == b"zy"
    await other.close()
    with pytest.raises(SessionNotFound):
        await client.attach_session("nope")


async def test_client_from_address_overrides_settings(fake):
    """address and api_key arguments override the settings."""
    settings = ClientSettings(queue_manager="127.0.0.1:1", api_key=SecretStr("old"))
    async with AsyncClient(fake.address, api_key="k", settings=settings) as client:
        assert client.settings.queue_manager == fake.address
        session = await client.create_session(app_id="demo")
        assert await (await session.submit(b"ab")) == b"ba"
    # close() detached the session without closing it.
    assert not fake.sessions[session.id].closed.is_set()
    assert fake.metadata_of("CreateSession")[0]["api_key"] == "k"
