"""The alpcrun exception tree.

Every error alpcrun raises derives from :class:`AlpcrunError`::

    AlpcrunError
    ├── ConfigError                 bad configuration (file, env or flag)
    ├── InvalidArgument             a request field is invalid (.field names it)
    ├── AuthError
    │   ├── Unauthenticated         no API key was sent
    │   └── PermissionDenied        the key is wrong or lacks the role
    ├── SessionError
    │   ├── SessionNotFound         unknown session id
    │   ├── SessionClosed           the session refuses new work
    │   ├── SessionExists           duplicate create
    │   │   └── SharedDataExists    SetSharedData on a session that has shared data
    │   └── SessionLost             the queue manager forgot a session this client was using
    ├── WorkerNotFound              unknown worker id, or not bound to that session
    ├── NotFound                    another named thing is unknown (.field names it)
    ├── ResourceExhausted           a queue, quota or size limit is full
    ├── PayloadError
    │   ├── PayloadStateError       the payload's state forbids it (committed, deleting, stale)
    │   └── PayloadLost             every replica of a committed payload is gone
    ├── TaskFailed                  a task ended in the dead-letter queue (.reason, .error_type)
    └── TransportError              the grid could not be reached or answered badly
        ├── Unavailable             server down, restarting or shutting down
        │   └── ReconnectFailed     the client gave up reconnecting (reconnect_timeout)
        └── DeadlineExceeded        the call timed out

Servers raise these; ``alpcrun.proto.status`` maps them to gRPC status codes in one
table, and clients map status codes back to the same classes.
"""

from __future__ import annotations


class AlpcrunError(Exception):
    """Root of every alpcrun error."""


class ConfigError(AlpcrunError):
    """The configuration (file, environment or flags) is invalid."""


class InvalidArgument(AlpcrunError):
    """A request field is invalid.

    Attributes:
        field: Dotted name of the offending field (e.g. ``attributes.priority``).
    """

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class AuthError(AlpcrunError):
    """Authentication or authorization failed."""


class Unauthenticated(AuthError):
    """No credentials were sent."""


class PermissionDenied(AuthError):
    """The credentials are wrong or lack the needed role."""


class SessionError(AlpcrunError):
    """A session-level error."""


class SessionNotFound(SessionError):
    """The session id is unknown (or was reaped).

    Args:
        message: Which session was not found.
        field: Dotted name of the request field (or metadata key) that named the session,
            e.g. ``session_id`` or ``sessionid``; servers send it as ``alpcrun-field``.
    """

    def __init__(self, message: str = "", *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class SessionClosed(SessionError):
    """The session is closed and refuses new batches."""


class SessionExists(SessionError):
    """A session with this id already exists."""


class SharedDataExists(SessionExists):
    """The session already has shared data: use ``UpdateSharedData`` for a new level."""


class SessionLost(SessionError):
    """The queue manager no longer knows a session this client had open.

    Raised by the client SDK when, after a lost connection, the queue manager answers
    ``NOT_FOUND`` for a session it created or attached earlier: the queue manager restarted
    without a journal (its state is in memory only) or the session expired meanwhile. Tasks
    still pending on the session will never get results.

    Attributes:
        session_id: The lost session's id.
    """

    def __init__(self, session_id: str, detail: str = "") -> None:
        message = (
            f"session {session_id} was lost: the queue manager no longer knows it (it "
            "restarted without a journal, or the session expired); pending tasks will not "
            "complete, submit them to a new session"
        )
        super().__init__(f"{message} ({detail})" if detail else message)
        self.session_id = session_id


class WorkerNotFound(AlpcrunError):
    """The worker id is unknown, or the worker is not bound to the session."""


class NotFound(AlpcrunError):
    """A named thing other than a session or worker is unknown (a dispatch, a dead letter).

    Args:
        message: What was not found.
        field: Dotted name of the request field that named it.
    """

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class ResourceExhausted(AlpcrunError):
    """A queue, quota or size limit is full."""


class PayloadError(AlpcrunError):
    """The payload store refused an operation on a payload.

    Args:
        message: What was refused and why.
        field: Dotted name of the request field that named the payload.
    """

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class PayloadStateError(PayloadError):
    """The payload's state forbids the operation.

    It is written after commit, read before commit or while being deleted, or named with a
    version that is no longer current.
    """


class PayloadLost(PayloadError):
    """The payload is gone (deleted, or every replica lost with its node); it cannot be read."""


class TaskFailed(AlpcrunError):
    """A task failed for good and was moved to the dead-letter queue.

    Attributes:
        task_id: The failed task's id.
        reason: Reason code (``error``, ``worker_lost``, ``timeout``, ``non_retryable``).
        error_type: Type name of the error raised by the handler, if any.
    """

    def __init__(self, message: str, *, task_id: str, reason: str, error_type: str = "") -> None:
        super().__init__(message)
        self.task_id = task_id
        self.reason = reason
        self.error_type = error_type


class TransportError(AlpcrunError):
    """The grid could not be reached or answered with an unexpected status."""


class Unavailable(TransportError):
    """The server is down, restarting or shutting down."""


class ReconnectFailed(Unavailable):
    """The client SDK gave up reconnecting to the queue manager.

    Raised after the connection (or a call) failed with a retryable error and no attempt to
    reach the queue manager again succeeded within the client's ``reconnect_timeout``. The
    last error is chained as ``__cause__``.

    Attributes:
        address: The queue manager address the client dialed.
        attempts: Reconnect attempts made.
    """

    def __init__(self, message: str, *, address: str = "", attempts: int = 0) -> None:
        super().__init__(message)
        self.address = address
        self.attempts = attempts


class DeadlineExceeded(TransportError):
    """The call did not complete in time."""


__all__ = [
    "AlpcrunError",
    "AuthError",
    "ConfigError",
    "DeadlineExceeded",
    "InvalidArgument",
    "NotFound",
    "PayloadError",
    "PayloadLost",
    "PayloadStateError",
    "PermissionDenied",
    "ReconnectFailed",
    "ResourceExhausted",
    "SessionClosed",
    "SessionError",
    "SessionExists",
    "SessionLost",
    "SessionNotFound",
    "SharedDataExists",
    "TaskFailed",
    "TransportError",
    "Unauthenticated",
    "Unavailable",
    "WorkerNotFound",
]
