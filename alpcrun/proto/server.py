"""Building blocks every alpcrun gRPC server shares: health, reflection, request decoding."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import grpc
import grpc.aio
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection

from alpcrun.errors import InvalidArgument
from alpcrun.proto.status import abort_with

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # not subscriptable at runtime
Context = grpc.aio.ServicerContext[Any, Any]


async def add_standard_services(
    server: grpc.aio.Server, service_names: Sequence[str]
) -> health_aio.HealthServicer:
    """Add grpc.health.v1 (every service SERVING) and server reflection to ``server``."""
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for name in ("", *service_names):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [
            *service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    return health


async def set_not_serving(health: health_aio.HealthServicer, service_names: Sequence[str]) -> None:
    """Mark every service NOT_SERVING (shutting down)."""
    for name in ("", *service_names):
        await health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)


async def _decode(deserialize: Callable[[bytes], Any], raw: bytes, context: Context) -> Any:
    try:
        return deserialize(raw)
    except DecodeError as exc:
        await abort_with(context, InvalidArgument(f"the request does not decode: {exc}"))


def guard_decoding(handler: Handler) -> Handler:
    """Answer a unary request that does not decode with INVALID_ARGUMENT.

    gRPC decodes a unary request before the servicer runs and answers a ``DecodeError`` with
    ``UNKNOWN``; this handler takes the raw bytes and decodes them itself. Streamed requests
    are decoded as the servicer iterates them, so the servicer handles their errors; their
    handlers, and handlers already guarded, are returned as they are.
    """
    deserialize = handler.request_deserializer
    if handler.request_streaming or deserialize is None:
        return handler
    serialize = handler.response_serializer
    if not handler.response_streaming:
        unary: Any = handler.unary_unary

        async def unary_unary(raw: bytes, context: Context) -> Any:
            return await unary(await _decode(deserialize, raw, context), context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, None, serialize)
    streaming: Any = handler.unary_stream
    if inspect.isasyncgenfunction(streaming):

        async def generate(raw: bytes, context: Context) -> AsyncIterator[Any]:
            async for item in streaming(await _decode(deserialize, raw, context), context):
                yield item

        return grpc.unary_stream_rpc_method_handler(generate, None, serialize)

    async def write(raw: bytes, context: Context) -> None:  # writes via context.write
        await streaming(await _decode(deserialize, raw, context), context)

    return grpc.unary_stream_rpc_method_handler(write, None, serialize)


class DecodeGuardInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # not generic at runtime
    """Applies :func:`guard_decoding` to every method of a server."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        """Return the method's handler, guarded."""
        handler = await continuation(handler_call_details)
        return handler if handler is None else guard_decoding(handler)
