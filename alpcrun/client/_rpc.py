"""The client's connection: channel, Queue stub, call metadata, stream options and error mapping.

Unary calls go through :meth:`Connection.unary`, which waits for the channel to connect and
retries idempotent calls on ``UNAVAILABLE`` within ``reconnect_timeout`` (see
:mod:`alpcrun.client._retry`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import TypeVar

import grpc
import grpc.aio

from alpcrun.client._retry import Backoff, gave_up, is_retryable, lost_if_unknown
from alpcrun.config import ClientSettings
from alpcrun.constants import MD_ACKS, MD_API_KEY, MD_SESSION_ID
from alpcrun.errors import AlpcrunError, DeadlineExceeded, SessionClosed
from alpcrun.payload.store import StoreOptions
from alpcrun.proto import GetSessionRequest, QueueStub, SessionState
from alpcrun.proto.status import from_rpc_error

T = TypeVar("T")
Req = TypeVar("Req")
Resp = TypeVar("Resp")

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
        address: The queue manager address (for error messages).
        reconnect_timeout: Seconds to keep trying after a retryable failure (0: none).
        payloads: Where this client runs, for the payload store (None: no local agent).
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        api_key: str | None,
        options: StreamOptions,
        *,
        address: str = "",
        reconnect_timeout: float = 0.0,
        payloads: StoreOptions | None = None,
    ) -> None:
        self.channel = channel
        self.payloads = payloads or StoreOptions(api_key=api_key)
        self.stub = QueueStub(channel)
        self.options = options
        self.address = address
        self.reconnect_timeout = reconnect_timeout
        self.metadata: Metadata = ((MD_API_KEY, api_key),) if api_key else ()

    def stream_metadata(self, session_id: str) -> Metadata:
        """Metadata of a ``ClientStream`` call: the API key, ``sessionid`` and ``acks: 1``."""
        return (*self.metadata, (MD_SESSION_ID, session_id), (MD_ACKS, "1"))

    def backoff(self) -> Backoff:
        """A reconnect episode starting now, bounded by ``reconnect_timeout``."""
        return Backoff(self.reconnect_timeout, now=asyncio.get_running_loop().time())

    async def unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        *,
        resend: bool = True,
        session_id: str = "",
        backoff: Backoff | None = None,
        cause: AlpcrunError | None = None,
    ) -> Resp:
        """Make a unary call, riding out connection failures within ``reconnect_timeout``.

        The call waits for the channel to connect (``wait_for_ready``) until the deadline,
        so a refused connection never sends anything. If the call fails with
        ``UNAVAILABLE`` after that, it is sent again after a backoff only when ``resend``
        (idempotent calls: GetSession, UpdateSession, CloseSession).

        Args:
            method: The stub method, e.g. ``conn.stub.GetSession``.
            request: The request message.
            resend: Whether sending the request twice is harmless.
            session_id: The session the call is about; ``NOT_FOUND`` then means
                ``SessionLost``. Empty for calls that may name an unknown session.
            backoff: The reconnect episode to use (default: a new one).
            cause: The failure that started ``backoff``'s episode, reported if it runs out.

        Returns:
            The response message.

        Raises:
            ReconnectFailed: The queue manager could not be reached within the deadline.
            SessionLost: The queue manager no longer knows ``session_id``.
            AlpcrunError: The call failed (the subclass matches the status code).
        """
        loop = asyncio.get_running_loop()
        backoff = backoff if backoff is not None else self.backoff()
        while True:
            wait = backoff.remaining(loop.time())
            try:
                return await method(
                    request,
                    metadata=self.metadata,
                    wait_for_ready=wait > 0,
                    timeout=wait if wait > 0 else None,
                )
            except grpc.RpcError as err:
                error = lost_if_unknown(from_rpc_error(err), session_id)
                rpc_error = err
            if isinstance(error, DeadlineExceeded) and wait > 0:
                raise gave_up(self.address, backoff, loop.time(), cause or error)
            if not (resend and is_retryable(error)):
                raise error from rpc_error
            cause = error
            delay = backoff.delay(loop.time())
            if delay is None:
                raise gave_up(self.address, backoff, loop.time(), error)
            await asyncio.sleep(delay)

    async def check_session(self, session_id: str, backoff: Backoff, cause: AlpcrunError) -> None:
        """Before re-attaching: ``GetSession`` within ``backoff``'s episode.

        Args:
            session_id: The session to re-attach to.
            backoff: The reconnect episode under way.
            cause: The failure that started it.

        Raises:
            ReconnectFailed: The queue manager could not be reached in time.
            SessionLost: The queue manager no longer knows the session.
            SessionClosed: The session was closed meanwhile.
            AlpcrunError: Another final failure.
        """
        request = GetSessionRequest(session_id=session_id)
        info = await self.unary(
            self.stub.GetSession, request, session_id=session_id, backoff=backoff, cause=cause
        )
        if info.state == SessionState.SESSION_STATE_CLOSED:
            raise SessionClosed(f"session {session_id} was closed while the client was away")


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
