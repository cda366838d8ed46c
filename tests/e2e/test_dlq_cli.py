"""End to end: `alpcrun dlq ...` processes against a real queue manager and worker processes.

The session's tasks run on ``EchoWorker`` processes, which fail payloads starting with
``fail:`` with ``ValueError``; with ``max_attempts=1`` each one is dead-lettered at once.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from alpcrun.client import AsyncClient, AsyncDeadLetters, AsyncSession
from alpcrun.errors import NotFound

from .conftest import ROOT, Grid

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
FAILING = [b"fail:a", b"fail:b", b"fail:c"]


async def alpcrun(grid: Grid, action: str, *args: str) -> tuple[int, str, str]:
    """Run ``alpcrun dlq ACTION --queue-manager ADDR ARGS...``; return (exit code, out, err)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alpcrun.cli.main",
        "dlq",
        action,
        "--queue-manager",
        grid.address,
        *args,
        cwd=ROOT,
        env=grid.env(),  # the API key comes from ALPCRUNCH_API_KEY
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def dead_session(client: AsyncClient) -> tuple[AsyncSession, dict[bytes, str]]:
    """A session whose three ``fail:`` tasks are dead letters; returns their ids by payload."""
    session = await client.create_session(app_id="e2e-dlq", max_attempts=1)
    payloads = [*FAILING, b"fine"]
    ids = {}
    async for r in session.map(payloads):
        assert r.ok == (payloads[r.index] == b"fine")
        ids[payloads[r.index]] = r.task_id
    return session, ids


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - queue manager state has no event to await
            await asyncio.sleep(0.05)


async def test_dlq_list_and_inspect(running_grid: Grid, tmp_path: Path) -> None:
    """`dlq list` pages (table and JSON); `dlq inspect` shows the error and saves the payload."""
    async with AsyncClient(running_grid.address, api_key=running_grid.api_key) as client:
        session, ids = await dead_session(client)
        sid = session.id
        rc, table, _ = await alpcrun(running_grid, "list", sid)
        assert rc == 0
        rc, first, _ = await alpcrun(running_grid, "list", sid, "--limit", "2", "--json")
        assert rc == 0
        page1 = json.loads(first)
        rc, second, _ = await alpcrun(
            running_grid, "list", sid, "--json", "--after", page1["next_after"]
        )
        assert rc == 0
        page2 = json.loads(second)
        out_file = tmp_path / "payload.bin"
        rc, shown, _ = await alpcrun(
            running_grid, "inspect", sid, ids[b"fail:b"], "--payload-out", str(out_file)
        )
        assert rc == 0
        missing = await alpcrun(running_grid, "inspect", sid, "no-such-task")
        unknown = await alpcrun(running_grid, "list", "no-such-session")
        wrong_key = await alpcrun(running_grid, "list", sid, "--api-key", "wrong")
        nobody = await alpcrun(
            running_grid, "list", sid, "--queue-manager", "127.0.0.1:1", "--timeout", "0.5"
        )

    failed = {ids[p] for p in FAILING}
    assert all(task_id in table for task_id in failed)
    assert ids[b"fine"] not in table
    assert "ValueError" in table
    assert f"3 of 3 dead letters of session {sid}" in table
    assert (page1["session_id"], page1["total"], len(page1["letters"])) == (sid, 3, 2)
    assert page1["next_after"] == page1["letters"][1]["task_id"]
    assert (page2["total"], page2["next_after"], len(page2["letters"])) == (3, "", 1)
    letters = page1["letters"] + page2["letters"]
    assert {x["task_id"] for x in letters} == failed
    assert {(x["reason"], x["error_type"], x["attempts"]) for x in letters} == {
        ("error", "ValueError", 1)
    }
    assert f"task       {ids[b'fail:b']}" in shown
    assert "reason     error" in shown
    assert "type       ValueError" in shown
    assert "message    cannot handle fail:b" in shown
    assert "attempts   1" in shown
    assert "payload    6 bytes, utf-8: 'fail:b'" in shown
    assert out_file.read_bytes() == b"fail:b"
    assert missing[0] == 1
    assert "no-such-task" in missing[2]
    assert "not a dead letter" in missing[2]
    assert unknown[0] == 1
    assert "not found" in unknown[2]
    assert wrong_key[0] == 1
    assert "alpcrun dlq list: error:" in wrong_key[2]
    assert nobody[0] == 1
    assert "alpcrun dlq list: error:" in nobody[2]
    assert "127.0.0.1:1" in nobody[2]


async def test_dlq_resubmit_and_discard(running_grid: Grid) -> None:
    """Resubmit and discard act on named ids, refuse to act on all without --all (exit 2)."""
    async with AsyncClient(running_grid.address, api_key=running_grid.api_key) as client:
        session, ids = await dead_session(client)
        sid = session.id
        dlq = AsyncDeadLetters.for_session(client, sid)
        a, b, c = (ids[p] for p in FAILING)

        async def total() -> int:
            return (await dlq.list()).total

        async def dead_again(task_id: str, since: object) -> bool:
            try:
                return (await dlq.get(task_id)).dead_at != since
            except NotFound:
                return False

        refused = [
            await alpcrun(running_grid, "discard", sid),
            await alpcrun(running_grid, "resubmit", sid),
            await alpcrun(running_grid, "discard", sid, a, "--all"),
        ]
        assert await total() == 3

        # EchoWorker still fails the task: resubmitted, it runs once more and comes back.
        before = (await dlq.get(a)).dead_at
        resubmitted = await alpcrun(running_grid, "resubmit", sid, a)
        await eventually(lambda: dead_again(a, before))
        partly = await alpcrun(running_grid, "resubmit", sid, b, "no-such-task", "--reset-attempts")
        discarded = await alpcrun(running_grid, "discard", sid, c)
        await eventually(lambda: dead_again(b, None))
        assert {x.task_id for x in (await dlq.list()).letters} == {a, b}
        everything = await alpcrun(running_grid, "discard", sid, "--all")
        empty = await alpcrun(running_grid, "list", sid)
        await session.close()
        closed = await alpcrun(running_grid, "resubmit", sid, "--all")

    for code, _, err in refused:
        assert code == 2
        assert "--all" in err
    assert resubmitted[0] == 0
    assert f"resubmitted 1 dead letters of session {sid}" in resubmitted[1]
    assert partly[0] == 1
    assert "resubmitted 1 dead letters" in partly[1]
    assert "(attempts reset)" in partly[1]
    assert "not dead letters of session" in partly[2]
    assert "no-such-task" in partly[2]
    assert discarded[0] == 0
    assert f"discarded 1 dead letters of session {sid}" in discarded[1]
    assert everything[0] == 0
    assert "discarded 2 dead letters" in everything[1]
    assert empty[0] == 0
    assert f"no dead letters in session {sid}" in empty[1]
    assert closed[0] == 1
    assert "closed" in closed[2]
