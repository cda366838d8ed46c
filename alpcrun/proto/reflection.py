"""gRPC server reflection under both of its names: ``grpc.reflection.v1`` and ``v1alpha``.

grpcio-reflection serves ``grpc.reflection.v1alpha.ServerReflection`` only, while current
clients (grpcurl, Postman, grpc_cli) ask for ``grpc.reflection.v1.ServerReflection`` first.
The two protocols are the same messages, with the same field numbers, in another package, so
one servicer answers both: v1 through a second method handler that reads and writes the
v1alpha messages (the bytes on the wire are identical). The v1 descriptors, which a client
needs to describe the reflection service itself, are v1alpha's renamed into ``grpc.reflection.v1``
and added to the default descriptor pool once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
"""``grpc.reflection.v1alpha.ServerReflection``."""
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
"""``grpc.reflection.v1.ServerReflection``."""
_V1_PACKAGE = "grpc.reflection.v1"
_V1_FILE = "grpc/reflection/v1/reflection.proto"
"""The name upstream gives the v1 file (grpc-proto), so a client asking for it finds it."""


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    """v1alpha's file descriptor, renamed into the v1 package."""
    old = f".{reflection_pb2.DESCRIPTOR.package}."
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    file.name = _V1_FILE
    file.package = _V1_PACKAGE
    file.ClearField("options")  # v1alpha's are deprecated=true and its Java/Go packages
    for message in file.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = f".{_V1_PACKAGE}.{field.type_name.removeprefix(old)}"
    for service in file.service:
        for method in service.method:
            method.input_type = f".{_V1_PACKAGE}.{method.input_type.removeprefix(old)}"
            method.output_type = f".{_V1_PACKAGE}.{method.output_type.removeprefix(old)}"
    return file


def _register_v1_descriptors() -> None:
    """Add the v1 reflection file to the default pool, unless something already did."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_V1_FILE)
    except KeyError:
        pool.AddSerializedFile(_v1_file().SerializeToString())


def enable_reflection(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    """Serve reflection v1 and v1alpha on ``server``, listing ``service_names`` and both.

    Args:
        service_names: Full names of the server's other services.
        server: The server, not yet started.
    """
    _register_v1_descriptors()
    names = [*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME]
    aio: Any = reflection.aio  # type: ignore[attr-defined]  # missing from grpc-stubs
    servicer = aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1_info = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {"ServerReflectionInfo": v1_info}),)
    )


__all__ = ["V1ALPHA_SERVICE_NAME", "V1_SERVICE_NAME", "enable_reflection"]
