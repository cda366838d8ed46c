"""The wire protocol works with nothing but the generated stubs (no alpcrun SDK)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from alpcrun import proto
from alpcrun.config import QueueManagerSettings
from alpcrun.queue_manager import QueueManager

pytestmark = pytest.mark.integration
KEY = "raw-key"
MD = (("api_key", KEY),)


async def _raw_worker(address: str, stop: asyncio.Event) -> None:
    """A worker speaking the protocol by hand: uppercases payloads, fails b'boom'."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = proto.QueueStub(channel)
        outbox: asyncio.Queue[proto.WorkerStatus | None] = asyncio.Queue()
        await outbox.put(
            proto.WorkerStatus(register=proto.WorkerRegistration(node="n", pod="p", concurrency=1))
        )

        async def statuses():
            while (item := await outbox.get()) is not None:
                yield item

        update = stub.WorkerUpdate(statuses(), metadata=MD)
        worker_id = ""
        stream_task = None
        async for instruction in update:
            if instruction.type == proto.WorkerInstruction.TYPE_REGISTERED:
                worker_id = instruction.worker_id
            elif instruction.type == proto.WorkerInstruction.TYPE_BIND:
                md = (*MD, ("sessionid", instruction.session_id), ("workerid", worker_id))
                stream_task = asyncio.create_task(_serve(stub, md))
            if stop.is_set():
                break
        if stream_task:
            stream_task.cancel()


async def _serve(stub: proto.QueueStub, md) -> None:
    results: asyncio.Queue[proto.Batch | None] = asyncio.Queue()

    async def outgoing():
        while (b := await results.get()) is not None:
            yield b

    call = stub.WorkerStream(outgoing(), metadata=md)
    async for batch in call:
        out = proto.Batch(id=batch.id, session_id=batch.session_id, dispatch_id=batch.dispatch_id)
        for t in batch.tasks:
            if t.payload == b"boom":
                out.tasks.add(id=t.id, error=proto.TaskError(message="boom!", type="ValueError"))
            else:
                out.tasks.add(id=t.id, payload=t.payload.upper())
        await results.put(out)


async def test_raw_client_streams_1000_tasks_and_gets_1000_results():
    """A stub-only client gets one correct result per task; a failing task is dead-lettered."""
    settings = QueueManagerSettings(host="127.0.0.1", port=0, metrics_port=None, api_key=KEY)
    async with QueueManager(settings=settings) as qm:
        stop = asyncio.Event()
        worker = asyncio.create_task(_raw_worker(qm.address, stop))
        async with grpc.aio.insecure_channel(qm.address) as channel:
            stub = proto.QueueStub(channel)
            session = await stub.CreateSession(
                proto.CreateSessionRequest(attributes=proto.SessionAttributes(app_id="raw")),
                metadata=MD,
            )
            requests: asyncio.Queue[proto.ClientStreamRequest | None] = asyncio.Queue()
            for b in range(10):
                batch = proto.Batch(id=f"b{b}")
                for i in range(100):
                    n = b * 100 + i
                    batch.tasks.add(
                        id=f"t{n}", payload=b"boom" if n == 500 else f"task-{n}".encode()
                    )
                await requests.put(proto.ClientStreamRequest(batch=batch))

            async def reqs():
                while (r := await requests.get()) is not None:
                    yield r

            call = stub.ClientStream(reqs(), metadata=(*MD, ("sessionid", session.id)))
            got: dict[str, proto.Task] = {}
            async for response in call:
                for t in response.results.tasks:
                    assert t.id not in got
                    got[t.id] = t
                if len(got) == 1000:
                    break
            call.cancel()
            assert len(got) == 1000
            assert got["t7"].payload == b"TASK-7"
            assert got["t500"].error.message == "boom!"
            dead = [
                t
                async for b in stub.ClientStreamDeadLetters(
                    proto.DeadLettersRequest(session_id=session.id), metadata=MD
                )
                for t in b.tasks
            ]
            assert [t.id for t in dead] == ["t500"]
            assert dead[0].error.type == "ValueError"
        stop.set()
        worker.cancel()
