"""Bounds and timings the queue manager core enforces.

Byte bounds count *charged* bytes: a batch's serialized size plus
:data:`TASK_OVERHEAD_BYTES` per task and :data:`BATCH_OVERHEAD_BYTES` per batch, what the
parsed protobuf messages and their book-keeping cost in memory beyond their wire size
(measured with the upb runtime: about 95 bytes per task, whatever its payload). A batch of
1,000 tasks of 8-byte payloads is 40 KB on the wire and about 125 KB in memory; charged, it
is 168 KB. The bounds therefore hold for tiny tasks as well as for large ones.
"""

from __future__ import annotations

from dataclasses import dataclass

TASK_OVERHEAD_BYTES = 128
"""Bytes charged per task on top of its serialized size (measured: about 95)."""
BATCH_OVERHEAD_BYTES = 512
"""Bytes charged per batch (queue entry, batch-id book-keeping, Python objects)."""
MIB = 1 << 20


def charged(nbytes: int, ntasks: int, nbatches: int = 1) -> int:
    """Charged bytes of ``nbatches`` batches of ``ntasks`` tasks and ``nbytes`` serialized bytes."""
    return nbytes + ntasks * TASK_OVERHEAD_BYTES + nbatches * BATCH_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class CoreLimits:
    """Bounds and timings the core enforces (from QueueManagerSettings)."""

    buffer_size: int = 10_000
    """Queued batches per session before its client stream is paused."""
    max_pending_bytes: int = 256 * MIB
    """Queued bytes (charged) per session before its client stream is paused."""
    max_total_bytes: int = 1024 * MIB
    """Task bytes (queued, in flight, waiting for a retry) plus result bytes (not yet
    acknowledged) held for all sessions together before every client stream is paused."""
    max_buffered_results: int = 10_000
    """Undelivered result batches per session before dispatch for it pauses."""
    max_result_bytes: int = 256 * MIB
    """Result bytes per session (undelivered or unacknowledged) before dispatch for it pauses."""
    max_dead_letter_bytes: int = 64 * MIB
    """Dead-letter bytes per session before it refuses new batches (RESOURCE_EXHAUSTED)."""
    max_total_dead_letter_bytes: int = 256 * MIB
    """Dead-letter bytes of all sessions before every session refuses new batches."""
    max_sessions: int = 10_000
    """Sessions held (open, and closed within their retention) before CreateSession fails."""
    max_sessions_per_key: int = 10_000
    """Sessions held per API key before CreateSession with that key fails."""
    max_registered_workers: int = 10_000
    """Registered workers before a new registration fails."""
    max_label_bytes: int = 4096
    """UTF-8 bytes of a session's tags, of its worker selector and of a worker's labels."""
    worker_timeout_s: float = 60.0
    """Heartbeat age after which a worker is lost."""
    heartbeat_interval_s: float = 5.0
    """Heartbeat interval asked of workers."""
    bind_stream_timeout_s: float = 30.0
    """A bound worker that has not opened its WorkerStream for this long is lost."""
    session_retention_s: float = 300.0
    """How long closed sessions stay visible."""
    session_expiry_s: float = 3600.0
    """A session without client, work or activity for this long is closed; 0 means never."""
    unused_session_expiry_s: float = 300.0
    """The same for a session that was never given a task, when shorter than
    ``session_expiry_s``; 0 turns it off (and ``session_expiry_s`` 0 turns off both)."""
    default_fifo: bool = False
    """Queue type of sessions that do not choose one."""


__all__ = ["BATCH_OVERHEAD_BYTES", "TASK_OVERHEAD_BYTES", "CoreLimits", "charged"]
