"""Fuzz every Queue and Admin RPC of one real queue manager; it must answer as documented.

The methods come from the service descriptors, so a new RPC is fuzzed without a change here.
Each example sends random bytes or hostile messages (built from the descriptors by
:mod:`tests.fuzz.strategies`) with random metadata, streams a few of them and then half-closes
or cancels, and asserts the status is OK or one the protocol documents, never UNKNOWN or
INTERNAL. A session made for the example is closed after it, sessions a fuzzed CreateSession
made are closed too, and no worker may stay registered once its streams ended. The module
ends by checking that the server still serves, that every created session is accounted for,
and that nothing was logged at ERROR. Each test stops taking new examples at its time budget,
so the module stays under a minute on two cores, and fails unless a minimum number of examples
reached the server within it (hypothesis can quietly run few when draws are rejected).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import string
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alpcrun import proto
from alpcrun.testing import running_queue_manager
from tests.integration.checks import KEY, MD, ErrorLog, Grid, eventually, qm_settings
from tests.integration.wire import METHODS, ManualWorker, echo, finish, method, start

from .strategies import binaries, messages

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]
Code = grpc.StatusCode
DOCUMENTED = {
    Code.OK,
    Code.INVALID_ARGUMENT,
    Code.NOT_FOUND,
    Code.ALREADY_EXISTS,
    Code.FAILED_PRECONDITION,
    Code.RESOURCE_EXHAUSTED,
    Code.UNAUTHENTICATED,
    Code.PERMISSION_DENIED,
    Code.ABORTED,
}
"""Every status the protocol documents for a running queue manager (UNAVAILABLE is only for
shutdown; CANCELLED and DEADLINE_EXCEEDED only when this side cancels or times out)."""
CLIENT_WRITE_RACE = "Internal error from Core"
"""What the Python client reports (as INTERNAL) when the server ended a stream while the client
was still writing to it: the client, not the server, made it up, and the server's status is
lost. Streams only; exceptions inside the server are caught by the ERROR-log check."""
OPEN_WAIT_S = 0.2
TARGET = "{target}"
"""Placeholder for the example's session id while its messages are drawn."""
DISPATCHED = 2**63 + 12345
"""Placeholder for the dispatch id of the batch a worker holds while results are drawn."""
"""How long a half-closed stream may stay open (ClientStream does, by design) before we cancel."""
FUZZ = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
BYTES_EXAMPLES, MESSAGES_EXAMPLES, RESULTS_EXAMPLES = 1000, 1200, 100
"""Examples each test asks hypothesis for (its time budget may stop it sooner)."""
MIN_SHARE = 5
"""A test fails unless at least 1/MIN_SHARE of its examples reached the server (on an idle
2-core machine all of them do within the time budget; the margin is for a loaded one)."""
_ASCII = st.text(st.sampled_from(string.ascii_letters + string.digits + "-_.:/ "), max_size=200)


def documented(rpc: MethodDescriptor, code: Code | None, details: str) -> bool:
    """Whether the status is one the protocol documents (None: we ended an open stream)."""
    if code is None or code in DOCUMENTED:
        return True
    return rpc.client_streaming and code == Code.INTERNAL and details == CLIENT_WRITE_RACE


@dataclass
class Fuzz:
    """What the module's examples share: the grid, its logs and what they created."""

    grid: Grid
    log: ErrorLog
    closed_session: str
    created: set[str] = field(default_factory=set)
    """Sessions a fuzzed CreateSession made (each closed right after its example)."""
    examples: int = 0
    ran: Counter[str] = field(default_factory=Counter)
    """Examples that reached the server, by test."""

    def over(self, started: float, budget_s: float) -> bool:
        """Whether a test's time budget is spent (further examples do nothing)."""
        return time.monotonic() - started > budget_s


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fuzz() -> AsyncIterator[Fuzz]:
    with ErrorLog.installed() as log:
        async with running_queue_manager(**qm_settings()) as qm:
            async with grpc.aio.insecure_channel(qm.address) as channel:
                grid = Grid(channel, MD)
                closed = await grid.create()
                await grid.close(closed)
                yield Fuzz(grid, log, closed)


@pytest.fixture(scope="module")
def clock() -> dict[str, float]:
    """Start times of the module's tests (their budgets are wall-clock)."""
    return {}


def _started(clock: dict[str, float], name: str) -> float:
    return clock.setdefault(name, time.monotonic())


def ran_at_least(minimum: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Fail a ``@given`` test (put this above ``@given``) unless, once hypothesis has run all
    its examples, at least ``minimum`` of them reached the server (counted in ``Fuzz.ran``)."""

    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(test)  # keeps .hypothesis: pytest-asyncio still runs the examples
        def checked(fuzz: Fuzz, **fixtures: Any) -> None:
            before = fuzz.ran[test.__name__]
            test(fuzz=fuzz, **fixtures)
            ran = fuzz.ran[test.__name__] - before
            assert ran >= minimum, f"{test.__name__}: {ran} examples ran, fewer than {minimum}"

        return checked

    return decorate


# ---------------------------------------------------------------------- one exchange
def metadata(data: st.DataObject, target: str, closed: str) -> list[tuple[str, str]]:
    """Random metadata: the key mostly right, ids real, unknown, absent or junk."""
    md: list[tuple[str, str]] = []
    key = data.draw(st.sampled_from(["valid"] * 6 + ["missing", "wrong"]), label="api_key")
    if key != "missing":
        md.append(("api_key", KEY if key == "valid" else "wrong-key"))
    session = data.draw(st.sampled_from(["target", "closed", "unknown", "absent", "junk"]))
    ids = {"target": target, "closed": closed, "unknown": "01J00000000000000000000000"}
    if session in ids:
        md.append(("sessionid", ids[session]))
    elif session == "junk":
        md.append(("sessionid", data.draw(_ASCII, label="sessionid")))
    worker = data.draw(st.sampled_from(["absent", "junk"]), label="workerid")
    if worker == "junk":
        md.append(("workerid", data.draw(_ASCII, label="workerid")))
    if data.draw(st.booleans(), label="acks"):
        md.append(("acks", "1"))
    return md


def aim(data: st.DataObject, message: Message, target: str, closed: str, depth: int = 0) -> None:
    """Point some ``session_id`` fields at the example's session or the closed one."""
    for desc, value in message.ListFields():
        if desc.name == "session_id" and not desc.is_repeated:
            choice = data.draw(st.sampled_from(["keep", "target", "closed"]), label="session_id")
            if choice != "keep":
                setattr(message, desc.name, target if choice == "target" else closed)
        elif desc.message_type is not None and not desc.is_repeated and depth < 2:
            aim(data, value, target, closed, depth + 1)


async def exchange(
    channel: grpc.aio.Channel,
    rpc: MethodDescriptor,
    requests: list[Any],
    md: list[tuple[str, str]],
    *,
    cancel: bool,
) -> tuple[Code | None, str, list[bytes]]:
    """Make the call; (code, details, responses), code None if we ended a stream still open."""
    if not rpc.client_streaming:
        outcome = await finish(start(channel, rpc, requests, md), streaming=rpc.server_streaming)
        return outcome.code, outcome.details, outcome.responses
    call = start(channel, rpc, requests, md, half_close=not cancel, timeout=None)
    try:
        async with asyncio.timeout(0.01 if cancel else OPEN_WAIT_S):
            outcome = await finish(call, streaming=rpc.server_streaming)
        return outcome.code, outcome.details, outcome.responses
    except TimeoutError:
        call.cancel()
        return None, "", []


async def settle(
    fuzz: Fuzz, rpc: MethodDescriptor, code: Code | None, responses: list[bytes]
) -> None:
    """Close what the example created; no worker may outlive its streams."""
    if rpc.name == "CreateSession" and code == Code.OK:
        session = proto.Session.FromString(responses[0])
        fuzz.created.add(session.id)
        await fuzz.grid.queue.CloseSession(
            proto.CloseSessionRequest(session_id=session.id), metadata=MD
        )

    async def no_workers() -> None:
        assert await fuzz.grid.workers() == []

    await eventually(no_workers, within=5.0)


def _retarget(message: Message, session_id: str, depth: int = 0) -> None:
    """Replace the TARGET placeholder in string fields with the example's session id."""
    for desc, value in message.ListFields():
        if value == TARGET:
            setattr(message, desc.name, session_id)
        elif desc.message_type is not None and not desc.is_repeated and depth < 2:
            _retarget(value, session_id, depth + 1)


async def one_example(
    fuzz: Fuzz, data: st.DataObject, *, test: str, hostile: bool, over: bool
) -> None:
    """One RPC with random bytes (or hostile messages) and random metadata, counted for ``test``.

    Everything is drawn before the server is touched, the same way whether or not the time
    budget is ``over`` (hypothesis requires an example to draw consistently); over budget, the
    example ends there.
    """
    rpc = data.draw(st.sampled_from(METHODS), label="rpc")
    one = messages(rpc.input_type) if hostile else st.one_of(st.binary(max_size=300), binaries())
    count = st.integers(0, 3) if rpc.client_streaming else st.just(1)
    requests = data.draw(count.flatmap(lambda n: st.lists(one, min_size=n, max_size=n)))
    for request in requests:
        if isinstance(request, Message):
            aim(data, request, TARGET, fuzz.closed_session)
    md = metadata(data, TARGET, fuzz.closed_session)
    cancel = rpc.client_streaming and data.draw(st.booleans(), label="cancel")
    if over:
        return
    fuzz.examples += 1
    fuzz.ran[test] += 1
    target = await fuzz.grid.create()
    for request in requests:
        if isinstance(request, Message):
            _retarget(request, target)
    md = [(k, target if v == TARGET else v) for k, v in md]
    code: Code | None = None
    responses: list[bytes] = []
    try:
        code, details, responses = await exchange(
            fuzz.grid.channel, rpc, requests, md, cancel=cancel
        )
        assert documented(rpc, code, details), (rpc.name, code, details)
    finally:
        await fuzz.grid.close(target)
        await settle(fuzz, rpc, code, responses)


# ---------------------------------------------------------------------- the tests
@ran_at_least(BYTES_EXAMPLES // MIN_SHARE)
@settings(FUZZ, max_examples=BYTES_EXAMPLES)
@given(data=st.data())
async def test_random_bytes_to_every_rpc(
    fuzz: Fuzz, clock: dict[str, float], data: st.DataObject
) -> None:
    """Random bytes to every RPC (unary and streaming): a documented status, never UNKNOWN."""
    over = fuzz.over(_started(clock, "bytes"), 12.0)
    await one_example(fuzz, data, test="test_random_bytes_to_every_rpc", hostile=False, over=over)


@ran_at_least(MESSAGES_EXAMPLES // MIN_SHARE)
@settings(FUZZ, max_examples=MESSAGES_EXAMPLES)
@given(data=st.data())
async def test_hostile_messages_to_every_rpc(
    fuzz: Fuzz, clock: dict[str, float], data: st.DataObject
) -> None:
    """Valid but hostile messages to every RPC: a documented status, never UNKNOWN."""
    over = fuzz.over(_started(clock, "messages"), 20.0)
    await one_example(
        fuzz, data, test="test_hostile_messages_to_every_rpc", hostile=True, over=over
    )


def _results(batch: proto.Batch) -> st.SearchStrategy[Any]:
    """Result batches a worker might send for ``batch``: right, hostile, or not decodable."""
    right = st.just(echo(batch))
    hostile = st.tuples(
        messages(proto.Batch.DESCRIPTOR),
        st.sampled_from(["keep", "dispatched", "zero"]),
    ).map(lambda pair: _with_dispatch(pair[0], pair[1], batch.dispatch_id))
    renamed = st.lists(st.sampled_from([t.id for t in batch.tasks] + ["other"]), max_size=4).map(
        lambda ids: proto.Batch(
            dispatch_id=batch.dispatch_id, tasks=[proto.Task(id=i) for i in ids]
        )
    )
    failed = st.sampled_from(list(proto.ErrorReason.values())).map(
        lambda reason: proto.Batch(
            dispatch_id=batch.dispatch_id,
            tasks=[proto.Task(id=t.id, error=proto.TaskError(reason=reason)) for t in batch.tasks],
        )
    )
    return st.one_of(right, hostile, renamed, failed, st.binary(max_size=64))


def _with_dispatch(result: Message, how: str, dispatch_id: int) -> Message:
    assert isinstance(result, proto.Batch)
    if how != "keep":
        result.dispatch_id = dispatch_id if how == "dispatched" else 0
    return result


@ran_at_least(RESULTS_EXAMPLES // MIN_SHARE)
@settings(FUZZ, max_examples=RESULTS_EXAMPLES)
@given(data=st.data())
async def test_hostile_results_on_a_bound_worker_stream(
    fuzz: Fuzz, clock: dict[str, float], data: st.DataObject
) -> None:
    """Hostile results on a real WorkerStream: documented status; every task accounted for."""
    tasks = data.draw(st.integers(1, 3), label="tasks")
    batch = proto.Batch(id="b", tasks=[proto.Task(id=f"t{i}", payload=b"p") for i in range(tasks)])
    planned = proto.Batch(id="b", dispatch_id=DISPATCHED, tasks=batch.tasks)
    results = data.draw(st.lists(_results(planned), min_size=1, max_size=3), label="results")
    half_close = data.draw(st.booleans(), label="half-close")
    if fuzz.over(_started(clock, "results"), 12.0):
        return  # after the draws: hypothesis requires an example to draw consistently
    fuzz.examples += 1
    fuzz.ran["test_hostile_results_on_a_bound_worker_stream"] += 1
    grid, label = fuzz.grid, f"fuzz-{fuzz.examples}"
    target = await grid.create(worker_selector={"fuzz": label}, max_attempts=2)
    submit = start(
        grid.channel,
        method("ClientStream"),
        [proto.ClientStreamRequest(batch=batch)],
        (*MD, ("sessionid", target)),
        half_close=False,
        timeout=None,
    )
    worker = ManualWorker(grid.channel, MD, labels={"fuzz": label})

    async def accounted() -> None:  # each task done, dead, or waiting: exactly once
        s = (await grid.info(target)).stats
        assert s.inflight_tasks == 0, s
        assert s.pending_tasks + s.delayed_tasks + s.completed_tasks + s.failed_tasks == tasks, s

    try:
        await worker.register()
        assert await worker.bound() == target
        worker.open_stream(target)
        dispatched = await worker.next_batch()
        for result in results:
            if isinstance(result, proto.Batch) and result.dispatch_id == DISPATCHED:
                result.dispatch_id = dispatched.dispatch_id
            worker.send(result)
        if half_close:
            worker.close_stream()
        with contextlib.suppress(TimeoutError):
            outcome = await worker.stream_outcome(within=OPEN_WAIT_S)
            assert documented(method("WorkerStream"), outcome.code, outcome.details), outcome
        await worker.stop()
        await eventually(accounted, within=5.0)
    finally:
        await worker.stop()
        submit.cancel()
        await grid.close(target)
        await settle(fuzz, method("WorkerStream"), None, [])


async def test_server_still_serves_and_nothing_leaked(fuzz: Fuzz) -> None:
    """After the fuzzing: a round trip works, only closed sessions remain, nothing logged."""
    await fuzz.grid.healthy()
    listed = await fuzz.grid.sessions(include_closed=True)
    states = {s.session.id: s.session.state for s in listed}
    assert fuzz.created <= states.keys()
    assert {states[sid] for sid in fuzz.created} <= {proto.SessionState.SESSION_STATE_CLOSED}
    assert not fuzz.log.records, fuzz.log.describe()
