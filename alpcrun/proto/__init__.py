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
    from alpcrun.proto.services import (
        QUEUE_SERVICE_NAME as QUEUE_SERVICE_NAME,
    )
    from alpcrun.proto.services import AdminServicer as AdminServicer
    from alpcrun.proto.services import AdminStub as AdminStub
    from alpcrun.proto.services import CentralCacheServicer as CentralCacheServicer
    from alpcrun.proto.services import CentralCacheStub as CentralCacheStub
    from alpcrun.proto.services import NodeCacheServicer as NodeCacheServicer
    from alpcrun.proto.services import NodeCacheStub as NodeCacheStub
    from alpcrun.proto.services import QueueServicer as QueueServicer
    from alpcrun.proto.services import QueueStub as QueueStub
    from alpcrun.proto.services import add_admin_servicer as add_admin_servicer
    from alpcrun.proto.services import add_central_cache_servicer as add_central_cache_servicer
    from alpcrun.proto.services import add_node_cache_servicer as add_node_cache_servicer
    from alpcrun.proto.services import add_queue_servicer as add_queue_servicer

_SERVICE_NAMES = frozenset(
    {
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
    "QUEUE_SERVICE_NAME",
    "AdminServicer",
    "AdminStub",
    "Batch",
    "CentralCacheServicer",
    "CentralCacheStub",
    "ClientStreamRequest",
    "ClientStreamResponse",
    "CloseSessionRequest",
    "CloseSessionResponse",
    "CreateSessionRequest",
    "DeadLetter",
    "DeadLetterCount",
    "DeadLettersRequest",
    "DeleteSharedDataRequest",
    "DeleteSharedDataResponse",
    "DiscardDeadLettersRequest",
    "ErrorReason",
    "GetDeadLetterRequest",
    "GetSessionRequest",
    "GetSharedDataRequest",
    "GetStatsRequest",
    "ListDeadLettersRequest",
    "ListDeadLettersResponse",
    "ListSessionsRequest",
    "ListSessionsResponse",
    "ListWorkersRequest",
    "ListWorkersResponse",
    "NodeCacheServicer",
    "NodeCacheStub",
    "NodeReadReply",
    "NodeReadRequest",
    "PayloadRef",
    "QueueServicer",
    "QueueStub",
    "QueueType",
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
    "Stats",
    "Task",
    "TaskError",
    "UpdateSessionRequest",
    "WorkerHeartbeat",
    "WorkerInfo",
    "WorkerInstruction",
    "WorkerRegistration",
    "WorkerState",
    "WorkerStatus",
    "add_admin_servicer",
    "add_central_cache_servicer",
    "add_node_cache_servicer",
    "add_queue_servicer",
]
