"""The dead-letter API of the client SDK against a real queue manager and an in-process worker.

A :class:`Flaky` worker fails chosen payloads (``never:...`` for good, ``boom:...`` retryably)
until it is healed, and counts the attempts it ran per task id, so the tests can prove how
often a resubmitted task ran.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from alpcrun.client import (
    AsyncClient,
    AsyncDeadLetters,
    AsyncSession,
    Client,
    DeadLetterOutcome,
    DeadLetters,
    TaskResult,
)
from alpcrun.config import WorkerSettings
from alpcrun.errors import (
    InvalidArgument,
    NotFound,
    SessionClosed,
    SessionError,
    SessionNotFound,
)
from alpcrun.testing import running_queue_manager
from workers_sdk import NonRetryableError, TaskContext, Worker, WorkerRunner

pytestmark = pytest.mark.integration
KEY = "dlq-key"


class Flaky(Worker):
    """Uppercases payloads; until healed, b"never:..." fails for good and b"boom:..." retryably."""

    def __init__(self) -> None:
        self.healed = False
        self.runs: Counter[str] = Counter()

    async def handle(self, task: TaskContext) -> bytes:
        self.runs[task.task_id] += 1
        if not self.healed and task.payload.startswith(b"never:"):
            raise NonRetryableError(f"cannot ever handle {task.payload.decode()}")
        if not self.healed and task.payload.startswith(b"boom:"):
            raise ValueError(f"cannot handle {task.payload.decode()} yet")
        return task.payload.upper()


@dataclass
class Grid:
    address: str
    worker: Flaky

    def client(self) -> AsyncClient:
        return AsyncClient(self.address, api_key=KEY)


@pytest.fixture
async def grid() -> AsyncIterator[Grid]:
    async with running_queue_manager(api_key=KEY) as qm:
        worker = Flaky()
        settings = WorkerSettings(
            queue_manager=qm.address,
            api_key=KEY,  # type: ignore[arg-type]
            concurrency=2,
            reconnect_delay=0.05,
            drain_timeout=5.0,
        )
        runner = WorkerRunner(worker, settings)
        task = asyncio.create_task(runner.run())
        try:
            yield Grid(qm.address, worker)
        finally:
            runner.request_stop()
            await asyncio.wait_for(task, 15)


async def run_tasks(
    client: AsyncClient, payloads: Sequence[bytes], max_attempts: int
) -> tuple[AsyncSession, dict[bytes, TaskResult]]:
    """Open a session, run one task per payload, return the results by payload."""
    session = await client.create_session(app_id="dlq", max_attempts=max_attempts)
    results = {payloads[r.index]: r async for r in session.map(payloads)}
    return session, results


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    """Poll ``check`` until it is true."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - queue manager state has no event to await
            await asyncio.sleep(0.02)


async def test_list_pages_through_every_letter_oldest_first(grid: Grid) -> None:
    """Pages of 3 cover all 7 letters once, in the full list's order; payloads only when asked."""
    payloads = [f"never:{i}".encode() for i in range(7)] + [b"fine"]
    async with grid.client() as client:
        session, results = await run_tasks(client, payloads, max_attempts=1)
        dlq = session.dead_letter_queue
        everything = await dlq.list()
        pages = [page async for page in dlq.pages(page_size=3)]
        manual = await dlq.list(limit=3, after=pages[0].next_after)
        with_payload = await dlq.list(include_payload=True)
        snapshot = await session.dead_letters()

    failed = {results[p].task_id for p in payloads[:7]}
    assert results[b"fine"].ok
    order = [letter.task_id for letter in everything.letters]
    assert set(order) == failed
    assert (everything.total, everything.next_after) == (7, "")
    assert [len(page.letters) for page in pages] == [3, 3, 1]
    assert [letter.task_id for page in pages for letter in page.letters] == order
    assert [page.next_after for page in pages] == [order[2], order[5], ""]
    assert {page.total for page in pages} == {7}
    assert manual == pages[1]
    assert {letter.payload for letter in everything.letters} == {None}
    assert {letter.task_id: letter.payload for letter in with_payload.letters} == {
        results[p].task_id: p for p in payloads[:7]
    }
    assert {(letter.reason, letter.attempts) for letter in everything.letters} == {
        ("non_retryable", 1)
    }
    assert {r.task_id for r in snapshot} == failed  # the one-call snapshot still works


async def test_get_returns_payload_reason_type_and_attempts(grid: Grid) -> None:
    """A NonRetryableError letter says non_retryable after 1 attempt; a ValueError one, error."""
    before = datetime.now(UTC)
    async with grid.client() as client:
        session, results = await run_tasks(client, [b"never:x", b"boom:y", b"ok"], max_attempts=2)
        dlq = session.dead_letter_queue
        never = await dlq.get(results[b"never:x"].task_id)
        boom = await dlq.get(results[b"boom:y"].task_id)
        listed = {letter.task_id: letter for letter in (await dlq.list()).letters}
    after = datetime.now(UTC)

    assert results[b"ok"].payload == b"OK"
    assert never.session_id == session.id
    assert (never.reason, never.error_type, never.attempts) == (
        "non_retryable",
        "NonRetryableError",
        1,
    )
    assert never.message == "cannot ever handle never:x"
    assert never.payload == b"never:x"
    assert (boom.reason, boom.error_type, boom.attempts) == ("error", "ValueError", 2)
    assert boom.message == "cannot handle boom:y yet"
    assert boom.payload == b"boom:y"
    assert grid.worker.runs[never.task_id] == 1
    assert grid.worker.runs[boom.task_id] == 2
    for letter in (never, boom):
        assert letter.batch_id
        assert before - timedelta(seconds=1) <= letter.dead_at <= after + timedelta(seconds=1)
        # list() without payloads describes the same letter
        assert listed[letter.task_id].batch_id == letter.batch_id
        assert listed[letter.task_id].dead_at == letter.dead_at


async def test_resubmit_with_reset_delivers_new_results_to_the_attached_client(grid: Grid) -> None:
    """Resubmitted by id from another client, healed tasks run again; their results arrive."""
    payloads = [b"boom:1", b"boom:2", b"boom:3", b"ok"]
    async with grid.client() as first:
        session, results = await run_tasks(first, payloads, max_attempts=2)
        session_id = session.id
    # The submitting client detached; the application attaches again to collect results.
    ids = {results[p].task_id: p for p in payloads[:3]}
    chosen = sorted(ids)[:2]
    grid.worker.healed = True
    async with grid.client() as app, grid.client() as operator:
        attached = await app.attach_session(session_id)
        dlq = AsyncDeadLetters.for_session(operator, session_id)
        outcome = await dlq.resubmit(chosen, reset_attempts=True)
        arrived: dict[str, TaskResult] = {}
        async with asyncio.timeout(15):
            while len(arrived) < len(chosen):
                for r in await attached.unclaimed_results(wait=None):
                    arrived[r.task_id] = r
        left = await attached.dead_letter_queue.list()

    assert outcome == DeadLetterOutcome(2, ())
    assert sorted(arrived) == chosen
    assert all(arrived[t].payload == ids[t].upper() for t in chosen)
    assert [letter.task_id for letter in left.letters] == sorted(ids)[2:]
    assert all(grid.worker.runs[t] == 3 for t in chosen)  # 2 failed attempts, then 1 good


async def test_the_submitting_session_gets_results_of_its_resubmitted_tasks(grid: Grid) -> None:
    """The session object that saw a task fail gets its resubmitted result as unclaimed."""
    async with grid.client() as client:
        session, results = await run_tasks(client, [b"boom:a", b"ok"], max_attempts=1)
        failed = results[b"boom:a"]
        assert not failed.ok
        grid.worker.healed = True
        outcome = await session.dead_letter_queue.resubmit([failed.task_id])
        async with asyncio.timeout(15):
            (again,) = await session.unclaimed_results(wait=None)
    assert outcome == DeadLetterOutcome(1, ())
    assert (again.task_id, again.payload) == (failed.task_id, b"BOOM:A")
    assert session.statistics().duplicate_tasks == 0


async def test_resubmit_without_reset_gives_exactly_one_more_attempt(grid: Grid) -> None:
    """With max_attempts used up, a resubmit buys one attempt; with reset, max_attempts again."""
    async with grid.client() as client:
        session, results = await run_tasks(client, [b"boom:z"], max_attempts=2)
        dlq = session.dead_letter_queue
        task_id = results[b"boom:z"].task_id
        first = await dlq.get(task_id)
        runs_before = grid.worker.runs[task_id]

        async def back_in_queue() -> bool:
            page = await dlq.list()
            return [letter.task_id for letter in page.letters] == [task_id]

        plain = await dlq.resubmit()
        await eventually(back_in_queue)
        runs_after_plain = grid.worker.runs[task_id]
        second = await dlq.get(task_id)
        reset = await dlq.resubmit([task_id], reset_attempts=True)
        await eventually(back_in_queue)
        runs_after_reset = grid.worker.runs[task_id]

    assert runs_before == 2
    assert plain == DeadLetterOutcome(1, ())
    assert runs_after_plain == 3
    assert second.dead_at > first.dead_at
    assert second.attempts == first.attempts == 2
    assert reset == DeadLetterOutcome(1, ())
    assert runs_after_reset == 5


async def test_discard_named_then_all_and_report_unknown_ids(grid: Grid) -> None:
    """Discard drops named letters, reports unknown ids, never reads [] as all, then drops all."""
    payloads = [f"never:{i}".encode() for i in range(4)]
    async with grid.client() as client:
        session, results = await run_tasks(client, payloads, max_attempts=1)
        dlq = session.dead_letter_queue
        gone = results[payloads[0]].task_id
        named = await dlq.discard(["no-such-task", gone])
        after_named = await dlq.list()
        with pytest.raises(NotFound) as info:
            await dlq.get(gone)
        empty = await dlq.discard([])
        after_empty = await dlq.list()
        rest = await dlq.discard()
        after_all = await dlq.list()
        nothing = await dlq.resubmit()

    assert named == DeadLetterOutcome(1, ("no-such-task",))
    assert after_named.total == 3
    assert gone not in {letter.task_id for letter in after_named.letters}
    assert info.value.field == "task_id"
    assert empty == DeadLetterOutcome(0, ())
    assert after_empty.total == 3
    assert rest == DeadLetterOutcome(3, ())
    assert (after_all.total, after_all.letters, after_all.next_after) == (0, (), "")
    assert nothing == DeadLetterOutcome(0, ())


async def test_errors_for_unknown_session_task_closed_session_and_bad_arguments(
    grid: Grid,
) -> None:
    """Unknown session: SessionNotFound; unknown task: NotFound; closed: SessionClosed."""
    async with grid.client() as client:
        unknown = AsyncDeadLetters.for_session(client, "no-such-session")
        for call in (
            unknown.list,
            lambda: unknown.get("t"),
            unknown.resubmit,
            lambda: unknown.discard(["t"]),
        ):
            with pytest.raises(SessionNotFound):
                await call()

        session, results = await run_tasks(client, [b"never:1", b"never:2"], max_attempts=1)
        dlq = session.dead_letter_queue
        with pytest.raises(NotFound) as info:
            await dlq.get("no-such-task")
        missing = await dlq.resubmit(["no-such-task"])
        with pytest.raises(TypeError):
            await dlq.resubmit(results[b"never:1"].task_id)  # a str is not a list of ids
        with pytest.raises(ValueError, match="limit"):
            await dlq.list(limit=0)
        with pytest.raises(InvalidArgument) as too_many:
            await dlq.list(limit=10_001)

        await session.close()
        still_listed = await dlq.list()
        with pytest.raises(SessionClosed):
            await dlq.resubmit()
        discarded = await dlq.discard([results[b"never:1"].task_id])

    assert info.value.field == "task_id"
    assert not isinstance(info.value, SessionError)
    assert missing == DeadLetterOutcome(0, ("no-such-task",))
    assert too_many.value.field == "limit"
    assert still_listed.total == 2
    assert discarded == DeadLetterOutcome(1, ())


async def test_sync_twin_lists_gets_and_discards(grid: Grid) -> None:
    """The blocking DeadLetters does what the async one does, from a session or by id."""

    def scenario() -> None:  # runs in a thread: the queue manager serves on the test's loop
        with Client(grid.address, api_key=KEY) as client:
            session = client.create_session(app_id="dlq-sync", max_attempts=1)
            results = list(session.map([b"never:a", b"never:b", b"ok"], ordered=True))
            failed = [results[0].task_id, results[1].task_id]
            dlq = session.dead_letter_queue
            assert isinstance(dlq, DeadLetters)
            page = dlq.list(include_payload=True)
            assert sorted(x.payload or b"" for x in page.letters) == [b"never:a", b"never:b"]
            letter = dlq.get(failed[0])
            assert (letter.reason, letter.payload) == ("non_retryable", b"never:a")
            assert [len(p.letters) for p in dlq.pages(page_size=1)] == [1, 1]
            by_id = DeadLetters.for_session(client, session.id)
            assert by_id.list().total == 2
            with pytest.raises(NotFound):
                by_id.get("no-such-task")
            assert by_id.discard([failed[1]]) == DeadLetterOutcome(1, ())
            assert [x.task_id for x in dlq.list().letters] == [failed[0]]
            session.close()

    await asyncio.to_thread(scenario)
