"""The queue manager: sessions, queues, scheduler, worker registry, admin API.

Importing the package loads nothing else, so the sans-I/O cores (``scheduler``, ``core``,
``queues``) import without grpc; ``QueueManager``, ``QueueCore`` and ``CoreLimits`` are
loaded from their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alpcrun.queue_manager.app import QueueManager as QueueManager
    from alpcrun.queue_manager.core import QueueCore as QueueCore
    from alpcrun.queue_manager.limits import CoreLimits as CoreLimits

_HOMES = {
    "QueueManager": "alpcrun.queue_manager.app",
    "QueueCore": "alpcrun.queue_manager.core",
    "CoreLimits": "alpcrun.queue_manager.limits",
}


def __getattr__(name: str) -> object:
    """Load a re-exported class from its module on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


__all__ = ["CoreLimits", "QueueCore", "QueueManager"]
