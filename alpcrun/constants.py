"""Wire constants: default ports, metadata keys and size limits, in one place."""

from __future__ import annotations

from typing import Final

QUEUE_MANAGER_PORT: Final = 1337
"""Default gRPC port of the queue manager."""
CENTRAL_CACHE_PORT: Final = 2337
"""Default gRPC port of the central cache."""
NODE_AGENT_PORT: Final = 3337
"""Default gRPC port of the node agent."""
NODE_AGENT_READ_PORT: Final = 3338
"""Default TCP port of the node agent's read path (shared-data reads without gRPC)."""
QUEUE_MANAGER_METRICS_PORT: Final = 9337
"""Default Prometheus HTTP port of the queue manager."""
CENTRAL_CACHE_METRICS_PORT: Final = 9338
"""Default Prometheus HTTP port of the central cache."""
NODE_AGENT_METRICS_PORT: Final = 9339
"""Default Prometheus HTTP port of the node agent."""
SCALER_METRICS_PORT: Final = 9340
"""Default HTTP port of ``alpcrun scaler``'s /metrics, /healthz and /readyz."""

MD_API_KEY: Final = "api_key"
"""Metadata key carrying the API key on every call."""
MD_SESSION_ID: Final = "sessionid"
"""Metadata key naming the session of a ClientStream or WorkerStream."""
MD_ACKS: Final = "acks"
"""ClientStream metadata: ``1`` when the client acknowledges results (``ResultAck``)."""
MD_WORKER_ID: Final = "workerid"
"""Metadata key naming the worker of a WorkerStream; response header of WorkerUpdate."""
MD_ERROR_FIELD: Final = "alpcrun-field"
"""Trailing metadata key naming the offending field of an INVALID_ARGUMENT or NOT_FOUND error."""

MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
"""Default largest gRPC message accepted or sent (bounded, never unlimited)."""
MAX_ID_LENGTH: Final = 128
"""Longest task, batch or application id accepted."""
MAX_TAGS: Final = 64
"""Most tags a session may carry."""
MAX_LABELS: Final = 64
"""Most labels a worker (or worker selector) may carry."""
MAX_NAME_LENGTH: Final = 253
"""Longest worker node or pod name accepted (a Kubernetes object name's limit)."""

ENV_PREFIX: Final = "ALPCRUNCH_"
"""Prefix of every environment variable alpcrun reads."""
