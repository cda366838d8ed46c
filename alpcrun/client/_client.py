"""AsyncClient: the connection to a queue manager and the factory of sessions."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self, Unpack

import grpc.aio
from pydantic import SecretStr

from alpcrun.cache.client import SharedDataClient
from alpcrun.client._attributes import SessionOptions, session_attributes
from alpcrun.client._rpc import Connection, StreamOptions
from alpcrun.client._session import AsyncSession
from alpcrun.config import ClientSettings, load_settings
from alpcrun.errors import AlpcrunError
from alpcrun.payload.store import StoreOptions
from alpcrun.proto import CreateSessionRequest, GetSessionRequest
from alpcrun.proto.channel import open_channel
from alpcrun.tls import ClientTls, client_tls

logger = logging.getLogger(__name__)


class AsyncClient:
    """An asyncio client of the alpcrun queue manager.

    ::

        async with AsyncClient("localhost:1337", api_key="k") as client:
            async with client.session(app_id="demo") as session:
                output = await (await session.submit(b"input"))

    The channel opens on first use. :meth:`close` detaches the sessions still open (they
    stay open on the server) and closes the channel.

    Args:
        address: Queue manager ``host:port``; overrides ``settings.queue_manager``.
        api_key: API key sent on every call; overrides ``settings.api_key``.
        settings: Client settings; default ``load_settings(ClientSettings)`` (environment
            variables ``ALPCRUNCH_CLIENT_*`` and the config file).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        api_key: str | None = None,
        settings: ClientSettings | None = None,
    ) -> None:
        base = settings if settings is not None else load_settings(ClientSettings)
        updates: dict[str, Any] = {}
        if address is not None:
            updates["queue_manager"] = address
        if api_key is not None:
            updates["api_key"] = SecretStr(api_key)
        self._settings = base.model_copy(update=updates) if updates else base
        self._tls: ClientTls | None = client_tls(self._settings)
        self._conn: Connection | None = None
        self._cache_channel: grpc.aio.Channel | None = None
        self._cache: SharedDataClient | None = None
        self._sessions: dict[AsyncSession, None] = {}
        self._closed = False

    @property
    def settings(self) -> ClientSettings:
        """The effective settings (address and API key overrides applied)."""
        return self._settings

    def _connection(self) -> Connection:
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._conn is None:
            settings = self._settings
            key = settings.api_key.get_secret_value() if settings.api_key is not None else None
            channel = open_channel(
                settings.queue_manager, tls=self._tls, max_message_bytes=settings.max_message_bytes
            )
            self._conn = Connection(
                channel,
                key,
                StreamOptions.from_settings(settings),
                address=settings.queue_manager,
                reconnect_timeout=settings.reconnect_timeout,
                payloads=StoreOptions(
                    api_key=key, node=settings.node, agent_socket=settings.payload_socket
                ),
            )
        return self._conn

    def _shared_data(self) -> SharedDataClient:
        """The connection to the central cache, opened on first use."""
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._cache is None:
            s = self._settings
            key = s.api_key.get_secret_value() if s.api_key is not None else None
            self._cache_channel = open_channel(
                s.central_cache, tls=self._tls, max_message_bytes=s.max_message_bytes
            )
            self._cache = SharedDataClient(self._cache_channel, api_key=key)
        return self._cache

    def _track(self, session: AsyncSession) -> AsyncSession:
        self._sessions[session] = None
        return session

    def _forget(self, session: AsyncSession) -> None:
        self._sessions.pop(session, None)

    async def create_session(self, **attrs: Unpack[SessionOptions]) -> AsyncSession:
        """Create a session (``CreateSession``); it stays open until closed explicitly.

        Args:
            **attrs: Session attributes; ``app_id`` is required (see ``SessionOptions``).

        Returns:
            The session, with its resolved attributes.

        ``CreateSession`` waits up to ``reconnect_timeout`` for the queue manager to accept
        the connection, but is never sent twice: a retry after a failure mid-call could
        create a second session. If it fails with ``Unavailable`` once sent, a session may
        or may not have been created (an unused one expires on the server).

        Raises:
            TypeError: An unknown attribute, a wrong type, or no ``app_id``.
            InvalidArgument: The server refused an attribute (``field`` names it).
            ReconnectFailed: The queue manager could not be reached within reconnect_timeout.
            Unavailable: The connection failed after the request was sent.
        """
        conn = self._connection()
        request = CreateSessionRequest(attributes=session_attributes(attrs, create=True))
        info = await conn.unary(conn.stub.CreateSession, request, resend=False)
        return self._track(
            AsyncSession(conn, info, on_end=self._forget, shared=self._shared_data)
        )

    @contextlib.asynccontextmanager
    async def session(self, **attrs: Unpack[SessionOptions]) -> AsyncIterator[AsyncSession]:
        """Create a session for the ``async with`` block and close it afterwards.

        Args:
            **attrs: Session attributes, as for :meth:`create_session`.

        Yields:
            The open session; it is closed on exit, also when the block raised.
        """
        session = await self.create_session(**attrs)
        async with session:
            yield session

    async def attach_session(self, session_id: str) -> AsyncSession:
        """Attach to an existing session (``GetSession``, then a new client stream).

        Results the queue manager buffered while no client was attached are delivered to
        :meth:`AsyncSession.unclaimed_results`. A previously attached stream is ended by the
        server.

        Args:
            session_id: The session's id.

        Returns:
            The attached session.

        Raises:
            SessionNotFound: The id is unknown.
        """
        conn = self._connection()
        request = GetSessionRequest(session_id=session_id)
        info = await conn.unary(conn.stub.GetSession, request)
        session = self._track(
            AsyncSession(conn, info, on_end=self._forget, shared=self._shared_data)
        )
        session._live_stream()
        return session

    async def close(self) -> None:
        """Detach every session still open and close the channel (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for session in list(self._sessions):
            try:
                await session.detach()
            except AlpcrunError:
                logger.warning("detaching session %s failed", session.id, exc_info=True)
        self._sessions.clear()
        if self._conn is not None:
            await self._conn.channel.close(None)
        if self._cache_channel is not None:
            await self._cache_channel.close(None)

    async def __aenter__(self) -> Self:
        self._connection()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncClient {self._settings.queue_manager}>"
