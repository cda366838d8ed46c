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
    │   └── SessionExists           duplicate create
    ├── WorkerNotFound              unknown worker id, or not bound to that session
    ├── ResourceExhausted           a queue, quota or size limit is full
    ├── TaskFailed                  a task ended in the dead-letter queue (.reason, .error_type)
    └── TransportError              the grid could not be reached or answered badly
        ├── Unavailable             server down, restarting or shutting down
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
    """The session id is unknown (or was reaped)."""


class SessionClosed(SessionError):
    """The session is closed and refuses new batches."""


class SessionExists(SessionError):
    """A session with this id already exists."""


class WorkerNotFound(AlpcrunError):
    """The worker id is unknown, or the worker is not bound to the session."""


class ResourceExhausted(AlpcrunError):
    """A queue, quota or size limit is full."""


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


class DeadlineExceeded(TransportError):
    """The call did not complete in time."""


__all__ = [
    "AlpcrunError",
    "AuthError",
    "ConfigError",
    "DeadlineExceeded",
    "InvalidArgument",
    "PermissionDenied",
    "ResourceExhausted",
    "SessionClosed",
    "SessionError",
    "SessionExists",
    "SessionNotFound",
    "TaskFailed",
    "TransportError",
    "Unauthenticated",
    "Unavailable",
    "WorkerNotFound",
]
