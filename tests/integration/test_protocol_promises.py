"""What docs/protocol.md promises every client, checked with raw gRPC calls (no alpcrun SDK).

Every NOT_FOUND for an unknown session names the field that held the id in the
``alpcrun-field`` trailer (the queue manager's methods are covered in ``test_bad_input``; the
central cache and the node agent here), and every server answers gRPC reflection under both
``grpc.reflection.v1`` and ``grpc.reflection.v1alpha``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from alpcrun import proto
from alpcrun.cache.read_client import NodeReadClient
from alpcrun.errors import SessionNotFound
from alpcrun.testing import running_central_cache, running_node_agent, running_queue_manager

from .wire import POOL, Outcome, call

pytestmark = pytest.mark.integration
KEY = "promises-key"
MD = (("api_key", KEY),)
GHOST = "01GHOSTSESSION0000000000000"
Code = grpc.StatusCode


def _method(service: str, name: str) -> Any:
    return POOL.FindServiceByName(service).FindMethodByName(name)


def _chunk(session_id: str, level: int) -> proto.SharedDataChunk:
    header = proto.SharedDataHeader(
        session_id=session_id, update_level=level, size_bytes=1, ttl_ms=10_000
    )
    return proto.SharedDataChunk(header=header, data=b"x")


@asynccontextmanager
async def _caches() -> AsyncIterator[tuple[Any, Any, Any]]:
    """A queue manager, a central cache that asks it about sessions, and a node agent."""
    async with (
        running_queue_manager(api_key=KEY) as qm,
        running_central_cache(api_key=KEY, queue_manager=qm.address) as cc,
        running_node_agent(cc.address, api_key=KEY) as na,
    ):
        yield qm, cc, na


async def test_unknown_session_on_the_caches_is_not_found_naming_the_field() -> None:
    """Central cache and node agent answer an unknown (or empty) session id with NOT_FOUND, the
    id in the message and the request field that held it in alpcrun-field; an upload without a
    session id is INVALID_ARGUMENT."""
    central_name, node_name = "alpcrun.v1.CentralCache", "alpcrun.v1.NodeCache"
    get = proto.GetSharedDataRequest(session_id=GHOST, update_level=1)
    empty = proto.GetSharedDataRequest(session_id="", update_level=1)
    async with (
        _caches() as (_qm, cc, na),
        grpc.aio.insecure_channel(cc.address) as central,
        grpc.aio.insecure_channel(na.address) as node,
    ):
        outcomes: dict[str, Outcome] = {
            "central Set": await call(
                central, _method(central_name, "SetSharedData"), [_chunk(GHOST, 1)], MD
            ),
            "central Update": await call(
                central, _method(central_name, "UpdateSharedData"), [_chunk(GHOST, 2)], MD
            ),
            "central Get": await call(central, _method(central_name, "GetSharedData"), [get], MD),
            "node Get": await call(node, _method(node_name, "GetSharedData"), [get], MD),
            "node GetUnary": await call(node, _method(node_name, "GetSharedDataUnary"), [get], MD),
            "central Get of an empty id": await call(
                central, _method(central_name, "GetSharedData"), [empty], MD
            ),
        }
        set_empty = await call(central, _method(central_name, "SetSharedData"), [_chunk("", 1)], MD)
        reader = NodeReadClient(na.read_address, api_key=KEY)
        try:
            with pytest.raises(SessionNotFound) as read_path:
                await reader.get(GHOST, 1)
        finally:
            await reader.aclose()
    expected = {
        "central Set": "header.session_id",
        "central Update": "header.session_id",
        "central Get": "session_id",
        "node Get": "session_id",
        "node GetUnary": "session_id",
        "central Get of an empty id": "session_id",
    }
    assert {k: (o.code, o.field) for k, o in outcomes.items()} == {
        k: (Code.NOT_FOUND, field) for k, field in expected.items()
    }, outcomes
    assert all(GHOST in o.details for k, o in outcomes.items() if "empty" not in k), outcomes
    assert (set_empty.code, set_empty.field) == (Code.INVALID_ARGUMENT, "header.session_id")
    assert read_path.value.field == "session_id"


async def _reflect(
    channel: grpc.aio.Channel, service: str, requests: list[bytes]
) -> list[reflection_pb2.ServerReflectionResponse]:
    """A raw ServerReflectionInfo call on ``service``; the answers, decoded (v1 and v1alpha
    share their wire format)."""
    info = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=lambda b: b,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )

    async def outgoing() -> AsyncIterator[bytes]:
        for request in requests:
            yield request

    return [response async for response in info(outgoing(), timeout=10)]


LIST_SERVICES = b"\x3a\x01*"
"""ServerReflectionRequest{list_services: "*"}, encoded by hand (field 7, a string)."""


def _describe(symbol: str) -> bytes:
    """ServerReflectionRequest{file_containing_symbol: symbol} (field 4, a string)."""
    data = symbol.encode()
    return b"\x22" + bytes([len(data)]) + data


@pytest.mark.parametrize("server", ["queue-manager", "central-cache", "node-agent"])
async def test_reflection_is_served_as_v1_and_v1alpha(server: str) -> None:
    """A raw grpc.reflection.v1 call (no key needed) lists the server's services and describes
    the v1 reflection service itself; v1alpha answers the same list."""
    async with _caches() as (qm, cc, na):
        address = {"queue-manager": qm.address, "central-cache": cc.address}.get(server, na.address)
        async with grpc.aio.insecure_channel(address) as channel:
            v1 = await _reflect(
                channel,
                "grpc.reflection.v1.ServerReflection",
                [LIST_SERVICES, _describe("grpc.reflection.v1.ServerReflection")],
            )
            (alpha,) = await _reflect(
                channel, "grpc.reflection.v1alpha.ServerReflection", [LIST_SERVICES]
            )
    listed = {s.name for s in v1[0].list_services_response.service}
    own = {
        "queue-manager": {"alpcrun.v1.Queue", "alpcrun.v1.Admin"},
        "central-cache": {"alpcrun.v1.CentralCache"},
        "node-agent": {"alpcrun.v1.NodeCache"},
    }[server]
    assert listed >= {
        *own,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }, listed
    assert {s.name for s in alpha.list_services_response.service} == listed
    described = v1[1].file_descriptor_response.file_descriptor_proto
    assert described, v1[1]
    file = descriptor_pb2.FileDescriptorProto.FromString(described[0])
    assert (file.name, file.package) == (
        "grpc/reflection/v1/reflection.proto",
        "grpc.reflection.v1",
    )
    (service,) = file.service
    (info,) = service.method
    assert (service.name, info.input_type) == (
        "ServerReflection",
        ".grpc.reflection.v1.ServerReflectionRequest",
    )
