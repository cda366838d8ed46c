"""The alpcrun.v1 gRPC services: client stubs, servicer base classes, ``add_*`` and full names.

This module loads grpc; :mod:`alpcrun.proto` itself (the messages) does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alpcrun.proto._gen import (
    admin_pb2,
    admin_pb2_grpc,
    cache_pb2,
    cache_pb2_grpc,
    payload_pb2,
    payload_pb2_grpc,
    queue_pb2,
    queue_pb2_grpc,
)

if TYPE_CHECKING:  # the types of stubs made over a grpc.aio channel (annotation only)
    from alpcrun.proto._gen.payload_pb2_grpc import (
        PayloadAgentAsyncStub as PayloadAgentAsyncStub,
    )
    from alpcrun.proto._gen.payload_pb2_grpc import (
        PayloadCatalogAsyncStub as PayloadCatalogAsyncStub,
    )

QueueStub = queue_pb2_grpc.QueueStub
QueueServicer = queue_pb2_grpc.QueueServicer
AdminStub = admin_pb2_grpc.AdminStub
AdminServicer = admin_pb2_grpc.AdminServicer
add_queue_servicer = queue_pb2_grpc.add_QueueServicer_to_server
add_admin_servicer = admin_pb2_grpc.add_AdminServicer_to_server
ADMIN_SERVICE_NAME: str = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name
QUEUE_SERVICE_NAME: str = queue_pb2.DESCRIPTOR.services_by_name["Queue"].full_name
CentralCacheStub = cache_pb2_grpc.CentralCacheStub
CentralCacheServicer = cache_pb2_grpc.CentralCacheServicer
NodeCacheStub = cache_pb2_grpc.NodeCacheStub
NodeCacheServicer = cache_pb2_grpc.NodeCacheServicer
add_central_cache_servicer = cache_pb2_grpc.add_CentralCacheServicer_to_server
add_node_cache_servicer = cache_pb2_grpc.add_NodeCacheServicer_to_server
CENTRAL_CACHE_SERVICE_NAME: str = cache_pb2.DESCRIPTOR.services_by_name["CentralCache"].full_name
NODE_CACHE_SERVICE_NAME: str = cache_pb2.DESCRIPTOR.services_by_name["NodeCache"].full_name
PayloadCatalogStub = payload_pb2_grpc.PayloadCatalogStub
PayloadCatalogServicer = payload_pb2_grpc.PayloadCatalogServicer
PayloadAgentStub = payload_pb2_grpc.PayloadAgentStub
PayloadAgentServicer = payload_pb2_grpc.PayloadAgentServicer
add_payload_catalog_servicer = payload_pb2_grpc.add_PayloadCatalogServicer_to_server
add_payload_agent_servicer = payload_pb2_grpc.add_PayloadAgentServicer_to_server
PAYLOAD_CATALOG_SERVICE_NAME: str = payload_pb2.DESCRIPTOR.services_by_name[
    "PayloadCatalog"
].full_name
PAYLOAD_AGENT_SERVICE_NAME: str = payload_pb2.DESCRIPTOR.services_by_name["PayloadAgent"].full_name

__all__ = [
    "ADMIN_SERVICE_NAME",
    "CENTRAL_CACHE_SERVICE_NAME",
    "NODE_CACHE_SERVICE_NAME",
    "PAYLOAD_AGENT_SERVICE_NAME",
    "PAYLOAD_CATALOG_SERVICE_NAME",
    "QUEUE_SERVICE_NAME",
    "AdminServicer",
    "AdminStub",
    "CentralCacheServicer",
    "CentralCacheStub",
    "NodeCacheServicer",
    "NodeCacheStub",
    "PayloadAgentServicer",
    "PayloadAgentStub",
    "PayloadCatalogServicer",
    "PayloadCatalogStub",
    "QueueServicer",
    "QueueStub",
    "add_admin_servicer",
    "add_central_cache_servicer",
    "add_node_cache_servicer",
    "add_payload_agent_servicer",
    "add_payload_catalog_servicer",
    "add_queue_servicer",
]
