"""The queue manager: sessions, queues, scheduler, worker registry, admin API."""

from __future__ import annotations

from alpcrun.queue_manager.app import QueueManager as QueueManager
from alpcrun.queue_manager.core import CoreLimits as CoreLimits
from alpcrun.queue_manager.core import QueueCore as QueueCore

__all__ = ["CoreLimits", "QueueCore", "QueueManager"]
