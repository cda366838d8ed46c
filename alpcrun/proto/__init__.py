"""Stable re-exports of the generated alpcrun.v1 messages (and, on first use, service stubs).

Nothing outside this package imports ``alpcrun.proto._gen`` directly. The messages need only
protobuf; the service stubs, servicers and service names live in
:mod:`alpcrun.proto.services`, which loads grpc, and are re-exported here lazily so that
importing a message does not load grpc.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from alpcrun.proto._gen.admin_pb2 import (
    DeadLetter,
    DeadLetterCount,
    DiscardDeadLettersRequest,
    GetDeadLetterRequest,
    GetStatsRequest,
    ListDeadLettersRequest,
    ListDeadLettersResponse,
    ListSessionsRequest,
    ListSessionsResponse,
    ListWorkersRequest,
    ListWorkersResponse,
    ResubmitDeadLettersRequest,
    SessionInfo,
    SessionStats,
    Stats,
    WorkerInfo,
)
from alpcrun.proto._gen.cache_pb2 import (
    DeleteSharedDataRequest,
    DeleteSharedDataResponse,
    GetSharedDataRequest,
    NodeReadReply,
    NodeReadRequest,
    SharedDataAck,
    SharedDataChunk,
    SharedDataHeader,
)
from alpcrun.proto._gen.common_pb2 import (
    Batch,
    ErrorReason,
    PayloadRef,
    Task,
    TaskError,
)
from alpcrun.proto._gen.payload_pb2 import (
    AcquireLeasesRequest,
    AcquireLeasesResponse,
    AgentHeartbeatRequest,
    AgentHeartbeatResponse,
    AllocateRequest,
    AllocateResponse,
    CommitEntry,
    CommitRequest,
    CommitResponse,
    DeletePayloadsResponse,
    FreeInstruction,
    GetPayloadUsageRequest,
    GetPayloadUsageResponse,
    ListPayloadsRequest,
    ListPayloadsResponse,
    PayloadChunk,
    PayloadFdReply,
    PayloadFdRequest,
    PayloadIdsRequest,
    PayloadInfo,
    PayloadLease,
    PayloadReplica,
    PayloadSpec,
    PayloadState,
    PayloadTier,
    PayloadTierUsage,
    ReadPayloadRequest,
    RegisterAgentRequest,
    ReleaseLeasesRequest,
    ReleaseLeasesResponse,
    RenewLeasesRequest,
    RenewLeasesResponse,
    ResolveResponse,
    StatPayloadRequest,
    TierCapacity,
    WritePayloadResponse,
)
from alpcrun.proto._gen.queue_pb2 import (
    ClientStreamRequest,
    ClientStreamResponse,
    DeadLettersRequest,
    ResultAck,
    WorkerHeartbeat,
    WorkerInstruction,
    WorkerRegistration,
    WorkerState,
    WorkerStatus,
)
from alpcrun.proto._gen.session_pb2 import (
    CloseSessionRequest,
    CloseSessionResponse,
    CreateSessionRequest,
    GetSessionRequest,
    QueueType,
    Session,
    SessionAttributes,
    SessionState,
    UpdateSessionRequest,
)

if TYPE_CHECKING:
    from alpcrun.proto.services import (
        ADMIN_SERVICE_NAME as ADMIN_SERVICE_NAME,
    )
    from alpcrun.proto.services import (
        CENTRAL_CACHE_SERVICE_NAME as CENTRAL_CACHE_SERVICE_NAME,
    )
    from alpcrun.proto.services import (
        NODE_CACHE_SERVICE_NAME as NODE_CACHE_SERVICE_NAME,
    )
    from alpcrun.proto.services import PAYLOAD_AGENT_SERVICE_NAME as PAYLOAD_AGENT_SERVICE_NAME
    from alpcrun.proto.services import PAYLOAD_CATALOG_SERVICE_NAME as PAYLOAD_CATALOG_SERVICE_NAME
    from alpcrun.proto.services import (
        QUEUE_SERVICE_NAME as QUEUE_SERVICE_NAME,
    )
    from alpcrun.proto.services import AdminServicer as AdminServicer
    from alpcrun.proto.services import AdminStub as AdminStub
    from alpcrun.proto.services import CentralCacheServicer as CentralCacheServicer
    from alpcrun.proto.services import CentralCacheStub as CentralCacheStub
    from alpcrun.proto.services import NodeCacheServicer as NodeCacheServicer
    from alpcrun.proto.services import NodeCacheStub as NodeCacheStub
    from alpcrun.proto.services import PayloadAgentServicer as PayloadAgentServicer
    from alpcrun.proto.services import PayloadAgentStub as PayloadAgentStub
    from alpcrun.proto.services import PayloadCatalogServicer as PayloadCatalogServicer
    from alpcrun.proto.services import PayloadCatalogStub as PayloadCatalogStub
    from alpcrun.proto.services import QueueServicer as QueueServicer
    from alpcrun.proto.services import QueueStub as QueueStub
    from alpcrun.proto.services import add_admin_servicer as add_admin_servicer
    from alpcrun.proto.services import add_central_cache_servicer as add_central_cache_servicer
    from alpcrun.proto.services import add_node_cache_servicer as add_node_cache_servicer
    from alpcrun.proto.services import add_payload_agent_servicer as add_payload_agent_servicer
    from alpcrun.proto.services import add_payload_catalog_servicer as add_payload_catalog_servicer
    from alpcrun.proto.services import add_queue_servicer as add_queue_servicer

_SERVICE_NAMES = frozenset(
    {
        "PAYLOAD_AGENT_SERVICE_NAME",
        "PAYLOAD_CATALOG_SERVICE_NAME",
        "PayloadAgentServicer",
        "PayloadAgentStub",
        "PayloadCatalogServicer",
        "PayloadCatalogStub",
        "add_payload_agent_servicer",
        "add_payload_catalog_servicer",
        "ADMIN_SERVICE_NAME",
        "CENTRAL_CACHE_SERVICE_NAME",
        "NODE_CACHE_SERVICE_NAME",
        "QUEUE_SERVICE_NAME",
        "AdminServicer",
        "AdminStub",
        "CentralCacheServicer",
        "CentralCacheStub",
        "NodeCacheServicer",
        "NodeCacheStub",
        "QueueServicer",
        "QueueStub",
        "add_admin_servicer",
        "add_central_cache_servicer",
        "add_node_cache_servicer",
        "add_queue_servicer",
    }
)


def __getattr__(name: str) -> object:
    """Load a service stub, servicer or name from :mod:`alpcrun.proto.services` (PEP 562)."""
    if name not in _SERVICE_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module("alpcrun.proto.services"), name)


__all__ = [
    "ADMIN_SERVICE_NAME",
    "CENTRAL_CACHE_SERVICE_NAME",
    "NODE_CACHE_SERVICE_NAME",
    "PAYLOAD_AGENT_SERVICE_NAME",
    "PAYLOAD_CATALOG_SERVICE_NAME",
    "QUEUE_SERVICE_NAME",
    "AcquireLeasesRequest",
    "AcquireLeasesResponse",
    "AdminServicer",
    "AdminStub",
    "AgentHeartbeatRequest",
    "AgentHeartbeatResponse",
    "AllocateRequest",
    "AllocateResponse",
    "Batch",
    "CentralCacheServicer",
    "CentralCacheStub",
    "ClientStreamRequest",
    "ClientStreamResponse",
    "CloseSessionRequest",
    "CloseSessionResponse",
    "CommitEntry",
    "CommitRequest",
    "CommitResponse",
    "CreateSessionRequest",
    "DeadLetter",
    "DeadLetterCount",
    "DeadLettersRequest",
    "DeletePayloadsResponse",
    "DeleteSharedDataRequest",
    "DeleteSharedDataResponse",
    "DiscardDeadLettersRequest",
    "ErrorReason",
    "FreeInstruction",
    "GetDeadLetterRequest",
    "GetPayloadUsageRequest",
    "GetPayloadUsageResponse",
    "GetSessionRequest",
    "GetSharedDataRequest",
    "GetStatsRequest",
    "ListDeadLettersRequest",
    "ListDeadLettersResponse",
    "ListPayloadsRequest",
    "ListPayloadsResponse",
    "ListSessionsRequest",
    "ListSessionsResponse",
    "ListWorkersRequest",
    "ListWorkersResponse",
    "NodeCacheServicer",
    "NodeCacheStub",
    "NodeReadReply",
    "NodeReadRequest",
    "PayloadAgentServicer",
    "PayloadAgentStub",
    "PayloadCatalogServicer",
    "PayloadCatalogStub",
    "PayloadChunk",
    "PayloadFdReply",
    "PayloadFdRequest",
    "PayloadIdsRequest",
    "PayloadInfo",
    "PayloadLease",
    "PayloadRef",
    "PayloadReplica",
    "PayloadSpec",
    "PayloadState",
    "PayloadTier",
    "PayloadTierUsage",
    "QueueServicer",
    "QueueStub",
    "QueueType",
    "ReadPayloadRequest",
    "RegisterAgentRequest",
    "ReleaseLeasesRequest",
    "ReleaseLeasesResponse",
    "RenewLeasesRequest",
    "RenewLeasesResponse",
    "ResolveResponse",
    "ResubmitDeadLettersRequest",
    "ResultAck",
    "Session",
    "SessionAttributes",
    "SessionInfo",
    "SessionState",
    "SessionStats",
    "SharedDataAck",
    "SharedDataChunk",
    "SharedDataHeader",
    "StatPayloadRequest",
    "Stats",
    "Task",
    "TaskError",
    "TierCapacity",
    "UpdateSessionRequest",
    "WorkerHeartbeat",
    "WorkerInfo",
    "WorkerInstruction",
    "WorkerRegistration",
    "WorkerState",
    "WorkerStatus",
    "WritePayloadResponse",
    "add_admin_servicer",
    "add_central_cache_servicer",
    "add_node_cache_servicer",
    "add_payload_agent_servicer",
    "add_payload_catalog_servicer",
    "add_queue_servicer",
]
