"""API-key checks shared by every server: each RPC (health and reflection excepted), read paths."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from pydantic import SecretStr

from alpcrun.constants import MD_API_KEY
from alpcrun.errors import PermissionDenied, Unauthenticated
from alpcrun.proto.server import DecodeGuardInterceptor, GuardedHandlers

_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _abort_handler(
    handler: grpc.RpcMethodHandler[Any, Any], code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler[Any, Any]:
    async def deny(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


class ApiKeys:
    """The API keys a server accepts, compared in constant time."""

    def __init__(self, api_keys: list[str]) -> None:
        if not api_keys:
            raise ValueError("at least one API key is required")
        self._keys = [k.encode() for k in api_keys]

    def accepts(self, key: str | bytes) -> bool:
        """Whether ``key`` is one of the keys."""
        candidate = key.encode() if isinstance(key, str) else key
        ok = False
        for k in self._keys:  # compare with every key so timing does not tell which matched
            ok |= hmac.compare_digest(candidate, k)
        return ok

    def check(self, key: str | None) -> None:
        """Raise :class:`Unauthenticated` for no key, :class:`PermissionDenied` for a wrong one."""
        if not key:
            raise Unauthenticated("missing api_key")
        if not self.accepts(key):
            raise PermissionDenied("invalid api_key")


def api_keys(api_key: SecretStr | None, *, auth_disabled: bool) -> ApiKeys | None:
    """The keys a server checks (None: no checks): one key, unless auth is off or none is set."""
    if api_key is not None and not auth_disabled:
        return ApiKeys([api_key.get_secret_value()])
    return None


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # not generic at runtime
    """Checks the ``api_key`` metadata in constant time.

    Missing key: UNAUTHENTICATED. Wrong key: PERMISSION_DENIED. Health and reflection are
    open so Kubernetes gRPC probes and generic tools work without credentials. The calls it
    lets through get :func:`~alpcrun.proto.server.guard_decoding`, so a request that does
    not decode is INVALID_ARGUMENT rather than UNKNOWN.
    """

    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys
        self._guarded = GuardedHandlers()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Let the call through (decoding guarded) or replace its handler with one that aborts."""
        method = handler_call_details.method or ""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if method.startswith(_OPEN_PREFIXES):
            return self._guarded.get(method, handler)
        key = None
        for item in handler_call_details.invocation_metadata or ():
            if item[0] == MD_API_KEY:
                key = item[1]
                break
        if key is None:
            return _abort_handler(
                handler, grpc.StatusCode.UNAUTHENTICATED, "missing api_key metadata"
            )
        if not self._keys.accepts(key):
            return _abort_handler(handler, grpc.StatusCode.PERMISSION_DENIED, "invalid api_key")
        return self._guarded.get(method, handler)


def server_interceptors(api_key: SecretStr | None, *, auth_disabled: bool) -> list[Any]:
    """The interceptors of a server: API-key checks unless auth is off or no key is set.

    Either interceptor turns a request that does not decode into INVALID_ARGUMENT.
    """
    keys = api_keys(api_key, auth_disabled=auth_disabled)
    return [ApiKeyInterceptor(keys)] if keys is not None else [DecodeGuardInterceptor()]
