"""The alpcrun client SDK: sessions, task submission and result streaming.

``AsyncClient`` / ``AsyncSession`` are the asyncio API; ``Client`` / ``Session`` (from
:mod:`alpcrun.client.sync`) are their blocking twins, running the async client on a private
event-loop thread.
"""

from __future__ import annotations

from alpcrun.client._client import AsyncClient as AsyncClient
from alpcrun.client._deadletters import AsyncDeadLetters as AsyncDeadLetters
from alpcrun.client._deadletters import DeadLetterInfo as DeadLetterInfo
from alpcrun.client._deadletters import DeadLetterOutcome as DeadLetterOutcome
from alpcrun.client._deadletters import DeadLetterPage as DeadLetterPage
from alpcrun.client._handle import TaskHandle as TaskHandle
from alpcrun.client._map import TaskInput as TaskInput
from alpcrun.client._results import Progress as Progress
from alpcrun.client._results import TaskResult as TaskResult
from alpcrun.client._session import AsyncSession as AsyncSession
from alpcrun.client.sync import Client as Client
from alpcrun.client.sync import DeadLetters as DeadLetters
from alpcrun.client.sync import Session as Session
from alpcrun.payload.store import PayloadView as PayloadView
from alpcrun.payload.types import Tier as Tier

__all__ = [
    "AsyncClient",
    "AsyncDeadLetters",
    "AsyncSession",
    "Client",
    "DeadLetterInfo",
    "DeadLetterOutcome",
    "DeadLetterPage",
    "DeadLetters",
    "PayloadView",
    "Progress",
    "Session",
    "TaskHandle",
    "TaskInput",
    "TaskResult",
    "Tier",
]
