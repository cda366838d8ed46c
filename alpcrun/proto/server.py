"""Building blocks every alpcrun gRPC server shares: health service and reflection."""

from __future__ import annotations

from collections.abc import Sequence

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection


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
