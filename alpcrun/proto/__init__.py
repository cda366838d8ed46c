"""Stable re-exports of the generated alpcrun.v1 messages and service stubs.

Nothing outside this package imports ``alpcrun.proto._gen`` directly.
"""

from __future__ import annotations

from alpcrun.proto._gen import (
    admin_pb2,
    admin_pb2_grpc,
    cache_pb2,
    cache_pb2_grpc,
    queue_pb2,
    queue_pb2_grpc,
)
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
