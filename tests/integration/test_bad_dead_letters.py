"""Dead-letter admin RPCs under bad input: bounded requests, pages that fit, resubmits that fit.

A real queue manager (port 0) gets dead letters from a manual worker that fails every task for
good, then the admin calls are pushed past their bounds; each answer must be the documented
status and the server must keep serving with nothing leaked.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from alpcrun import proto

from .checks import MD, Grid, eventually, with_session
from .wire import ManualWorker, call, echo, method, start

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_error_logs")]
Code = grpc.StatusCode
CSR = proto.ClientStreamRequest


# ---------------------------------------------------------------------- bounds
async def test_dead_letter_requests_are_bounded(grid: Grid) -> None:
    """Page limit over 10000 or over 100000 ids: INVALID_ARGUMENT; unknown letter: NOT_FOUND."""
    sid = await grid.create()
    admin: dict[str, tuple[str, Any]] = {
        "limit over": (
            "ListDeadLetters",
            proto.ListDeadLettersRequest(session_id=sid, limit=10_001),
        ),
        "limit at max": (
            "ListDeadLetters",
            proto.ListDeadLettersRequest(session_id=sid, limit=10_000),
        ),
        "unknown letter": (
            "GetDeadLetter",
            proto.GetDeadLetterRequest(session_id=sid, task_id="no"),
        ),
        "resubmit too many": (
            "ResubmitDeadLetters",
            proto.ResubmitDeadLettersRequest(session_id=sid, task_ids=["x"] * 100_001),
        ),
        "discard too many": (
            "DiscardDeadLetters",
            proto.DiscardDeadLettersRequest(session_id=sid, task_ids=["x"] * 100_001),
        ),
        "discard empty id": (
            "DiscardDeadLetters",
            proto.DiscardDeadLettersRequest(session_id=sid, task_ids=[""]),
        ),
        "discard at max": (
            "DiscardDeadLetters",
            proto.DiscardDeadLettersRequest(session_id=sid, task_ids=["x"] * 100_000),
        ),
    }
    got = {}
    for case, (name, request) in admin.items():
        outcome = await call(grid.channel, method(name), [request], MD)
        got[case] = (outcome.code, outcome.field)
    assert got == {
        "limit over": (Code.INVALID_ARGUMENT, "limit"),
        "limit at max": (Code.OK, ""),
        "unknown letter": (Code.NOT_FOUND, "task_id"),
        "resubmit too many": (Code.INVALID_ARGUMENT, "task_ids"),
        "discard too many": (Code.INVALID_ARGUMENT, "task_ids"),
        "discard empty id": (Code.INVALID_ARGUMENT, "task_ids"),
        "discard at max": (Code.OK, ""),
    }
    await grid.healthy()


def _failed(batch: proto.Batch) -> proto.Batch:
    out = proto.Batch(id=batch.id, dispatch_id=batch.dispatch_id)
    error = proto.TaskError(message="no", reason=proto.ErrorReason.ERROR_REASON_NON_RETRYABLE)
    for task in batch.tasks:
        out.tasks.add(id=task.id, error=error)
    return out


async def dead_letters(grid: Grid, sid: str, batches: int, payload: int) -> ManualWorker:
    """Fill a session with ``2 * batches`` dead letters of ``payload`` bytes each."""
    requests = [
        CSR(
            batch=proto.Batch(
                id=f"b{b}",
                tasks=[proto.Task(id=f"t{b}-{i}", payload=b"p" * payload) for i in range(2)],
            )
        )
        for b in range(batches)
    ]
    submit = start(
        grid.channel,
        method("ClientStream"),
        requests,
        with_session(sid),
        half_close=False,
        timeout=None,
    )
    worker = ManualWorker(grid.channel, MD)
    await worker.register()
    assert await worker.bound() == sid
    worker.open_stream(sid)
    for _ in range(batches):
        worker.send(_failed(await worker.next_batch()))

    async def all_dead() -> None:
        assert (await grid.info(sid)).stats.dead_letters == 2 * batches

    await eventually(all_dead)
    submit.cancel()
    return worker


async def test_dead_letter_pages_fit_in_a_message(grid: Grid) -> None:
    """Letters whose payloads add up past the limit come in pages and batches that fit it."""
    sid = await grid.create()
    worker = await dead_letters(grid, sid, batches=4, payload=200_000)
    await worker.stop()
    ids, after = [], ""
    while True:
        page = await grid.admin.ListDeadLetters(
            proto.ListDeadLettersRequest(session_id=sid, include_payload=True, after=after),
            metadata=MD,
        )
        assert page.total == 8
        assert page.letters
        ids += [letter.task.id for letter in page.letters]
        assert all(len(letter.task.payload) == 200_000 for letter in page.letters)
        if not (after := page.next_after):
            break
    assert sorted(ids) == sorted(f"t{b}-{i}" for b in range(4) for i in range(2))
    streamed = await call(
        grid.channel,
        method("ClientStreamDeadLetters"),
        [proto.DeadLettersRequest(session_id=sid)],
        MD,
    )
    assert streamed.code == Code.OK, streamed
    tasks = [t for raw in streamed.responses for t in proto.Batch.FromString(raw).tasks]
    assert sorted(t.id for t in tasks) == sorted(ids)
    await grid.close(sid)
    await grid.healthy()


async def test_resubmitted_dead_letters_are_dispatched_within_the_limit(grid: Grid) -> None:
    """Resubmitted letters whose payloads add up past the limit still reach a worker."""
    sid = await grid.create()
    worker = await dead_letters(grid, sid, batches=4, payload=200_000)
    resubmitted = await grid.admin.ResubmitDeadLetters(
        proto.ResubmitDeadLettersRequest(session_id=sid), metadata=MD
    )
    assert resubmitted.count == 8
    seen: list[str] = []
    while len(seen) < 8:
        batch = await worker.next_batch()
        seen += [t.id for t in batch.tasks]
        worker.send(echo(batch))
    assert sorted(seen) == sorted(f"t{b}-{i}" for b in range(4) for i in range(2))
    await worker.stop()
    await grid.close(sid)
    await grid.healthy()
