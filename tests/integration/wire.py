"""Raw-wire peers for bad-input tests: byte-level calls, a step-by-step worker, bare HTTP/2.

Everything here talks to a real queue manager with nothing but gRPC (or a bare TCP socket),
so tests can send what no SDK would: bytes that do not decode, results for the wrong
dispatch, messages cut off in the middle.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from alpcrun import proto
from alpcrun.constants import MD_ERROR_FIELD

Metadata = Sequence[tuple[str, str]]
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs
Instr = proto.WorkerInstruction
POOL = proto.Batch.DESCRIPTOR.file.pool
SERVICES: tuple[ServiceDescriptor, ...] = (
    POOL.FindServiceByName(proto.QUEUE_SERVICE_NAME),
    POOL.FindServiceByName(proto.ADMIN_SERVICE_NAME),
    POOL.FindServiceByName(proto.PAYLOAD_CATALOG_SERVICE_NAME),
)
"""Every service of the queue manager, from the descriptors (new RPCs are covered at once)."""
METHODS: tuple[MethodDescriptor, ...] = tuple(m for s in SERVICES for m in s.methods)


def path(method: MethodDescriptor) -> str:
    """The HTTP/2 path of a method."""
    return f"/{method.containing_service.full_name}/{method.name}"


def method(name: str) -> MethodDescriptor:
    """A method by its short name (names are unique across the services)."""
    (found,) = (m for m in METHODS if m.name == name)
    return found


def encode(message: Message | bytes) -> bytes:
    """Serialize a message; bytes go through as they are."""
    return message if isinstance(message, bytes) else message.SerializeToString()


@dataclass
class Outcome:
    """How a call ended, as its client saw it."""

    code: grpc.StatusCode
    details: str
    field: str
    """The ``alpcrun-field`` trailer ("" when absent)."""
    responses: list[bytes] = dataclasses.field(default_factory=list)


async def finish(call: Any, *, streaming: bool) -> Outcome:
    """Read a call to its end (responses as bytes) and return its status."""
    responses: list[bytes] = []
    try:
        if streaming:  # read(), not iteration: a test may have read some already
            while (response := await call.read()) is not EOF:
                responses.append(response)
        else:
            responses.append(await call)
    except grpc.aio.AioRpcError:
        pass
    except asyncio.CancelledError:  # the call was cancelled, or this task is being cancelled
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    trailers = await call.trailing_metadata() or ()
    found = [str(v) for k, v in trailers if k == MD_ERROR_FIELD]
    return Outcome(await call.code(), await call.details() or "", "".join(found), responses)


def start(
    channel: grpc.aio.Channel,
    rpc: MethodDescriptor,
    requests: Sequence[Message | bytes],
    metadata: Metadata,
    *,
    timeout: float | None = 10.0,
    half_close: bool = True,
) -> Any:
    """Start a call of any method with raw or message requests; responses stay bytes.

    A client-streaming call sends ``requests`` and half-closes (unless ``half_close`` is
    false, when the request side stays open until the call ends).
    """
    kinds = (rpc.client_streaming, rpc.server_streaming)
    factory: Any = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }[kinds]
    multicallable = factory(path(rpc), request_serializer=encode, response_deserializer=None)
    if not rpc.client_streaming:
        (request,) = requests
        return multicallable(request, metadata=tuple(metadata), timeout=timeout)

    ended = asyncio.Event()

    async def stream() -> AsyncIterator[Message | bytes]:
        for request in requests:
            yield request
        if not half_close:
            await ended.wait()  # the request side ends with the call, never left hanging

    started = multicallable(stream(), metadata=tuple(metadata), timeout=timeout)
    started.add_done_callback(lambda _call: ended.set())
    return started


async def call(
    channel: grpc.aio.Channel,
    rpc: MethodDescriptor,
    requests: Sequence[Message | bytes],
    metadata: Metadata,
    *,
    deadline: float | None = 10.0,
) -> Outcome:
    """Make a call of any method and read it to its end (``deadline``: gRPC's timeout)."""
    started = start(channel, rpc, requests, metadata, timeout=deadline)
    return await finish(started, streaming=rpc.server_streaming)


def echo(batch: proto.Batch) -> proto.Batch:
    """The correct result batch for a dispatched batch: one result per task, in order."""
    out = proto.Batch(id=batch.id, dispatch_id=batch.dispatch_id)
    for task in batch.tasks:
        out.tasks.add(id=task.id, payload=task.payload)
    return out


class ManualWorker:
    """A worker driven step by step by the test: register, wait for BIND, answer by hand."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        metadata: Metadata,
        *,
        labels: dict[str, str] | None = None,
        concurrency: int = 1,
    ) -> None:
        self.channel = channel
        self.metadata = tuple(metadata)
        self.labels = labels or {}
        self.concurrency = concurrency
        self.id = ""
        self.instructions: asyncio.Queue[proto.WorkerInstruction] = asyncio.Queue()
        self.update: Any = None
        self.stream: Any = None
        self._statuses: asyncio.Queue[proto.WorkerStatus | None] = asyncio.Queue()
        self._results: asyncio.Queue[Message | bytes | None] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    async def register(self) -> str:
        """Open WorkerUpdate, register, and return the assigned id."""
        registration = proto.WorkerRegistration(
            node="manual", pod="manual", labels=self.labels, concurrency=self.concurrency
        )
        self._statuses.put_nowait(proto.WorkerStatus(register=registration))

        async def statuses() -> AsyncIterator[proto.WorkerStatus]:
            while (status := await self._statuses.get()) is not None:
                yield status

        self.update = proto.QueueStub(self.channel).WorkerUpdate(statuses(), metadata=self.metadata)
        first = await self.update.read()
        assert first.type == Instr.TYPE_REGISTERED, first
        self.id = first.worker_id
        self._pump = asyncio.create_task(self._read_instructions())
        return self.id

    async def _read_instructions(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            while (instruction := await self.update.read()) is not EOF:
                self.instructions.put_nowait(instruction)

    async def bound(self, within: float = 10.0) -> str:
        """Wait for a BIND instruction; return its session id."""
        async with asyncio.timeout(within):
            while True:
                instruction = await self.instructions.get()
                if instruction.type == Instr.TYPE_BIND:
                    return instruction.session_id

    def heartbeat(self, state: proto.WorkerState.ValueType, session_id: str = "") -> None:
        """Send a heartbeat reporting ``state`` and the session served ("" for none)."""
        beat = proto.WorkerHeartbeat(state=state, session_id=session_id)
        self._statuses.put_nowait(proto.WorkerStatus(heartbeat=beat))

    def open_stream(self, session_id: str, worker_id: str | None = None) -> None:
        """Open WorkerStream for ``session_id`` (as ``worker_id``, by default its own id)."""
        self._results.put_nowait(None)  # ends the previous stream's request iterator
        self._results = asyncio.Queue()
        results = self._results

        async def outgoing() -> AsyncIterator[Message | bytes]:
            while (item := await results.get()) is not None:
                yield item

        md = (*self.metadata, ("sessionid", session_id), ("workerid", worker_id or self.id))
        self.stream = self.channel.stream_stream(
            path(method("WorkerStream")),
            request_serializer=encode,
            response_deserializer=proto.Batch.FromString,
        )(outgoing(), metadata=md)

    async def next_batch(self, within: float = 10.0) -> proto.Batch:
        """The next task batch the queue manager dispatched on the stream."""
        async with asyncio.timeout(within):
            batch = await self.stream.read()
        assert isinstance(batch, proto.Batch), f"stream ended: {await self.stream.code()}"
        return batch

    def send(self, result: Message | bytes) -> None:
        """Queue a result batch (or raw bytes) for the stream."""
        self._results.put_nowait(result)

    def close_stream(self) -> None:
        """Half-close the WorkerStream."""
        self._results.put_nowait(None)

    async def stream_outcome(self, within: float = 10.0) -> Outcome:
        """Wait for the WorkerStream to end; return how it ended."""
        async with asyncio.timeout(within):
            return await finish(self.stream, streaming=True)

    async def stop(self) -> None:
        """Drop both streams (the worker leaves)."""
        self._results.put_nowait(None)  # end the request iterators before cancelling
        self._statuses.put_nowait(None)
        await asyncio.sleep(0)
        for active in (self.stream, self.update):
            if active is not None:
                active.cancel()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump


# ---------------------------------------------------------------------- bare HTTP/2
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x7
_END_STREAM, _END_HEADERS, _ACK = 0x1, 0x4, 0x1
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_FRAME = 16_384
"""HTTP/2's default SETTINGS_MAX_FRAME_SIZE: DATA frames are cut to this size."""


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    header = struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream)
    return header + payload


def _hpack_int(value: int, prefix_bits: int = 7) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out, value = [limit], value - limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes([*out, value])


def _hpack(headers: Sequence[tuple[str, str]]) -> bytes:
    """Literal header fields without indexing, no Huffman: valid HPACK, no state needed."""
    out = bytearray()
    for name, value in headers:
        out += b"\x00"
        for text in (name.encode(), value.encode()):
            out += _hpack_int(len(text)) + text
    return bytes(out)


def grpc_message(body: bytes, *, declared: int | None = None) -> bytes:
    """A gRPC length-prefixed message; ``declared`` may claim another length."""
    return b"\x00" + struct.pack(">I", len(body) if declared is None else declared) + body


class RawHttp2:
    """One bare HTTP/2 connection that starts a gRPC call and can cut it mid-message."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, address: str) -> RawHttp2:
        """Connect and exchange SETTINGS."""
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        conn = cls(reader, writer)
        writer.write(_PREFACE + _frame(_SETTINGS, 0, 0))
        await writer.drain()
        async with asyncio.timeout(5):
            while True:
                kind, flags, _stream, _payload = await conn._read_frame()
                if kind == _SETTINGS and not flags & _ACK:
                    break
        writer.write(_frame(_SETTINGS, _ACK, 0))
        await writer.drain()
        return conn

    async def _read_frame(self) -> tuple[int, int, int, bytes]:
        header = await self.reader.readexactly(9)
        length = int.from_bytes(header[:3], "big")
        stream = int.from_bytes(header[5:9], "big") & 0x7FFF_FFFF
        return header[3], header[4], stream, await self.reader.readexactly(length)

    async def start_call(self, rpc_path: str, metadata: Metadata, stream: int = 1) -> None:
        """Send the HEADERS that open a gRPC call on ``stream``."""
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", rpc_path),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *metadata,
        ]
        self.writer.write(_frame(_HEADERS, _END_HEADERS, stream, _hpack(headers)))
        await self.writer.drain()

    async def send(self, data: bytes, stream: int = 1, *, end_stream: bool = False) -> None:
        """Send ``data`` as DATA frames (at most MAX_FRAME bytes each)."""
        chunks = [data[i : i + MAX_FRAME] for i in range(0, len(data), MAX_FRAME)] or [b""]
        for i, chunk in enumerate(chunks):
            last = end_stream and i == len(chunks) - 1
            self.writer.write(_frame(_DATA, _END_STREAM if last else 0, stream, chunk))
        await self.writer.drain()

    async def stream_ended(self, stream: int = 1, within: float = 10.0) -> bool:
        """Whether the server ends ``stream`` (trailers or RST_STREAM) or the connection."""
        try:
            async with asyncio.timeout(within):
                while True:
                    kind, flags, sid, _payload = await self._read_frame()
                    if kind == _GOAWAY or (sid == stream and kind == _RST_STREAM):
                        return True
                    if sid == stream and kind == _HEADERS and flags & _END_STREAM:
                        return True
        except TimeoutError:
            return False
        except (asyncio.IncompleteReadError, ConnectionError):
            return True  # the server closed the connection

    def close(self) -> None:
        """Close the connection in order (FIN), whatever was left half-sent."""
        self.writer.close()

    def cut(self) -> None:
        """Reset the connection at once (RST, as a crashed peer would), mid-message."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()
