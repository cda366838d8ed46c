"""Bad input on a real queue manager: every answer is the documented status, nothing leaks.

Each test sends what no SDK would (missing keys, unknown ids, out-of-range attributes,
results for the wrong dispatch, bytes that do not decode, messages over the limit) and then
checks, through the admin API, that exactly the sessions it created are open, that no worker
is left registered once its streams ended, that nothing is in flight, and that a fresh session
still makes a round trip. Cut connections, shutdown and size limits are in
``test_cut_streams``, dead-letter admin bounds in ``test_bad_dead_letters``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from alpcrun import proto
from alpcrun.testing import running_queue_manager

from .checks import (
    MD,
    UNKNOWN,
    Grid,
    bound_worker,
    eventually,
    finish_round,
    qm_settings,
    redelivered,
    with_session,
)
from .sim import Ledger, RawClient, SimWorker
from .wire import METHODS, ManualWorker, call, echo, method

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_error_logs")]
GARBAGE = {
    "truncated varint": b"\x08\xff\xff\xff",
    "length past the end": b"\x0a\x05ab",
}
Code = grpc.StatusCode
CSR = proto.ClientStreamRequest


# ---------------------------------------------------------------------- auth and unknown ids
async def test_every_method_refuses_a_missing_or_wrong_api_key(grid: Grid) -> None:
    """Every Queue and Admin method: no key is UNAUTHENTICATED, a wrong or empty key
    PERMISSION_DENIED."""
    for rpc in METHODS:
        requests = [] if rpc.client_streaming else [b""]
        missing = await call(grid.channel, rpc, requests, ())
        wrong = await call(grid.channel, rpc, requests, (("api_key", "not-the-key"),))
        empty = await call(grid.channel, rpc, requests, (("api_key", ""),))
        assert missing.code == Code.UNAUTHENTICATED, (rpc.name, missing)
        assert wrong.code == Code.PERMISSION_DENIED, (rpc.name, wrong)
        assert empty.code == Code.PERMISSION_DENIED, (rpc.name, empty)
    await grid.healthy()


NOT_FOUND_REQUESTS: dict[str, Any] = {
    "GetSession": proto.GetSessionRequest(session_id=UNKNOWN),
    "UpdateSession": proto.UpdateSessionRequest(
        session_id=UNKNOWN, attributes=proto.SessionAttributes(priority=1)
    ),
    "CloseSession": proto.CloseSessionRequest(session_id=UNKNOWN),
    "ClientStreamDeadLetters": proto.DeadLettersRequest(session_id=UNKNOWN),
    "ClientStream": None,
    "ListDeadLetters": proto.ListDeadLettersRequest(session_id=UNKNOWN),
    "GetDeadLetter": proto.GetDeadLetterRequest(session_id=UNKNOWN, task_id="t"),
    "ResubmitDeadLetters": proto.ResubmitDeadLettersRequest(session_id=UNKNOWN),
    "DiscardDeadLetters": proto.DiscardDeadLettersRequest(session_id=UNKNOWN),
}


async def test_unknown_session_is_not_found(grid: Grid) -> None:
    """Every method that names a session answers NOT_FOUND for an unknown one, naming it and
    the field (or metadata key) that held it in alpcrun-field."""
    for name, request in NOT_FOUND_REQUESTS.items():
        requests = [] if request is None else [request]
        outcome = await call(grid.channel, method(name), requests, with_session(UNKNOWN))
        assert outcome.code == Code.NOT_FOUND, (name, outcome)
        assert UNKNOWN in outcome.details, (name, outcome)
        assert outcome.field == ("sessionid" if request is None else "session_id"), (name, outcome)
    await grid.healthy()


BAD_ATTRIBUTES: list[tuple[dict[str, Any], str]] = [
    ({"app_id": None}, "attributes.app_id"),
    ({"app_id": ""}, "attributes.app_id"),
    ({"app_id": "a" * 129}, "attributes.app_id"),
    ({"priority": 11}, "attributes.priority"),
    ({"max_workers": 100_001}, "attributes.max_workers"),
    ({"min_workers": 3, "max_workers": 2}, "attributes.min_workers"),
    ({"max_inflight_batches_per_worker": 0}, "attributes.max_inflight_batches_per_worker"),
    ({"max_attempts": 0}, "attributes.max_attempts"),
    ({"max_attempts": 101}, "attributes.max_attempts"),
    ({"queue_type": 7}, "attributes.queue_type"),
    ({"idle_timeout": Duration(seconds=-1)}, "attributes.idle_timeout"),
    ({"task_timeout": Duration(seconds=10**9)}, "attributes.task_timeout"),
    ({"tags": ["t"] * 65}, "attributes.tags"),
    ({"tags": [""]}, "attributes.tags"),
    ({"worker_selector": {"": "x"}}, "attributes.worker_selector"),
    ({"worker_selector": {"k": "v" * 129}}, "attributes.worker_selector"),
    ({"idle_timeout": Duration(nanos=2_000_000_000)}, "attributes.idle_timeout.nanos"),
    ({"task_timeout": Duration(seconds=-3, nanos=-1_000_000_000)}, "attributes.task_timeout.nanos"),
    ({"app_id": "app\x1b[2J"}, "attributes.app_id"),
    ({"app_id": "app\x00"}, "attributes.app_id"),
    ({"app_id": "\u202eexe.txt"}, "attributes.app_id"),
    ({"tags": ["ok", "t\x1b]0;owned\x07"]}, "attributes.tags[1]"),
    ({"worker_selector": {"gpu": "\u202etrue"}}, "attributes.worker_selector"),
    ({"worker_selector": {"g\npu": "true"}}, "attributes.worker_selector"),
]


@pytest.mark.parametrize(("attributes", "field"), BAD_ATTRIBUTES, ids=lambda v: str(v)[:40])
async def test_bad_attribute_is_invalid_argument_naming_the_field(
    grid: Grid, attributes: dict[str, Any], field: str
) -> None:
    """CreateSession and UpdateSession refuse a bad attribute with its name in alpcrun-field."""
    values = {"app_id": "bad-input", **attributes}
    attrs = proto.SessionAttributes(**{k: v for k, v in values.items() if v is not None})
    created = await call(
        grid.channel, method("CreateSession"), [proto.CreateSessionRequest(attributes=attrs)], MD
    )
    assert (created.code, created.field) == (Code.INVALID_ARGUMENT, field), created
    assert field in created.details
    if attributes.get("app_id", "") is not None:
        sid = await grid.create()
        update = proto.UpdateSessionRequest(session_id=sid, attributes=attrs)
        updated = await call(grid.channel, method("UpdateSession"), [update], MD)
        assert (updated.code, updated.field) == (Code.INVALID_ARGUMENT, field), updated
        session = await grid.queue.GetSession(proto.GetSessionRequest(session_id=sid), metadata=MD)
        assert session.attributes.priority == 5  # nothing of the refused update applied
    await grid.healthy()


async def test_closed_session_refuses_work_with_failed_precondition(grid: Grid) -> None:
    """A closed session: a client stream, an update or a resubmit is FAILED_PRECONDITION."""
    sid = await grid.create()
    await grid.close(sid)
    batch = CSR(batch=proto.Batch(id="b", tasks=[proto.Task(id="t")]))
    refused = {
        "attach": await call(grid.channel, method("ClientStream"), [], with_session(sid)),
        "batch": await call(grid.channel, method("ClientStream"), [batch], with_session(sid)),
        "update": await call(
            grid.channel,
            method("UpdateSession"),
            [proto.UpdateSessionRequest(session_id=sid)],
            MD,
        ),
        "resubmit": await call(
            grid.channel,
            method("ResubmitDeadLetters"),
            [proto.ResubmitDeadLettersRequest(session_id=sid)],
            MD,
        ),
    }
    assert {k: v.code for k, v in refused.items()} == dict.fromkeys(
        refused, Code.FAILED_PRECONDITION
    ), refused
    info = await grid.info(sid)
    assert info.session.state == proto.SessionState.SESSION_STATE_CLOSED
    assert info.stats.submitted_tasks == 0
    still = {  # reads, discards and a second close still work while the session is retained
        "GetSession": proto.GetSessionRequest(session_id=sid),
        "CloseSession": proto.CloseSessionRequest(session_id=sid),
        "ListDeadLetters": proto.ListDeadLettersRequest(session_id=sid),
        "DiscardDeadLetters": proto.DiscardDeadLettersRequest(session_id=sid),
        "ClientStreamDeadLetters": proto.DeadLettersRequest(session_id=sid),
    }
    outcomes = {name: await call(grid.channel, method(name), [r], MD) for name, r in still.items()}
    assert {k: v.code for k, v in outcomes.items()} == dict.fromkeys(still, Code.OK), outcomes
    closed_again = proto.CloseSessionResponse.FromString(outcomes["CloseSession"].responses[0])
    assert closed_again.discarded_tasks == 0
    await grid.healthy()


# ---------------------------------------------------------------------- client stream
def _tasks() -> list[proto.Task]:
    return [proto.Task(id="t1", payload=b"t1")]


BAD_CLIENT_REQUESTS: dict[str, tuple[proto.ClientStreamRequest, str]] = {
    "batch without id": (CSR(batch=proto.Batch(tasks=_tasks())), "batch.id"),
    "batch id too long": (CSR(batch=proto.Batch(id="b" * 129, tasks=_tasks())), "batch.id"),
    "batch without tasks": (CSR(batch=proto.Batch(id="b")), "batch.tasks"),
    "batch of another session": (
        CSR(batch=proto.Batch(id="b", session_id=UNKNOWN, tasks=_tasks())),
        "batch.session_id",
    ),
    "task without id": (
        CSR(batch=proto.Batch(id="b", tasks=[proto.Task(id="t1"), proto.Task()])),
        "batch.tasks[1].id",
    ),
    "task id too long": (
        CSR(batch=proto.Batch(id="b", tasks=[proto.Task(id="t" * 100_000)])),
        "batch.tasks[0].id",
    ),
    "task ids repeated in a batch": (
        CSR(batch=proto.Batch(id="b", tasks=[proto.Task(id=i) for i in ("t1", "t2", "t3", "t2")])),
        "batch.tasks[3].id",
    ),
    "neither batch nor ack": (CSR(), "batch"),
    "ack beyond the last seq": (CSR(ack=proto.ResultAck(seq=1)), "ack.seq"),
}


@pytest.mark.parametrize("case", BAD_CLIENT_REQUESTS)
async def test_bad_client_request_is_invalid_argument_and_the_session_survives(
    grid: Grid, case: str
) -> None:
    """A bad ClientStream request ends the stream with INVALID_ARGUMENT; the session works on."""
    request, field = BAD_CLIENT_REQUESTS[case]
    sid = await grid.create()
    outcome = await call(grid.channel, method("ClientStream"), [request], with_session(sid))
    assert (outcome.code, outcome.field) == (Code.INVALID_ARGUMENT, field), outcome
    info = await grid.info(sid)
    assert (info.stats.submitted_tasks, info.stats.pending_batches) == (0, 0), info
    await grid.settled()
    await grid.round_trip(sid)  # the same session takes batches again
    await grid.close(sid)
    await grid.healthy()


async def test_stream_metadata_is_required(grid: Grid) -> None:
    """ClientStream needs sessionid; WorkerStream workerid and sessionid (INVALID_ARGUMENT)."""
    client = await call(grid.channel, method("ClientStream"), [], MD)
    no_worker = await call(grid.channel, method("WorkerStream"), [], with_session(UNKNOWN))
    no_session = await call(grid.channel, method("WorkerStream"), [], (*MD, ("workerid", "w")))
    assert (client.code, client.field) == (Code.INVALID_ARGUMENT, "sessionid"), client
    assert (no_worker.code, no_worker.field) == (Code.INVALID_ARGUMENT, "workerid"), no_worker
    assert (no_session.code, no_session.field) == (Code.INVALID_ARGUMENT, "sessionid"), no_session
    await grid.healthy()


async def test_duplicate_batch_is_ignored_and_counted(grid: Grid) -> None:
    """A batch id the session already knows is ignored and counted; each task runs once."""
    sid = await grid.create()
    ledger = Ledger()
    client = RawClient(grid.channel, MD, sid, ledger)
    ids = client.send(1, 2, "dup")
    assert client.send(1, 2, "dup") == ids

    async def counted() -> None:
        assert (await grid.info(sid)).stats.duplicate_batches == 1

    await eventually(counted)
    worker = asyncio.create_task(SimWorker(grid.channel, MD, ledger, delay=0.0).run())
    await client.wait_for(2, within=10.0)
    await asyncio.sleep(0.2)  # a second copy of the batch would have run by now
    assert client.received == 2
    assert {i: (ledger.executed[i], ledger.delivered[i]) for i in ids} == dict.fromkeys(ids, (1, 1))
    info = await grid.info(sid)
    assert (info.stats.submitted_tasks, info.stats.duplicate_batches) == (2, 1)
    assert (await grid.stats()).duplicate_batches == 1
    worker.cancel()
    client.cut()
    await grid.close(sid)
    await grid.healthy()


# ---------------------------------------------------------------------- worker stream
@pytest.mark.parametrize("dispatch_id", ["unknown", "zero"])
async def test_results_for_an_unknown_dispatch_are_not_found(grid: Grid, dispatch_id: str) -> None:
    """A result batch for a dispatch not in flight: NOT_FOUND, stream ends, batch requeued."""
    sid = await grid.create()
    worker, batch, client, ledger = await bound_worker(grid, sid)
    bad = echo(batch)
    bad.dispatch_id = batch.dispatch_id + 1000 if dispatch_id == "unknown" else 0
    worker.send(bad)
    outcome = await worker.stream_outcome()
    assert (outcome.code, outcome.field) == (Code.NOT_FOUND, "batch.dispatch_id"), outcome
    assert str(bad.dispatch_id) in outcome.details
    again = await redelivered(worker, sid, batch)
    worker.send(echo(again))
    await client.wait_for(2, within=10.0)
    assert set(ledger.delivered.values()) == {1}
    assert (await grid.info(sid)).stats.retried_tasks == 2
    await finish_round(grid, worker, client, sid)


async def test_results_for_a_batch_of_another_worker_are_not_found(grid: Grid) -> None:
    """A worker answering another worker's dispatch gets NOT_FOUND; the other one is unharmed."""
    sid = await grid.create()
    ledger = Ledger()
    client = RawClient(grid.channel, MD, sid, ledger)
    client.send(2, 2, "two")
    first, second = ManualWorker(grid.channel, MD), ManualWorker(grid.channel, MD)
    for worker in (first, second):
        await worker.register()
    for worker in (first, second):
        assert await worker.bound() == sid
        worker.open_stream(sid)
    mine, theirs = await first.next_batch(), await second.next_batch()
    first.send(echo(theirs))
    outcome = await first.stream_outcome()
    assert (outcome.code, outcome.field) == (Code.NOT_FOUND, "batch.dispatch_id"), outcome
    second.send(echo(theirs))
    again = await second.next_batch()  # the first one's batch, requeued, goes to the other
    assert [t.id for t in again.tasks] == [t.id for t in mine.tasks]
    assert {t.attempt for t in again.tasks} == {2}
    second.send(echo(again))
    await client.wait_for(4, within=10.0)
    assert sorted(ledger.delivered.values()) == [1, 1, 1, 1]
    await second.stop()
    await finish_round(grid, first, client, sid)


def _mismatched(batch: proto.Batch, how: str) -> proto.Batch:
    out = echo(batch)
    if how == "a task missing":
        del out.tasks[-1]
    elif how == "an extra task":
        out.tasks.add(id="extra")
    elif how == "another task id":
        out.tasks[0].id = "never-dispatched"
    elif how == "reordered":
        out.tasks[0].id, out.tasks[1].id = out.tasks[1].id, out.tasks[0].id
    else:
        del out.tasks[:]
    return out


@pytest.mark.parametrize(
    "how", ["a task missing", "an extra task", "another task id", "reordered", "no tasks"]
)
async def test_results_not_answering_the_dispatched_tasks_are_invalid(grid: Grid, how: str) -> None:
    """Results must answer exactly the dispatched tasks in order: else INVALID_ARGUMENT."""
    sid = await grid.create()
    worker, batch, client, ledger = await bound_worker(grid, sid)
    worker.send(_mismatched(batch, how))
    outcome = await worker.stream_outcome()
    assert (outcome.code, outcome.field) == (Code.INVALID_ARGUMENT, "batch.tasks"), outcome
    again = await redelivered(worker, sid, batch)
    worker.send(echo(again))
    await client.wait_for(2, within=10.0)
    assert set(ledger.delivered.values()) == {1}
    assert "never-dispatched" not in ledger.delivered
    await finish_round(grid, worker, client, sid)


async def test_late_results_of_a_timed_out_attempt_are_dropped_and_counted(grid: Grid) -> None:
    """Results of an attempt task_timeout gave up on are dropped silently and counted."""
    sid = await grid.create(task_timeout=Duration(nanos=300_000_000))
    worker, first, client, ledger = await bound_worker(grid, sid, tasks=1)

    async def timed_out() -> None:
        assert (await grid.stats()).timed_out_attempts == 1

    await eventually(timed_out)
    second = await worker.next_batch()  # the same worker gets the next attempt
    await grid.queue.UpdateSession(  # no further timeouts, however slow this machine is
        proto.UpdateSessionRequest(
            session_id=sid, attributes=proto.SessionAttributes(task_timeout=Duration())
        ),
        metadata=MD,
    )
    assert [t.id for t in second.tasks] == [t.id for t in first.tasks]
    assert second.tasks[0].attempt == 2
    worker.send(echo(first))  # late: dropped, counted, and the stream goes on

    async def dropped() -> None:
        assert (await grid.stats()).duplicate_results == 1
        assert (await grid.info(sid)).stats.duplicate_results == 1

    await eventually(dropped)
    worker.send(echo(second))
    await client.wait_for(1, within=10.0)
    await asyncio.sleep(0.1)
    assert client.received == 1
    assert set(ledger.delivered.values()) == {1}
    await finish_round(grid, worker, client, sid)


async def test_worker_protocol_errors(grid: Grid) -> None:
    """WorkerUpdate must start with a bounded registration; WorkerStream needs a bound worker."""
    update = method("WorkerUpdate")
    heartbeat = proto.WorkerStatus(heartbeat=proto.WorkerHeartbeat())
    labels = proto.WorkerRegistration(labels={f"k{i}": "v" for i in range(65)})
    outcomes = {
        "empty": await call(grid.channel, update, [], MD),
        "heartbeat first": await call(grid.channel, update, [heartbeat], MD),
        "too many labels": await call(
            grid.channel, update, [proto.WorkerStatus(register=labels)], MD
        ),
    }
    fields = {k: (v.code, v.field) for k, v in outcomes.items()}
    assert fields == {
        "empty": (Code.INVALID_ARGUMENT, "register"),
        "heartbeat first": (Code.INVALID_ARGUMENT, "register"),
        "too many labels": (Code.INVALID_ARGUMENT, "register.labels"),
    }
    sid = await grid.create()
    worker = ManualWorker(grid.channel, MD)
    await worker.register()
    worker.open_stream(sid)  # registered but not bound to it
    assert (await worker.stream_outcome()).code == Code.NOT_FOUND
    worker.open_stream(sid, worker_id=UNKNOWN)
    assert (await worker.stream_outcome()).code == Code.NOT_FOUND
    await worker.stop()
    await grid.healthy()


BAD_REGISTRATIONS: dict[str, tuple[proto.WorkerRegistration, str]] = {
    "ESC in the node name": (proto.WorkerRegistration(node="n\x1b[31m"), "register.node"),
    "NUL in the pod name": (proto.WorkerRegistration(pod="p\x00"), "register.pod"),
    "RLO in a label value": (proto.WorkerRegistration(labels={"k": "\u202ev"}), "register.labels"),
    "BEL in a label key": (proto.WorkerRegistration(labels={"k\x07": "v"}), "register.labels"),
    "node name too long": (proto.WorkerRegistration(node="n" * 254), "register.node"),
}


@pytest.mark.parametrize("case", BAD_REGISTRATIONS)
async def test_registration_with_control_characters_is_invalid_argument(
    grid: Grid, case: str
) -> None:
    """A registration whose node, pod or labels hold control or bidi-override characters (or a
    node name over 253 characters) is INVALID_ARGUMENT naming the field; nothing registers."""
    registration, field = BAD_REGISTRATIONS[case]
    status = proto.WorkerStatus(register=registration)
    outcome = await call(grid.channel, method("WorkerUpdate"), [status], MD)
    assert (outcome.code, outcome.field, outcome.responses) == (
        Code.INVALID_ARGUMENT,
        field,
        [],
    ), outcome
    assert field in outcome.details
    await grid.healthy()  # checks that no worker is left registered


# ---------------------------------------------------------------------- bytes that do not decode
@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
@pytest.mark.parametrize(
    "rpc", [m for m in METHODS if m.name != "WorkerStream"], ids=lambda m: m.name
)
async def test_bytes_that_do_not_decode_are_invalid_argument(
    grid: Grid, rpc: Any, garbage: bytes
) -> None:
    """Every method answers a request that does not decode with INVALID_ARGUMENT.

    (WorkerStream checks its metadata before reading; it has its own test below.)
    """
    sid = await grid.create()
    outcome = await call(grid.channel, rpc, [garbage], with_session(sid))
    assert outcome.code == Code.INVALID_ARGUMENT, outcome
    assert "decode" in outcome.details
    await grid.healthy()


async def test_undecodable_bytes_after_valid_messages_end_the_stream(grid: Grid) -> None:
    """Garbage after good messages: INVALID_ARGUMENT; what was accepted stays, workers leave."""
    sid = await grid.create()
    good = CSR(batch=proto.Batch(id="b", tasks=_tasks()))
    client = await call(
        grid.channel, method("ClientStream"), [good, b"\xff\xff"], with_session(sid)
    )
    register = proto.WorkerStatus(register=proto.WorkerRegistration(node="n"))
    update = await call(grid.channel, method("WorkerUpdate"), [register, b"\xff\xff"], MD)
    assert client.code == update.code == Code.INVALID_ARGUMENT, (client, update)
    registered = proto.WorkerInstruction.FromString(update.responses[0])
    assert registered.type == proto.WorkerInstruction.TYPE_REGISTERED
    info = await grid.info(sid)
    assert (info.stats.pending_tasks, info.stats.submitted_tasks) == (1, 1)
    assert await grid.close(sid) == 1
    await grid.healthy()


async def test_undecodable_result_batch_is_invalid_argument(grid: Grid) -> None:
    """A WorkerStream message that does not decode ends it; its batch is requeued."""
    sid = await grid.create()
    worker, batch, client, _ = await bound_worker(grid, sid)
    worker.send(b"\x0a\x05ab")
    assert (await worker.stream_outcome()).code == Code.INVALID_ARGUMENT
    again = await redelivered(worker, sid, batch)
    worker.send(echo(again))
    await client.wait_for(2, within=10.0)
    await finish_round(grid, worker, client, sid)


async def test_bytes_that_do_not_decode_are_invalid_argument_without_auth() -> None:
    """With auth disabled too, a unary request that does not decode is INVALID_ARGUMENT."""
    async with running_queue_manager(**qm_settings(auth_disabled=True)) as qm:
        async with grpc.aio.insecure_channel(qm.address) as channel:
            grid = Grid(channel, MD)
            outcome = await call(channel, method("CreateSession"), [b"\x08\xff\xff"], ())
            assert outcome.code == Code.INVALID_ARGUMENT, outcome
            await grid.healthy()
