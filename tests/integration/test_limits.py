"""Quotas and paged listings on a real queue manager: the status a client sees at each bound.

Session and worker caps and dead-letter bounds answer RESOURCE_EXHAUSTED naming the setting;
label bytes INVALID_ARGUMENT naming the field. ListSessions and ListWorkers come in pages that
fit the message limit however large the grid, and every reader (the central cache's sweep of
closed sessions included) follows them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from alpcrun import proto
from alpcrun.cache.client import SharedDataClient
from alpcrun.queue_manager import admin
from alpcrun.testing import running_central_cache, running_queue_manager

from .checks import KEY, LIMIT, MD, Grid, eventually, qm_settings, with_session
from .wire import ManualWorker, call, method, start

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_error_logs")]
Code = grpc.StatusCode
CSR = proto.ClientStreamRequest
BIG_TAGS = [f"{i:02d}-" + "t" * 57 for i in range(64)]
"""64 tags of 60 characters: 3,840 bytes, under the default max_label_bytes of 4,096."""


@pytest.fixture
async def grid() -> AsyncIterator[Grid]:
    settings = qm_settings(max_sessions=400, max_registered_workers=80, max_label_bytes=16_384)
    async with running_queue_manager(**settings) as qm:
        async with grpc.aio.insecure_channel(qm.address) as channel:
            yield Grid(channel, MD)


def registration(**labels: str) -> proto.WorkerStatus:
    reg = proto.WorkerRegistration(node="n", pod="p", labels=labels, concurrency=1)
    return proto.WorkerStatus(register=reg)


async def sessions_in_pages(
    grid: Grid, request: proto.ListSessionsRequest
) -> list[proto.ListSessionsResponse]:
    pages = []
    while True:
        page = await grid.admin.ListSessions(request, metadata=MD)
        pages.append(page)
        if not page.next_page_token:
            return pages
        request.page_token = page.next_page_token


# ---------------------------------------------------------------------- quotas
async def test_create_session_past_max_sessions_is_resource_exhausted_naming_it() -> None:
    """The session cap answers RESOURCE_EXHAUSTED naming max_sessions; closing frees nothing
    until the closed session is forgotten."""
    async with running_queue_manager(**qm_settings(max_sessions=3, session_retention=0.2)) as qm:
        async with grpc.aio.insecure_channel(qm.address) as channel:
            grid = Grid(channel, MD)
            first = await grid.create()
            await grid.create()
            await grid.create()
            request = proto.CreateSessionRequest(attributes=proto.SessionAttributes(app_id="a"))
            refused = await call(channel, method("CreateSession"), [request], MD)
            assert refused.code == Code.RESOURCE_EXHAUSTED, refused
            assert "max_sessions" in refused.details
            await grid.close(first)

            async def created() -> None:  # once the closed one is forgotten
                outcome = await call(channel, method("CreateSession"), [request], MD)
                assert outcome.code == Code.OK, outcome

            await eventually(created)


async def test_registration_past_max_registered_workers_is_resource_exhausted(
    grid: Grid,
) -> None:
    """The 81st worker is refused with RESOURCE_EXHAUSTED naming max_registered_workers."""
    workers = [ManualWorker(grid.channel, MD) for _ in range(80)]
    await asyncio.gather(*(w.register() for w in workers))
    refused = await call(grid.channel, method("WorkerUpdate"), [registration()], MD)
    assert refused.code == Code.RESOURCE_EXHAUSTED, refused
    assert "max_registered_workers" in refused.details
    await workers[0].stop()

    async def registers() -> None:  # once the stopped one is forgotten
        late = ManualWorker(grid.channel, MD)
        await late.register()
        await late.stop()

    await eventually(registers)
    await asyncio.gather(*(w.stop() for w in workers))


async def test_labels_and_tags_over_max_label_bytes_are_invalid_argument_naming_the_field() -> None:
    """Tags or worker labels past max_label_bytes (UTF-8, keys and values) are refused."""
    async with running_queue_manager(**qm_settings(max_label_bytes=1024)) as qm:
        async with grpc.aio.insecure_channel(qm.address) as channel:
            tags = proto.SessionAttributes(app_id="a", tags=["é" * 100] * 6)  # 1,200 bytes
            refused = await call(
                channel,
                method("CreateSession"),
                [proto.CreateSessionRequest(attributes=tags)],
                MD,
            )
            assert (refused.code, refused.field) == (Code.INVALID_ARGUMENT, "attributes.tags")
            labels = {f"k{i}": "v" * 120 for i in range(10)}
            refused = await call(channel, method("WorkerUpdate"), [registration(**labels)], MD)
            assert (refused.code, refused.field) == (Code.INVALID_ARGUMENT, "register.labels")


async def test_a_session_full_of_dead_letters_refuses_new_batches() -> None:
    """Past max_dead_letter_bytes the client stream ends RESOURCE_EXHAUSTED naming the bound,
    and every letter is kept."""
    settings = qm_settings(max_dead_letter_bytes=64 * 1024)
    async with running_queue_manager(**settings) as qm:
        async with grpc.aio.insecure_channel(qm.address) as channel:
            grid = Grid(channel, MD)
            sid = await grid.create(max_attempts=1)
            batch = proto.Batch(
                id="b1", tasks=[proto.Task(id=f"t{i}", payload=b"x" * 40_000) for i in range(2)]
            )
            submit = start(
                channel,
                method("ClientStream"),
                [CSR(batch=batch)],
                with_session(sid),
                half_close=False,
                timeout=None,
            )
            worker = ManualWorker(channel, MD)
            await worker.register()
            assert await worker.bound() == sid
            worker.open_stream(sid)
            dispatched = await worker.next_batch()
            failed = proto.Batch(id=dispatched.id, dispatch_id=dispatched.dispatch_id)
            for task in dispatched.tasks:
                failed.tasks.add(id=task.id).error.message = "boom"
            worker.send(failed)

            async def dead() -> None:
                assert (await grid.info(sid)).stats.dead_letters == 2

            await eventually(dead)
            submit.cancel()
            more = CSR(batch=proto.Batch(id="b2", tasks=[proto.Task(id="t9", payload=b"y")]))
            refused = await call(channel, method("ClientStream"), [more], with_session(sid))
            assert refused.code == Code.RESOURCE_EXHAUSTED, refused
            assert "max_dead_letter_bytes" in refused.details
            info = await grid.info(sid)
            assert (info.stats.dead_letters, info.stats.submitted_tasks) == (2, 2)
            assert info.stats.dead_letter_bytes > 64 * 1024
            await worker.stop()


# ---------------------------------------------------------------------- paged listings
async def test_list_sessions_comes_in_pages_that_fit_the_message_limit(grid: Grid) -> None:
    """300 sessions with 3.8 KB of tags (over the 1 MiB message limit together) list in pages
    of at most half the limit, each once, in id order."""
    ids = [await grid.create(tags=BIG_TAGS) for _ in range(300)]
    pages = await sessions_in_pages(grid, proto.ListSessionsRequest())
    assert len(pages) > 2
    assert all(page.ByteSize() <= LIMIT // 2 + 1024 for page in pages)
    listed = [info.session.id for page in pages for info in page.sessions]
    assert listed == sorted(ids)
    small = await sessions_in_pages(grid, proto.ListSessionsRequest(page_size=7))
    assert [len(p.sessions) for p in small[:-1]] == [7] * (len(small) - 1)
    assert [i.session.id for p in small for i in p.sessions] == sorted(ids)


async def test_list_sessions_default_page_and_bad_page_requests() -> None:
    """No page size: 500 and a token (old clients get a bounded answer); over 5,000 or a
    token longer than an id is INVALID_ARGUMENT naming the field."""
    async with running_queue_manager(**qm_settings()) as qm:
        async with grpc.aio.insecure_channel(qm.address) as channel:
            grid = Grid(channel, MD)
            ids = await asyncio.gather(*(grid.create() for _ in range(520)))
            first = await grid.admin.ListSessions(proto.ListSessionsRequest(), metadata=MD)
            assert len(first.sessions) == admin.DEFAULT_LIST_PAGE
            assert first.next_page_token == sorted(ids)[admin.DEFAULT_LIST_PAGE - 1]
            for request, field in (
                (proto.ListSessionsRequest(page_size=5001), "page_size"),
                (proto.ListSessionsRequest(page_token="x" * 129), "page_token"),
            ):
                refused = await call(channel, method("ListSessions"), [request], MD)
                assert (refused.code, refused.field) == (Code.INVALID_ARGUMENT, field)


async def test_a_filtered_listing_looks_at_a_bounded_number_of_sessions_per_page(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages stop after MAX_SCANNED sessions looked at; following them finds every match."""
    monkeypatch.setattr(admin, "MAX_SCANNED", 10)
    ids = [await grid.create(tags=["wanted"] if i % 9 == 0 else []) for i in range(40)]
    pages = await sessions_in_pages(grid, proto.ListSessionsRequest(tags=["wanted"]))
    assert len(pages) >= 4
    found = [info.session.id for page in pages for info in page.sessions]
    assert found == [sid for i, sid in enumerate(ids) if i % 9 == 0]


async def test_list_workers_comes_in_pages_that_fit_the_message_limit(grid: Grid) -> None:
    """70 workers with 16 KB of labels (over the 1 MiB limit together) list page by page."""
    labels = {f"{i:02d}" + "k" * 126: "v" * 128 for i in range(64)}
    workers = [ManualWorker(grid.channel, MD, labels=labels) for _ in range(70)]
    ids = await asyncio.gather(*(w.register() for w in workers))
    request = proto.ListWorkersRequest()
    pages = []
    while True:
        page = await grid.admin.ListWorkers(request, metadata=MD)
        pages.append(page)
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert len(pages) > 2
    assert all(page.ByteSize() <= LIMIT // 2 + 1024 for page in pages)
    assert [w.id for page in pages for w in page.workers] == sorted(ids)
    await asyncio.gather(*(w.stop() for w in workers))


async def test_the_central_cache_drops_closed_sessions_past_the_first_listing_page() -> None:
    """A closed session listed on a later page still has its shared data deleted."""
    async with (
        running_queue_manager(**qm_settings()) as qm,
        running_central_cache(queue_manager=qm.address, api_key=KEY) as cc,
        grpc.aio.insecure_channel(qm.address) as channel,
        grpc.aio.insecure_channel(cc.address) as cache_channel,
    ):
        grid = Grid(channel, MD)
        ids = await asyncio.gather(*(grid.create() for _ in range(admin.DEFAULT_LIST_PAGE + 20)))
        last = max(ids)  # listed on the second page
        shared = SharedDataClient(cache_channel, api_key=KEY)
        await shared.set(last, b"data")
        assert await cc.drop_closed_sessions() == 0
        await grid.close(last)
        assert await cc.drop_closed_sessions() == 1
        assert cc.store.sessions() == []
