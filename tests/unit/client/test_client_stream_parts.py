"""The parts of a session's stream, each alone: router, writer, reader and supervisor."""

from __future__ import annotations

import asyncio
import itertools

import grpc
import grpc.aio

from alpcrun.client._batcher import Batcher, PackedBatch
from alpcrun.client._pending import IdSource, SeqFilter, Unfinished
from alpcrun.client._reader import Reader
from alpcrun.client._results import Counters, TaskResult, Unclaimed
from alpcrun.client._retry import Backoff
from alpcrun.client._router import Router
from alpcrun.client._supervisor import Supervisor
from alpcrun.client._writer import Writer
from alpcrun.errors import AlpcrunError, SessionClosed, SessionLost, Unavailable
from alpcrun.proto import Batch, ClientStreamResponse, Task, TaskError

# -- helpers ------------------------------------------------------------------------------


class Sink:
    """A routing sink that records what it is given."""

    def __init__(self) -> None:
        self.results: list[TaskResult] = []
        self.errors: list[AlpcrunError] = []

    def _deliver(self, result: TaskResult) -> None:
        self.results.append(result)

    def _fail(self, error: AlpcrunError) -> None:
        self.errors.append(error)


class Parts:
    """A router over fresh bookkeeping, plus a batcher whose tasks are routed to it."""

    def __init__(self, *, window: int = 100, max_tasks: int = 2) -> None:
        self.ids = IdSource()
        self.counters = Counters()
        self.unclaimed = Unclaimed(10)
        self.unfinished = Unfinished()
        self.router = Router(
            ids=self.ids,
            counters=self.counters,
            unclaimed=self.unclaimed,
            unfinished=self.unfinished,
            window=window,
        )
        self.sent: list[PackedBatch] = []
        self.batcher = Batcher(
            session_id="S",
            new_batch_id=self.ids.batch_id,
            max_tasks=max_tasks,
            max_bytes=1 << 20,
            emit=self._emit,
        )

    def _emit(self, batch: PackedBatch) -> None:
        self.unfinished.add(batch)
        self.sent.append(batch)

    def add(self, sink: Sink, index: int, payload: bytes = b"in") -> str:
        """Add one task the way the stream does: id, batcher, then a route."""
        task_id = self.ids.task_id()
        self.router.routes[task_id] = (sink, index, self.batcher.add(task_id, payload, 0))
        return task_id


def ok(task_id: str, payload: bytes = b"out") -> Task:
    return Task(id=task_id, payload=payload)


def failed(task_id: str) -> Task:
    return Task(id=task_id, error=TaskError(type="ValueError", message="bad"))


def packed(count: int) -> list[PackedBatch]:
    """``count`` one-task batches."""
    sent: list[PackedBatch] = []
    counter = itertools.count()
    batcher = Batcher(
        session_id="S",
        new_batch_id=lambda: f"b{next(counter)}",
        max_tasks=1,
        max_bytes=1 << 20,
        emit=sent.append,
    )
    for i in range(count):
        batcher.add(f"t{i}", b"x", 0)
    return sent


class FakeCall:
    """A ``ClientStream`` call: records writes; answers with ``script`` after the first write.

    ``script`` items are responses to yield, or an exception to raise there.
    """

    def __init__(self, script: list[ClientStreamResponse | BaseException] | None = None) -> None:
        self.script = script or []
        self.writes: list[object] = []
        self.done_writing_called = False
        self.cancelled = False
        self._wrote = asyncio.Event()

    async def write(self, request: object) -> None:
        self.writes.append(request)
        self._wrote.set()

    async def done_writing(self) -> None:
        self.done_writing_called = True

    def cancel(self) -> bool:
        self.cancelled = True
        return True

    def __aiter__(self):
        return self._responses()

    async def _responses(self):
        await self._wrote.wait()
        for item in self.script:
            if isinstance(item, BaseException):
                raise item
            yield item


def rpc_error(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class Acks:
    """Stands in for the writer on the reader's side: records acknowledgements."""

    def __init__(self) -> None:
        self.seqs: list[int] = []

    def ack(self, seq: int) -> None:
        self.seqs.append(seq)


# -- Router -------------------------------------------------------------------------------


def test_router_delivers_each_result_to_its_sink_with_its_index():
    """A routed result reaches its sink once, carrying the index given at add time."""
    parts = Parts()
    first, second = Sink(), Sink()
    a = parts.add(first, 7)
    b = parts.add(second, 8)
    parts.router.route(Batch(id=parts.sent[0].request.batch.id, tasks=[ok(b), ok(a, b"A")]))
    assert [(r.index, r.task_id, r.payload) for r in first.results] == [(7, a, b"A")]
    assert [(r.index, r.task_id) for r in second.results] == [(8, b)]
    assert parts.router.routes == {}
    assert (parts.counters.completed, parts.counters.failed) == (2, 0)


def test_router_delivers_a_failed_task_with_its_error_and_counts_it():
    """A task error is delivered as a TaskResult with ``error`` set and counted as failed."""
    parts = Parts()
    sink = Sink()
    task_id = parts.add(sink, 0)
    parts.router.route(Batch(id="x", tasks=[failed(task_id)]))
    (result,) = sink.results
    assert result.error is not None
    assert result.error.message == "bad"
    assert result.payload == b""
    assert (parts.counters.completed, parts.counters.failed) == (0, 1)


def test_router_forgets_a_batch_only_once_all_its_tasks_are_answered():
    """A half-answered batch stays unfinished (it is resent); the last answer retires it."""
    parts = Parts(max_tasks=2)
    sink = Sink()
    a, b = parts.add(sink, 0), parts.add(sink, 1)
    (batch,) = parts.sent
    parts.router.route(Batch(id=batch.request.batch.id, tasks=[ok(a)]))
    assert batch in parts.unfinished
    parts.router.route(Batch(id=batch.request.batch.id, tasks=[ok(b)]))
    assert batch not in parts.unfinished


def test_router_drops_a_repeat_of_its_own_task_without_delivering_it():
    """A result for a task this stream issued and already delivered is a counted repeat."""
    parts = Parts(max_tasks=1)
    sink = Sink()
    task_id = parts.add(sink, 0)
    own_batch = Batch(id=parts.sent[0].request.batch.id, tasks=[ok(task_id)])
    parts.router.route(own_batch)
    parts.router.route(own_batch)
    assert len(sink.results) == 1
    assert parts.counters.duplicate_tasks == 1
    assert parts.counters.completed == 1
    assert len(parts.unclaimed) == 0


def test_router_hands_results_nobody_awaits_to_unclaimed():
    """A result of another client's task (or a resubmitted dead letter) goes to unclaimed."""
    parts = Parts()
    parts.router.route(Batch(id="other-b0", tasks=[ok("other-1", b"X"), failed("other-2")]))
    taken = parts.unclaimed.take()
    assert [(r.index, r.task_id, r.payload) for r in taken] == [
        (-1, "other-1", b"X"),
        (-1, "other-2", b""),
    ]
    assert taken[1].error is not None
    assert (parts.counters.completed, parts.counters.failed) == (1, 1)


def test_router_signals_space_only_once_below_the_window():
    """Routing sets ``space`` when the table drops below the window, not while it is full."""
    parts = Parts(window=2)
    sink = Sink()
    ids = [parts.add(sink, i) for i in range(3)]
    parts.router.route(Batch(id="x", tasks=[ok(ids[0])]))
    assert not parts.router.space.is_set()  # two left: still at the window
    parts.router.route(Batch(id="x", tasks=[ok(ids[1])]))
    assert parts.router.space.is_set()


def test_router_fail_fails_each_sink_once_and_forgets_every_route():
    """Failing the router fails every sink with a pending task exactly once."""
    parts = Parts()
    many, one = Sink(), Sink()
    for i in range(3):
        parts.add(many, i)
    parts.add(one, 0)
    error = SessionLost("gone")
    parts.router.fail(error)
    assert many.errors == [error]
    assert one.errors == [error]
    assert parts.router.routes == {}
    assert parts.router.space.is_set()


# -- Writer -------------------------------------------------------------------------------


async def test_writer_sends_unfinished_batches_first_on_a_new_call():
    """A new call gets every unfinished batch in order, then batches sent afterwards."""
    unfinished = Unfinished()
    old, new = packed(2)
    unfinished.add(old)
    writer = Writer(unfinished, "S")
    call = FakeCall()
    writer.start(call)
    unfinished.add(new)
    writer.send(new)
    await writer.wait_written()
    assert call.writes == [old.request, new.request]
    assert writer.unwritten == 0
    writer.stop()


async def test_writer_skips_a_resent_batch_answered_before_its_turn():
    """A batch answered while queued for resending is not written again."""
    unfinished = Unfinished()
    first, second = packed(2)
    unfinished.add(first)
    unfinished.add(second)
    writer = Writer(unfinished, "S")
    call = FakeCall()
    writer.start(call)
    unfinished.discard(first)
    await writer.wait_written()
    assert call.writes == [second.request]
    writer.stop()


async def test_writer_acks_then_half_closes_in_queue_order():
    """Acks go out in order with batches; a half-close ends the call's writing after them."""
    writer = Writer(Unfinished(), "S")
    call = FakeCall()
    task = writer.start(call)
    writer.ack(4)
    writer.ack(5)
    writer.half_close()
    await task
    assert [request.ack.seq for request in call.writes] == [4, 5]  # type: ignore[attr-defined]
    assert call.done_writing_called


async def test_writer_half_close_carries_over_to_the_next_call():
    """After a half-close, a replacement call also ends its writing once resends are out."""
    unfinished = Unfinished()
    (batch,) = packed(1)
    unfinished.add(batch)
    writer = Writer(unfinished, "S")
    writer.half_close()
    call = FakeCall()
    await writer.start(call)
    assert call.writes == [batch.request]
    assert call.done_writing_called


async def test_writer_close_releases_a_flush_waiting_for_a_lost_call():
    """``wait_written`` returns once the writer is closed, even with batches unwritten."""
    writer = Writer(Unfinished(), "S")
    (batch,) = packed(1)
    writer.send(batch)  # no call yet: stays unwritten
    waiter = asyncio.create_task(writer.wait_written())
    await asyncio.sleep(0)
    assert not waiter.done()
    writer.close()
    await asyncio.wait_for(waiter, 1)
    assert writer.unwritten == 1


# -- Reader -------------------------------------------------------------------------------


async def test_reader_routes_each_message_once_but_acks_every_numbered_one():
    """A message written again after a re-attach is dropped by seq, yet acknowledged again."""
    parts = Parts()
    sink = Sink()
    a, b = parts.add(sink, 0), parts.add(sink, 1)
    receipts, acks = SeqFilter(), Acks()
    reader = Reader(parts.router, receipts, acks)  # type: ignore[arg-type]

    async def responses():
        yield ClientStreamResponse(seq=1, results=Batch(id="x", tasks=[ok(a)]))
        yield ClientStreamResponse(seq=1, results=Batch(id="x", tasks=[ok(a)]))
        yield ClientStreamResponse(seq=2, results=Batch(id="x", tasks=[ok(b)]))

    error = await reader.read(responses())
    assert isinstance(error, SessionClosed)
    assert [r.task_id for r in sink.results] == [a, b]
    assert acks.seqs == [1, 1, 2]
    assert receipts.dropped == 1
    assert parts.counters.duplicate_tasks == 0  # dropped before routing, not as a repeat
    assert reader.answered


async def test_reader_routes_unnumbered_messages_without_acking():
    """A server that does not number results (seq 0) gets every message routed, no acks."""
    parts = Parts()
    sink = Sink()
    a = parts.add(sink, 0)
    acks = Acks()
    reader = Reader(parts.router, SeqFilter(), acks)  # type: ignore[arg-type]

    async def responses():
        yield ClientStreamResponse(results=Batch(id="x", tasks=[ok(a)]))

    await reader.read(responses())
    assert len(sink.results) == 1
    assert acks.seqs == []


async def test_reader_reports_a_failed_call_as_its_domain_error():
    """A call that fails with UNAVAILABLE before any message reads as Unavailable."""
    reader = Reader(Parts().router, SeqFilter(), Acks())  # type: ignore[arg-type]

    async def responses():
        raise rpc_error(grpc.StatusCode.UNAVAILABLE, "down")
        yield  # pragma: no cover

    error = await reader.read(responses())
    assert isinstance(error, Unavailable)
    assert not reader.answered


# -- Supervisor ---------------------------------------------------------------------------


class FakeConn:
    """The parts of a Connection the supervisor uses; hands out scripted calls in turn."""

    address = "fake:1"

    def __init__(self, calls: list[FakeCall], *, session_ok: bool = True) -> None:
        self._calls = iter(calls)
        self.stub = self
        self.session_ok = session_ok
        self.checks = 0

    def stream_metadata(self, session_id: str) -> tuple[tuple[str, str], ...]:
        return (("sessionid", session_id),)

    def ClientStream(self, _requests: None, *, metadata: object) -> FakeCall:
        return next(self._calls)

    def backoff(self) -> Backoff:
        return Backoff(5.0, now=asyncio.get_running_loop().time())

    async def check_session(self, session_id: str, backoff: Backoff, cause: AlpcrunError) -> None:
        self.checks += 1
        if not self.session_ok:
            raise SessionLost(f"session {session_id} is gone")


def supervised(parts: Parts, conn: FakeConn) -> tuple[Supervisor, list[AlpcrunError]]:
    """A started supervisor over ``parts`` whose final errors land in the returned list."""
    ended: list[AlpcrunError] = []
    writer = Writer(parts.unfinished, "S")
    supervisor = Supervisor(
        conn,  # type: ignore[arg-type]
        "S",
        writer=writer,
        reader=Reader(parts.router, SeqFilter(), writer),
        counters=parts.counters,
        on_fail=ended.append,
    )
    supervisor.start()
    return supervisor, ended


async def test_supervisor_reconnects_and_resends_the_unanswered_batch():
    """After UNAVAILABLE it checks the session, opens a new call and resends the batch."""
    parts = Parts(max_tasks=1)
    sink = Sink()
    task_id = parts.add(sink, 0)
    (batch,) = parts.sent
    answer = ClientStreamResponse(
        seq=1, results=Batch(id=batch.request.batch.id, tasks=[ok(task_id)])
    )
    lost = FakeCall([rpc_error(grpc.StatusCode.UNAVAILABLE, "dropped")])
    fresh = FakeCall([answer])
    conn = FakeConn([lost, fresh])
    supervisor, ended = supervised(parts, conn)
    assert supervisor.task is not None
    await asyncio.wait_for(supervisor.task, 5)
    assert lost.writes == [batch.request]
    assert fresh.writes[0] == batch.request
    assert [r.task_id for r in sink.results] == [task_id]
    assert conn.checks == 1
    assert parts.counters.reconnects == 1
    assert len(ended) == 1
    assert isinstance(ended[0], SessionClosed)  # the fresh call then ended cleanly
    assert lost.cancelled
    assert fresh.cancelled


async def test_supervisor_gives_up_when_the_session_is_gone():
    """A lost call whose session no longer exists ends the stream with that error, once."""
    parts = Parts(max_tasks=1)
    parts.add(Sink(), 0)
    conn = FakeConn([FakeCall([rpc_error(grpc.StatusCode.UNAVAILABLE)])], session_ok=False)
    supervisor, ended = supervised(parts, conn)
    assert supervisor.task is not None
    await asyncio.wait_for(supervisor.task, 5)
    assert len(ended) == 1
    assert isinstance(ended[0], SessionLost)
    assert parts.counters.reconnects == 0


async def test_supervisor_with_an_end_error_does_not_reconnect():
    """Once an end error is set (close, detach), a call that ends fails with it instead."""
    parts = Parts(max_tasks=1)
    parts.add(Sink(), 0)
    conn = FakeConn([FakeCall([rpc_error(grpc.StatusCode.UNAVAILABLE)])])
    supervisor, ended = supervised(parts, conn)
    closing = SessionClosed("closed")
    supervisor.end_error = closing
    assert supervisor.task is not None
    await asyncio.wait_for(supervisor.task, 5)
    assert ended == [closing]
    assert conn.checks == 0
