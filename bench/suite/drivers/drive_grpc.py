"""The physical-limit baseline: a bare grpc.aio bidi-stream echo on loopback.

A server in a child process (same interpreter) echoes every message it reads on one
bidirectional stream; the client builds alpcrun's own ``Batch`` protobuf of ``B`` tasks
carrying 8 bytes each (the message alpcrun's client sends), keeps a window of messages in
flight and counts items per second. No queue, no scheduling, no worker: what one grpc.aio
stream on this machine carries, to compare alpcrun's W1 with at the same batch size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import grpc.aio
from google.protobuf import __version__ as protobuf_version

from alpcrun.proto import Batch, Task
from bench.suite import common, peer
from bench.suite.common import Config, Measurement
from bench.throughput import _die_with_parent, _free_port

SYSTEM = "grpc"
METHOD = "/bench.Echo/Echo"
BATCH_SIZES = (1, 100, 1000)
"""Tasks per message; alpcrun's client batches up to 1,000 tasks (``max_batch_tasks``)."""
MESSAGE_WINDOW = 8
"""Messages in flight on the stream."""
MIN_MESSAGES = 20
"""Fewest messages per W1 repetition: at 1,000 items a message, the suite's N (10,000 at most)
would be 10 messages, too few to time; the baseline then runs more items than the systems do."""
READY_TIMEOUT_S = 30.0


# -- server ------------------------------------------------------------------------------------


async def _echo(
    requests: AsyncIterator[Batch], context: grpc.aio.ServicerContext[Batch, Batch]
) -> AsyncIterator[Batch]:
    async for batch in requests:
        yield batch


async def serve(port: int) -> None:
    """Serve the echo on 127.0.0.1:``port`` until SIGTERM."""
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Echo": grpc.stream_stream_rpc_method_handler(
                _echo,
                request_deserializer=Batch.FromString,
                response_serializer=Batch.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=0)


@contextlib.contextmanager
def echo_server() -> Iterator[str]:
    """The echo server in a child process for the ``with`` block; its address."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr,
        preexec_fn=_die_with_parent,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- client ------------------------------------------------------------------------------------


def _batch(first: int, size: int) -> Batch:
    """A batch of ``size`` tasks carrying the 8-byte integers ``first``, ``first + 1``, ..."""
    return Batch(
        id=str(first),
        tasks=[
            Task(id=str(i), payload=i.to_bytes(8, "little")) for i in range(first, first + size)
        ],
    )


class Client:
    """One channel and one open echo stream."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.call: grpc.aio.StreamStreamCall[Batch, Batch] | None = None

    async def open(self) -> None:
        await asyncio.wait_for(self.channel.channel_ready(), READY_TIMEOUT_S)
        echo = self.channel.stream_stream(
            METHOD,
            request_serializer=Batch.SerializeToString,
            response_deserializer=Batch.FromString,
        )
        self.call = echo(None)

    async def close(self) -> None:
        if self.call is not None:
            with contextlib.suppress(Exception):
                await self.call.done_writing()
            self.call.cancel()
        await self.channel.close(None)

    async def stream(self, items: int, size: int) -> Measurement:
        """``items`` items in messages of ``size``, ``MESSAGE_WINDOW`` messages in flight."""
        assert self.call is not None
        call = self.call
        messages = -(-items // size)
        space = asyncio.Semaphore(MESSAGE_WINDOW)
        failures = 0

        async def write() -> None:
            for m in range(messages):
                await space.acquire()
                first = m * size
                await call.write(_batch(first, min(size, items - first)))

        start = time.perf_counter()
        writer = asyncio.ensure_future(write())
        try:
            for m in range(messages):
                reply = await call.read()
                space.release()
                first = m * size
                want = min(size, items - first)
                if (
                    not isinstance(reply, Batch)
                    or len(reply.tasks) != want
                    or reply.tasks[-1].payload != (first + want - 1).to_bytes(8, "little")
                ):
                    failures += want
            await writer
        finally:
            writer.cancel()
        return Measurement(tasks=items, seconds=time.perf_counter() - start, failures=failures)

    async def round_trips(self, n: int) -> Measurement:
        """W2: one single-item message in flight at a time."""
        assert self.call is not None
        latencies: list[float] = []
        failures = 0
        start = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            await self.call.write(_batch(i, 1))
            reply = await self.call.read()
            latencies.append(time.perf_counter() - t0)
            ok = isinstance(reply, Batch) and reply.tasks[0].payload == i.to_bytes(8, "little")
            failures += not ok
        return Measurement(n, time.perf_counter() - start, failures, latencies)


def run_workloads(config: Config, client: Client, runner: asyncio.Runner) -> None:
    """W1 per batch size and W2; the rest does not apply to a bare echo."""
    if common.wants(config, "W1"):
        for size in BATCH_SIZES:

            def w1(n: int, size: int = size) -> Measurement:
                return runner.run(client.stream(max(n, MIN_MESSAGES * size), size))

            common.repeat(config, "W1", f"batch{size}", w1)
    if common.wants(config, "W2"):
        common.repeat(config, "W2", "closed_loop", lambda n: runner.run(client.round_trips(n)))
    for workload in ("W3", "W4", "W5", "W5b"):
        if common.wants(config, workload):
            common.skip(workload, "-", "not measured for the transport baseline")


def main() -> int:
    """Driver mode (``--config``) or server mode (``--serve PORT``)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="{}", help="JSON of bench.suite.common.Config")
    parser.add_argument("--serve", type=int, metavar="PORT", help="run the echo server")
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return 0
    config = Config.from_json(args.config)
    peer.interrupt_on_sigterm()
    common.meta(
        SYSTEM,
        {"grpcio": grpc.__version__, "protobuf": protobuf_version},
        message="alpcrun.v1.Batch of Tasks with 8-byte payloads",
        batch_sizes=list(BATCH_SIZES),
        message_window=MESSAGE_WINDOW,
        min_messages=MIN_MESSAGES,
        compared_with="alpcrun W1 batch (client max_batch_tasks 1000) vs batch1000",
    )
    with echo_server() as address, asyncio.Runner() as runner:
        client = Client(address)
        try:
            runner.run(client.open())
            run_workloads(config, client, runner)
        finally:
            runner.run(client.close())
    return 0


if __name__ == "__main__":
    sys.exit(main())
