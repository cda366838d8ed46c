"""Building blocks every alpcrun gRPC server shares: binding, start/stop, health, decoding.

Binding is plaintext or TLS (:func:`bind`); :class:`GrpcServer` starts a server with health,
reflection and a (plaintext) Prometheus endpoint and stops it again.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from prometheus_client.registry import CollectorRegistry

from alpcrun.constants import MAX_MESSAGE_BYTES
from alpcrun.errors import ConfigError, InvalidArgument
from alpcrun.proto.channel import server_options
from alpcrun.proto.metrics_http import HttpEndpoint, HttpLimits, MetricsRoute
from alpcrun.proto.reflection import enable_reflection
from alpcrun.proto.status import abort_with
from alpcrun.tls import ServerTls

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # not subscriptable at runtime
Context = grpc.aio.ServicerContext[Any, Any]


async def add_standard_services(
    server: grpc.aio.Server, service_names: Sequence[str]
) -> health_aio.HealthServicer:
    """Add grpc.health.v1 (every service SERVING) and server reflection (v1 and v1alpha)."""
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for name in ("", *service_names):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    enable_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name], server
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
        await _refuse(context, exc)


async def _refuse(context: Context, exc: DecodeError) -> NoReturn:
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
            try:  # inline rather than _decode: one coroutine less on every unary call
                request = deserialize(raw)
            except DecodeError as exc:
                await _refuse(context, exc)
            return await unary(request, context)

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


class GuardedHandlers:
    """:func:`guard_decoding` of each method handler, made once per method and reused.

    Keyed by method name and checked by identity, so a handler registered anew is guarded
    anew. Only methods the server has a handler for are kept, so its size is bounded by the
    services registered, whatever method names arrive.
    """

    def __init__(self) -> None:
        self._guarded: dict[str, tuple[Handler, Handler]] = {}

    def get(self, method: str, handler: Handler) -> Handler:
        """The guarded twin of ``handler``, the handler of ``method``."""
        known = self._guarded.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        guarded = guard_decoding(handler)
        self._guarded[method] = (handler, guarded)
        return guarded


class DecodeGuardInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # not generic at runtime
    """Applies :func:`guard_decoding` to every method of a server."""

    def __init__(self) -> None:
        self._guarded = GuardedHandlers()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        """Return the method's handler, guarded."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return self._guarded.get(handler_call_details.method or "", handler)


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    """Credentials presenting ``tls``'s certificate; with ``client_ca``, mutual TLS."""
    return grpc.ssl_server_credentials(
        [(tls.private_key, tls.cert_chain)],
        root_certificates=tls.client_ca,
        require_client_auth=tls.client_ca is not None,
    )


def bind(server: grpc.aio.Server, address: str, tls: ServerTls | None = None) -> int:
    """Listen on ``address``, over TLS with ``tls``, else plaintext; return the port bound.

    Raises:
        alpcrun.errors.ConfigError: The address cannot be bound (in use, bad host).
    """
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, server_credentials(tls))
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {address}: {exc}") from None
    if port == 0 and not address.startswith("unix:"):
        raise ConfigError(f"cannot listen on {address}")
    return port


@dataclass(frozen=True)
class Listen:
    """Where and how a server listens."""

    host: str
    """Address of the gRPC and metrics listeners."""
    port: int
    """gRPC port (0 picks a free one)."""
    tls: ServerTls | None = None
    """Serve gRPC over TLS with this material; None: plaintext."""
    extra_addresses: Sequence[str] = ()
    """More gRPC addresses (``unix:PATH``), always plaintext: they never leave the machine."""
    metrics_port: int | None = None
    """Prometheus ``/metrics`` HTTP port (plaintext); None: no endpoint, 0: a free port."""
    metrics_limits: HttpLimits = field(default_factory=HttpLimits)
    """Timeouts and most connections of the ``/metrics`` endpoint."""
    max_message_bytes: int = MAX_MESSAGE_BYTES
    """Largest gRPC message sent or received."""


class GrpcServer:
    """A started grpc.aio server: services, health, reflection, TLS, and a metrics endpoint.

    Args:
        server: The started server.
        service_names: Full names of its services, for health.
        health: Its health servicer.
        port: The gRPC port bound.
        metrics: The started metrics endpoint and its route, if any.
    """

    def __init__(
        self,
        server: grpc.aio.Server,
        service_names: Sequence[str],
        health: health_aio.HealthServicer,
        port: int,
        metrics: tuple[HttpEndpoint, MetricsRoute] | None,
    ) -> None:
        self._server = server
        self._names = service_names
        self._health = health
        self._metrics = metrics
        self.port = port
        """The gRPC port bound."""
        self.metrics_port: int | None = metrics[0].port if metrics is not None else None
        """The metrics HTTP port bound, if any."""

    @classmethod
    async def start(
        cls,
        listen: Listen,
        *,
        service_names: Sequence[str],
        add_services: Callable[[grpc.aio.Server], None],
        interceptors: Sequence[Any],
        registry: Callable[[], CollectorRegistry] | None = None,
    ) -> GrpcServer:
        """Build the server, add the services, bind, start, then start the metrics endpoint.

        Args:
            listen: Addresses, TLS, metrics port, message size limit.
            service_names: Full names of the services ``add_services`` adds (for health).
            add_services: Adds the servicers to the server.
            interceptors: Server interceptors (auth, decoding guard).
            registry: Takes the figures for one scrape, on the event loop, as a registry
                that can be rendered on another thread (its collectors hold the figures).

        Raises:
            alpcrun.errors.ConfigError: An address cannot be bound.
        """
        server = grpc.aio.server(
            options=server_options(listen.max_message_bytes), interceptors=interceptors
        )
        add_services(server)
        health = await add_standard_services(server, service_names)
        port = bind(server, f"{listen.host}:{listen.port}", listen.tls)
        for extra in listen.extra_addresses:
            bind(server, extra)
        await server.start()
        metrics = None
        if listen.metrics_port is not None and registry is not None:
            route = MetricsRoute(registry)
            endpoint = HttpEndpoint(
                {"/metrics": route},
                host=listen.host,
                port=listen.metrics_port,
                limits=listen.metrics_limits,
            )
            try:
                await endpoint.start()
            except OSError as exc:
                route.close()
                await server.stop(0)
                raise ConfigError(
                    f"cannot serve metrics on {listen.host}:{listen.metrics_port}: {exc}"
                ) from None
            metrics = (endpoint, route)
        return cls(server, service_names, health, port, metrics)

    async def set_not_serving(self) -> None:
        """Tell health checks every service is NOT_SERVING (shutting down, or cannot work)."""
        await set_not_serving(self._health, self._names)

    async def set_serving(self) -> None:
        """Tell health checks every service is SERVING again."""
        for name in ("", *self._names):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float) -> None:
        """Stop serving (in-flight calls get ``grace`` seconds) and the metrics endpoint."""
        await self._server.stop(grace)
        if self._metrics is not None:
            endpoint, route = self._metrics
            await endpoint.stop()
            route.close()
