"""Which failures the client retries, how long it waits between tries, and when it gives up.

Sans-I/O: the caller passes the current time (the event loop's clock) and sleeps itself.

- **Retryable**: ``Unavailable`` (connection refused, the transport dropped or was cut, the
  queue manager is stopping). Everything else — authentication, invalid arguments, a closed
  session, a stream superseded by a newer one (``ABORTED``) — is final.
- **Backoff**: exponential from :data:`INITIAL_DELAY` doubling to :data:`MAX_DELAY`, each delay
  jittered to 50 to 100 % so that many clients of a restarted queue manager do not reconnect in
  lockstep.
- **Give up**: ``reconnect_timeout`` seconds after the failure that started the episode
  (0: at once); the caller then raises :func:`gave_up`'s ``ReconnectFailed``.
- **Lost session**: ``NOT_FOUND`` for a session this client already had becomes
  ``SessionLost`` (:func:`lost_if_unknown`, the one place this mapping is made).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from alpcrun.errors import (
    AlpcrunError,
    ReconnectFailed,
    SessionLost,
    SessionNotFound,
    Unavailable,
)

INITIAL_DELAY = 0.05
"""Seconds before the first reconnect attempt (before jitter)."""
MAX_DELAY = 2.0
"""Cap of the doubling delay between attempts (before jitter)."""


def is_retryable(error: AlpcrunError) -> bool:
    """Whether a failed call or stream may be tried again after a pause.

    ``ReconnectFailed`` itself is final: it is what giving up produces.
    """
    return isinstance(error, Unavailable) and not isinstance(error, ReconnectFailed)


def lost_if_unknown(error: AlpcrunError, session_id: str) -> AlpcrunError:
    """Turn ``NOT_FOUND`` for a session this client was using into ``SessionLost``.

    Args:
        error: The mapped error of a call or stream on the session.
        session_id: The session the call was about (empty: none, never lost).

    Returns:
        ``SessionLost`` (with ``error`` as its cause) or ``error`` unchanged.
    """
    if session_id and isinstance(error, SessionNotFound):
        lost = SessionLost(session_id, str(error))
        lost.__cause__ = error
        return lost
    return error


class Backoff:
    """The delays and the deadline of one reconnect episode.

    Args:
        timeout: Seconds from ``now`` after which :meth:`delay` returns ``None``.
        now: The current time (the clock the caller keeps using).
        initial: The first delay, before jitter.
        cap: The largest delay, before jitter.
        rng: Returns floats in [0, 1) for the jitter (injectable for tests).
    """

    __slots__ = ("_next", "_rng", "attempts", "cap", "deadline", "started", "timeout")

    def __init__(
        self,
        timeout: float,
        *,
        now: float,
        initial: float = INITIAL_DELAY,
        cap: float = MAX_DELAY,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.timeout = timeout
        self.started = now
        self.deadline = now + timeout
        self.cap = cap
        self.attempts = 0
        """Delays handed out so far (one per attempt)."""
        self._next = initial
        self._rng = rng

    def remaining(self, now: float) -> float:
        """Seconds left until the deadline (never negative)."""
        return max(0.0, self.deadline - now)

    def delay(self, now: float) -> float | None:
        """The pause before the next attempt, or ``None`` once the deadline has passed.

        A delay never reaches past the deadline, so the last attempt happens at it.

        Args:
            now: The current time.

        Returns:
            Seconds to wait, or ``None``: give up.
        """
        remaining = self.deadline - now
        if remaining <= 0:
            return None
        base = self._next
        self._next = min(self.cap, base * 2)
        self.attempts += 1
        return min(base * (0.5 + self._rng() / 2), remaining)


def gave_up(address: str, backoff: Backoff, now: float, cause: AlpcrunError) -> ReconnectFailed:
    """The error pending work fails with when an episode's deadline has passed.

    Args:
        address: The queue manager address the client dials.
        backoff: The episode that ran out.
        now: The current time.
        cause: The last retryable error (chained as ``__cause__``).

    Returns:
        The exception, not raised.
    """
    if backoff.timeout <= 0:
        message = (
            f"lost the connection to the queue manager at {address} and reconnecting is "
            f"disabled (reconnect_timeout=0): {cause}"
        )
    else:
        message = (
            f"could not reach the queue manager at {address} again within "
            f"reconnect_timeout={backoff.timeout:g}s ({backoff.attempts} attempts over "
            f"{now - backoff.started:.1f}s); is it running? last error: {cause}"
        )
    error = ReconnectFailed(message, address=address, attempts=backoff.attempts)
    error.__cause__ = cause
    return error
