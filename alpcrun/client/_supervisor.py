"""Owns the gRPC call of a session's stream: opens it, and reconnects when it is lost.

When the call fails with a retryable error (the connection dropped or was cut, the queue
manager restarted), the supervisor waits with backoff, checks the session still exists
(``GetSession``), opens a new call with ``acks: 1`` and has the writer send every batch that
still has unanswered tasks again (:class:`~alpcrun.client._pending.Unfinished`); the queue
manager ignores batch ids it still knows. Pending handles and maps only fail once
reconnecting is given up (``ReconnectFailed``), the session is gone (``SessionLost``) or the
failure is final.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from alpcrun.client._reader import Reader
from alpcrun.client._results import Counters
from alpcrun.client._retry import Backoff, gave_up, is_retryable, lost_if_unknown
from alpcrun.client._rpc import Connection
from alpcrun.client._writer import Call, Writer
from alpcrun.errors import AlpcrunError, TransportError

logger = logging.getLogger(__name__)

STABLE_AFTER = 1.0
"""A call that lasted this long (or delivered a result) starts a fresh reconnect deadline."""


class Supervisor:
    """Runs a stream's calls one after another until the stream ends for good.

    Each call gets a fresh write loop (:meth:`Writer.start`) and is read by the reader until
    it ends; then the supervisor either reconnects or reports the final error to ``on_fail``
    (once). :meth:`close` stops it after the current call.

    Args:
        conn: The client's connection.
        session_id: The session the stream belongs to.
        writer: The stream's writer.
        reader: The stream's reader.
        counters: The session object's counters (``reconnects``).
        on_fail: Ends the stream with the final error.
    """

    __slots__ = (
        "_closed",
        "_conn",
        "_counters",
        "_loop",
        "_on_fail",
        "_reader",
        "_session_id",
        "_writer",
        "call",
        "end_error",
        "task",
    )

    def __init__(
        self,
        conn: Connection,
        session_id: str,
        *,
        writer: Writer,
        reader: Reader,
        counters: Counters,
        on_fail: Callable[[AlpcrunError], None],
    ) -> None:
        self._conn = conn
        self._session_id = session_id
        self._writer = writer
        self._reader = reader
        self._counters = counters
        self._on_fail = on_fail
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self.end_error: AlpcrunError | None = None
        """When set, a call that ends is not replaced: the stream fails with this error."""
        self.call: Call | None = None
        """The current (or last) call."""
        self.task: asyncio.Task[None] | None = None
        """The supervising task, once :meth:`start` was called."""

    def start(self) -> asyncio.Task[None]:
        """Start the supervising task (opens the first call)."""
        self.task = asyncio.create_task(self._run(), name=f"alpcrun-stream-{self._session_id}")
        return self.task

    def close(self) -> None:
        """Cancel the current call and open no other (the stream has ended)."""
        self._closed = True
        if self.call is not None:
            self.call.cancel()

    async def _run(self) -> None:
        backoff: Backoff | None = None
        loop = self._loop
        try:
            while True:
                opened = loop.time()
                error = await self._attempt()
                if self._closed:
                    return
                if self.end_error is not None:
                    self._on_fail(self.end_error)
                    return
                error = lost_if_unknown(error, self._session_id)
                if not is_retryable(error):
                    self._on_fail(error)
                    return
                if backoff is None or self._reader.answered or loop.time() - opened >= STABLE_AFTER:
                    backoff = self._conn.backoff()
                logger.warning(
                    "session %s: client stream lost (%s); reconnecting", self._session_id, error
                )
                failure = await self._reattach(backoff, error)
                if failure is not None:
                    self._on_fail(failure)
                    return
                self._counters.reconnects += 1
        except Exception as exc:  # a bug here must not leave handles waiting forever
            logger.exception("client stream of session %s failed", self._session_id)
            self._on_fail(TransportError(f"client stream failed: {exc!r}"))

    async def _attempt(self) -> AlpcrunError:
        """Open a call, send every unfinished batch, route results until the call ends."""
        metadata = self._conn.stream_metadata(self._session_id)
        call = self.call = self._conn.stub.ClientStream(None, metadata=metadata)
        self._writer.start(call)
        try:
            return await self._reader.read(call)
        finally:
            call.cancel()
            self._writer.stop()

    async def _reattach(self, backoff: Backoff, cause: AlpcrunError) -> AlpcrunError | None:
        """Wait, then check the session is still there; return the final error if not."""
        delay = backoff.delay(self._loop.time())
        if delay is None:
            return gave_up(self._conn.address, backoff, self._loop.time(), cause)
        await asyncio.sleep(delay)
        try:
            await self._conn.check_session(self._session_id, backoff, cause)
        except AlpcrunError as exc:
            return exc
        logger.info("session %s: re-attaching", self._session_id)
        return None
