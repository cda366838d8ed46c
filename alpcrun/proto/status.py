"""Domain errors ⇄ gRPC status codes, in one table, both directions.

Servers raise :mod:`alpcrun.errors` exceptions and call :func:`abort_with` (or let the
servicer wrapper do it); clients call :func:`from_rpc_error` on any ``grpc.RpcError``.
No other module inspects ``grpc.RpcError`` or picks status codes.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
import grpc.aio

from alpcrun import errors
from alpcrun.constants import MD_ERROR_FIELD, MD_SESSION_ID

_TO_CODE: tuple[tuple[type[errors.AlpcrunError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.SessionNotFound, grpc.StatusCode.NOT_FOUND),
    (errors.WorkerNotFound, grpc.StatusCode.NOT_FOUND),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.PayloadLost, grpc.StatusCode.NOT_FOUND),
    (errors.PayloadStateError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.SessionExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.SessionClosed, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
)

_FROM_CODE: dict[grpc.StatusCode, type[errors.AlpcrunError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.NOT_FOUND: errors.SessionNotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.SessionExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.SessionClosed,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.CANCELLED: errors.Unavailable,
}


_BY_NUMBER: dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}

_CORE_TRANSPORT_FAILURES = frozenset({"Internal error from Core"})
"""Details of the ``INTERNAL`` status the gRPC core makes up when a connection breaks while a
call is writing (no server sent it): a dropped connection, so read as ``Unavailable``."""


def to_status(exc: errors.AlpcrunError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """Map a domain error to (status code, details, trailing metadata)."""
    for cls, code in _TO_CODE:
        if isinstance(exc, cls):
            trailers: tuple[tuple[str, str], ...] = ()
            message = str(exc)
            named = (
                errors.InvalidArgument
                | errors.NotFound
                | errors.SessionNotFound
                | errors.PayloadError
            )
            if isinstance(exc, named) and exc.field:
                trailers = ((MD_ERROR_FIELD, exc.field),)
                if not message.startswith(exc.field):
                    message = f"{exc.field}: {message}"
            return code, message, trailers
    return grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}", ()


async def abort_with(
    context: grpc.aio.ServicerContext[object, object], exc: errors.AlpcrunError
) -> NoReturn:
    """Abort the current RPC with the status that matches ``exc``."""
    code, message, trailers = to_status(exc)
    if trailers:
        context.set_trailing_metadata(trailers)
    await context.abort(code, message)
    raise AssertionError("unreachable")  # pragma: no cover - abort always raises


def from_rpc_error(err: grpc.RpcError) -> errors.AlpcrunError:
    """Map a failed call's status back to the matching domain error."""
    code: grpc.StatusCode = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details: str = (err.details() if hasattr(err, "details") else "") or code.name
    if code == grpc.StatusCode.INTERNAL and details in _CORE_TRANSPORT_FAILURES:
        return errors.Unavailable(f"connection lost ({details})")
    return from_status(code, details, _error_field(err))


def from_status(code: grpc.StatusCode, details: str, field: str = "") -> errors.AlpcrunError:
    """The domain error of a failed call's status code, details and named field (if any).

    Also used by protocols that carry gRPC status codes outside gRPC (the node read path).
    """
    cls = _FROM_CODE.get(code, errors.TransportError)
    if cls is errors.InvalidArgument:
        return errors.InvalidArgument(details, field=field)
    if cls is errors.SessionClosed and field:
        return errors.PayloadStateError(details, field=field)  # a payload's state names a field
    if cls is errors.SessionNotFound and field and not _names_session(field):
        return errors.NotFound(details, field=field)  # a dead letter, a dispatch, ...
    if cls is errors.SessionNotFound:
        return errors.SessionNotFound(details, field=field)
    if cls is errors.TransportError:
        return errors.TransportError(f"{code.name}: {details}")
    return cls(details)


def _names_session(field: str) -> bool:
    """Whether a NOT_FOUND's field names a session, not another thing (a letter, a dispatch).

    Session fields are ``session_id``, ``header.session_id`` and the ``sessionid`` key.
    """
    return field == MD_SESSION_ID or field.endswith("session_id")


def status_code(number: int) -> grpc.StatusCode:
    """The gRPC status code with this number (UNKNOWN for a number that is none)."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def _error_field(err: grpc.RpcError) -> str:
    """The ``alpcrun-field`` trailer of a failed call, or ``""``."""
    trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    item: Any
    for item in trailers or ():  # pairs in grpc.aio, namedtuples in sync grpc
        if item[0] == MD_ERROR_FIELD:
            return str(item[1])
    return ""
