"""Which sessions may store shared data: those the queue manager reports open.

A central cache started with a queue-manager address refuses ``SetSharedData`` and
``UpdateSharedData`` for a session the queue manager does not know, or knows as closed
(NOT_FOUND), and answers UNAVAILABLE when the queue manager cannot be asked, never an
acceptance. Sessions found open are remembered for ``remember_s`` seconds, so the uploads
of a session ask the queue manager once per period, and concurrent first uploads of one
session share one question (single-flight). A session closed within that period may still
be accepted; the central cache's poll of closed sessions deletes what it stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import grpc.aio

from alpcrun._clock import Clock
from alpcrun.cache.singleflight import SingleFlight
from alpcrun.constants import MD_API_KEY
from alpcrun.errors import AlpcrunError, InvalidArgument, SessionNotFound, Unavailable
from alpcrun.proto import GetSessionRequest, QueueStub, SessionState
from alpcrun.proto.status import from_rpc_error

SessionLookup = Callable[[str], Awaitable[bool]]
"""Asks the queue manager about a session: True if open, False if closed; raises
:class:`SessionNotFound` if it does not know it, any other :class:`AlpcrunError` if it cannot
be asked."""

MAX_REMEMBERED = 100_000
"""Most open sessions remembered at once (the oldest are forgotten first beyond)."""


@dataclass(frozen=True, slots=True)
class OpenSessionsStatistics:
    """Counters of an :class:`OpenSessions`."""

    remembered: int
    """Sessions remembered as open now (some may have run out of time)."""
    lookups: int
    """Questions asked of the queue manager."""
    refused: int
    """Checks answered NOT_FOUND (unknown or closed sessions)."""
    failures: int
    """Questions that could not be answered (the queue manager unreachable)."""


class OpenSessions:
    """Sessions the queue manager reported open, remembered for ``remember_s`` seconds."""

    def __init__(
        self,
        lookup: SessionLookup,
        *,
        clock: Clock,
        remember_s: float,
        max_remembered: int = MAX_REMEMBERED,
    ) -> None:
        self._lookup = lookup
        self._clock = clock
        self.remember_s = remember_s
        self._max = max_remembered
        self._open: dict[str, float] = {}
        self._flight: SingleFlight[str, None] = SingleFlight()
        self._refused = 0
        self._failures = 0

    async def check(self, session_id: str) -> None:
        """Return if the session is open; raise SessionNotFound or Unavailable otherwise."""
        until = self._open.get(session_id)
        if until is not None and until > self._clock.monotonic():
            return
        await self._flight.do(session_id, lambda: self._ask(session_id))

    def forget(self, session_id: str) -> None:
        """Drop the session from memory (it was reported closed)."""
        self._open.pop(session_id, None)

    def statistics(self) -> OpenSessionsStatistics:
        """A snapshot of the counters."""
        return OpenSessionsStatistics(
            remembered=len(self._open),
            lookups=self._flight.fetches,
            refused=self._refused,
            failures=self._failures,
        )

    async def _ask(self, session_id: str) -> None:
        try:
            is_open = await self._lookup(session_id)
        except (SessionNotFound, InvalidArgument):  # an id the queue manager cannot hold
            self._refused += 1
            self.forget(session_id)
            raise SessionNotFound(
                f"session {session_id!r} is unknown to the queue manager; shared data needs an "
                "open session",
                field="header.session_id",
            ) from None
        except AlpcrunError as exc:
            self._failures += 1
            raise Unavailable(
                f"cannot check session {session_id!r} with the queue manager, so its shared "
                f"data is not stored: {exc}"
            ) from exc
        if not is_open:
            self._refused += 1
            self.forget(session_id)
            raise SessionNotFound(
                f"session {session_id!r} is closed; shared data needs an open session",
                field="header.session_id",
            )
        self._remember(session_id)

    def _remember(self, session_id: str) -> None:
        now = self._clock.monotonic()
        if len(self._open) >= self._max:
            self._open = {s: t for s, t in self._open.items() if t > now}
            while len(self._open) >= self._max:  # all still live: forget the oldest
                del self._open[next(iter(self._open))]
        self._open.pop(session_id, None)  # re-inserted last: dict order is age order
        self._open[session_id] = now + self.remember_s


class QueueManagerLookup:
    """A :data:`SessionLookup` over the queue manager's ``Queue/GetSession``.

    Args:
        channel: Returns the channel to the queue manager (its owner opens and closes it).
        api_key: Sent as ``api_key`` metadata.
        timeout_s: Longest one question may take.
    """

    def __init__(
        self,
        channel: Callable[[], grpc.aio.Channel],
        *,
        api_key: str | None,
        timeout_s: float = 5.0,
    ) -> None:
        self._channel = channel
        self._metadata = ((MD_API_KEY, api_key),) if api_key else ()
        self.timeout_s = timeout_s

    async def __call__(self, session_id: str) -> bool:
        """True if the session is open, False if closed; SessionNotFound if unknown."""
        try:  # asked once per session and remember_s: a stub per question costs nothing
            session = await QueueStub(self._channel()).GetSession(
                GetSessionRequest(session_id=session_id),
                metadata=self._metadata,
                timeout=self.timeout_s,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        return bool(session.state != SessionState.SESSION_STATE_CLOSED)
