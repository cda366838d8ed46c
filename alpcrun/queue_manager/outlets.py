"""What the sans-I/O core needs from connections: synchronous, non-blocking hooks.

The gRPC shell implements these over asyncio queues and events; tests use recording fakes.
"""

from __future__ import annotations

from typing import Protocol

from alpcrun.proto import Batch, WorkerInstruction


class WorkerControl(Protocol):
    """The WorkerUpdate stream of one worker."""

    def send(self, instruction: WorkerInstruction) -> None:
        """Queue an instruction for the worker."""

    def close(self) -> None:
        """End the stream (the worker was declared lost)."""


class WorkerData(Protocol):
    """The WorkerStream of one bound worker."""

    def send(self, batch: Batch) -> None:
        """Queue a task batch for the worker."""

    def close(self) -> None:
        """End the stream with OK once queued batches are written (unbind completed)."""


class ClientOutlet(Protocol):
    """The ClientStream attached to a session."""

    def results_ready(self) -> None:
        """Result batches are waiting in the session's result buffer."""

    def room_available(self) -> None:
        """The session's task queue has room again; resume reading batches."""

    def close(self, *, superseded: bool = False) -> None:
        """End the stream: session closed (flush results first) or a newer stream took over."""
