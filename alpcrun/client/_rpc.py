"""The client's connection: channel, Queue stub, call metadata, stream options and error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable
from dataclasses import dataclass
from typing import TypeVar

import grpc
import grpc.aio

from alpcrun.config import ClientSettings
from alpcrun.constants import MD_ACKS, MD_API_KEY, MD_SESSION_ID
from alpcrun.proto import QueueStub
from alpcrun.proto.status import from_rpc_error

T = TypeVar("T")

Metadata = tuple[tuple[str, str], ...]
"""gRPC call metadata as (key, value) pairs."""

WINDOW_MAX_TASKS = 100_000
"""Upper bound on the per-session window of unsent plus unanswered tasks."""
WINDOW_BATCHES = 16
"""The window holds this many full batches, up to :data:`WINDOW_MAX_TASKS`."""


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """Batching and flow-control knobs of a session's client stream."""

    max_batch_tasks: int
    """Most tasks packed into one batch."""
    max_batch_bytes: int
    """Payload bytes at which a batch is sent."""
    linger: float
    """Seconds a partly filled batch waits for more tasks (0: the next event-loop turn)."""
    window: int
    """Most tasks unsent or unanswered at once per session; ``submit`` and ``map`` wait beyond."""

    @classmethod
    def from_settings(cls, settings: ClientSettings) -> StreamOptions:
        """Derive the options from the client settings (window: 16 batches, at most 100,000)."""
        window = min(WINDOW_MAX_TASKS, WINDOW_BATCHES * settings.max_batch_tasks)
        return cls(
            max_batch_tasks=settings.max_batch_tasks,
            max_batch_bytes=settings.max_batch_bytes,
            linger=settings.linger,
            window=max(window, settings.max_batch_tasks),
        )


class Connection:
    """What every session of one client shares: the channel, the stub and the metadata.

    Args:
        channel: An open ``grpc.aio`` channel to the queue manager.
        api_key: Sent as ``api_key`` metadata on every call when set.
        options: Batching and flow-control options for the sessions' streams.
    """

    def __init__(
        self, channel: grpc.aio.Channel, api_key: str | None, options: StreamOptions
    ) -> None:
        self.channel = channel
        self.stub = QueueStub(channel)
        self.options = options
        self.metadata: Metadata = ((MD_API_KEY, api_key),) if api_key else ()

    def stream_metadata(self, session_id: str) -> Metadata:
        """Metadata of a ``ClientStream`` call: the API key, ``sessionid`` and ``acks: 1``."""
        return (*self.metadata, (MD_SESSION_ID, session_id), (MD_ACKS, "1"))


async def unary(call: Awaitable[T]) -> T:
    """Await a unary call, translating a failed status into an :mod:`alpcrun.errors` error.

    Args:
        call: The call object returned by a stub method.

    Returns:
        The response message.

    Raises:
        AlpcrunError: The call failed (the subclass matches the status code).
    """
    try:
        return await call
    except grpc.RpcError as err:
        raise from_rpc_error(err) from err


async def read_all(call: AsyncIterable[T]) -> list[T]:
    """Read a server-streaming call to its end, translating a failed status.

    Args:
        call: The call object returned by a server-streaming stub method.

    Returns:
        Every response message, in order.

    Raises:
        AlpcrunError: The call failed (the subclass matches the status code).
    """
    try:
        return [message async for message in call]
    except grpc.RpcError as err:
        raise from_rpc_error(err) from err
