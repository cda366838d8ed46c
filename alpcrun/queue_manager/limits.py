"""Bounds and timings the queue manager core enforces."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CoreLimits:
    """Bounds and timings the core enforces (from QueueManagerSettings)."""

    buffer_size: int = 10_000
    """Queued batches per session before its client stream is paused."""
    max_pending_bytes: int = 1 << 30
    """Queued bytes per session before its client stream is paused."""
    max_buffered_results: int = 10_000
    """Undelivered result batches per session before dispatch for it pauses."""
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
    default_fifo: bool = False
    """Queue type of sessions that do not choose one."""


__all__ = ["CoreLimits"]
