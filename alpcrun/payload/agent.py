"""The payload agent: what a node agent does with the payload bytes of its node.

It owns the node's tier backends and knows, for each payload it holds, its session, tier
and size. It learns of a payload when its producer first asks for it (a writable descriptor
on this node, or the first chunk from another node): the catalog must confirm that the
payload is allocated on this node, to that session, with that size. It commits a payload for
its producer: the bytes are made immutable here first (the memfd sealed, the file renamed),
then the catalog is told, so no reader can ever see a payload that may still change. It
serves committed payloads to readers of their session and frees bytes when the catalog says.

The catalog is reached through a :class:`CatalogLink` (gRPC in the node agent, the catalog
service in-process in tests).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from alpcrun.errors import NotFound, PayloadStateError
from alpcrun.payload.convert import tier_from_proto
from alpcrun.payload.tiers.base import Backend, check_payload_id, not_held
from alpcrun.payload.types import Free, Tier
from alpcrun.proto import PayloadInfo, PayloadState

log = logging.getLogger("alpcrun.payload.agent")


class CatalogLink(Protocol):
    """The calls the agent makes to the catalog."""

    async def stat(self, session_id: str, payload_id: str) -> PayloadInfo:
        """The payload's record (NotFound for an unknown one or another session's)."""
        ...

    async def commit(self, session_id: str, payload_id: str, size: int) -> PayloadInfo:
        """Commit the payload; its record after commit."""
        ...


@dataclass(eq=False, slots=True)
class Held:
    """A payload whose bytes this agent holds."""

    session_id: str
    """Owning session."""
    tier: Tier
    """The backend holding it."""
    size: int
    """Length in bytes."""
    committed: bool = False
    """Immutable and readable."""
    version: int = 0
    """Version the catalog gave it on commit."""


class PayloadAgent:
    """One node's payload bytes, across its tiers.

    Args:
        node: This node's name (as registered with the catalog).
        backends: The tiers it offers.
        catalog: How it reaches the catalog.
    """

    def __init__(self, node: str, backends: Iterable[Backend], catalog: CatalogLink) -> None:
        self.node = node
        self.backends: dict[Tier, Backend] = {b.tier: b for b in backends}
        self._catalog = catalog
        self.held: dict[str, Held] = {}
        """Payloads held here, by id."""

    def capacities(self) -> Mapping[Tier, int]:
        """Capacity of each tier, as registered with the catalog."""
        return {t: b.statistics().capacity for t, b in self.backends.items()}

    # ------------------------------------------------------------------ producers
    async def _adopt(self, payload_id: str, session_id: str) -> Held:
        """The payload to write: created here once the catalog confirms its allocation."""
        check_payload_id(payload_id)
        held = self.held.get(payload_id)
        if held is not None:
            if held.session_id != session_id:
                raise not_held(payload_id)
            return held
        info = await self._catalog.stat(session_id, payload_id)
        if info.state != PayloadState.PAYLOAD_STATE_ALLOCATED:
            raise PayloadStateError(
                f"payload {payload_id} is not open for writing (committed or deleted)",
                field="payload_id",
            )
        tier = self._allocated_here(info)
        self.backends[tier].create(payload_id, info.ref.size_bytes)
        held = self.held[payload_id] = Held(session_id, tier, info.ref.size_bytes)
        return held

    def _allocated_here(self, info: PayloadInfo) -> Tier:
        for i, replica in enumerate(info.replicas):
            tier = tier_from_proto(replica.tier, f"replicas[{i}].tier")
            if replica.node == self.node and tier in self.backends:
                return tier
        raise NotFound(
            f"payload {info.ref.payload_id} is not allocated on node {self.node}",
            field="payload_id",
        )

    async def writable_fd(self, payload_id: str, session_id: str) -> tuple[int, Held]:
        """A descriptor a same-node producer maps read-write (theirs to close)."""
        held = await self._adopt(payload_id, session_id)
        return self.backends[held.tier].writable_fd(payload_id), held

    async def write(self, payload_id: str, session_id: str, offset: int, data: bytes) -> Held:
        """Write a chunk that arrived from a producer on another node."""
        held = await self._adopt(payload_id, session_id)
        self.backends[held.tier].write(payload_id, offset, data)
        return held

    async def commit(self, payload_id: str, session_id: str) -> PayloadInfo:
        """Make the payload immutable here, then commit it with the catalog."""
        held = self._get(payload_id, session_id)
        backend = self.backends[held.tier]
        backend.commit(payload_id)
        info = await self._catalog.commit(session_id, payload_id, held.size)
        held.committed, held.version = True, info.ref.version
        return info

    # ------------------------------------------------------------------ readers
    async def readonly_fd(self, payload_id: str, session_id: str) -> tuple[int, Held]:
        """A read-only descriptor of a committed payload for a same-node reader."""
        held = await self._readable(payload_id, session_id)
        return self.backends[held.tier].readonly_fd(payload_id), held

    async def read(self, payload_id: str, session_id: str, offset: int, length: int) -> bytes:
        """Bytes of a committed payload for a reader on another node."""
        held = await self._readable(payload_id, session_id)
        return self.backends[held.tier].read(payload_id, offset, length)

    async def size(self, payload_id: str, session_id: str) -> int:
        """The length of a committed payload held here."""
        return (await self._readable(payload_id, session_id)).size

    async def _readable(self, payload_id: str, session_id: str) -> Held:
        check_payload_id(payload_id)
        if payload_id not in self.held:
            await self._recovered(payload_id, session_id)
        held = self._get(payload_id, session_id)
        if not held.committed:
            raise PayloadStateError(f"payload {payload_id} is not committed", field="payload_id")
        return held

    async def _recovered(self, payload_id: str, session_id: str) -> None:
        """A payload a backend kept across a restart (disk): its owner is the catalog's word."""
        tiers = [t for t, b in self.backends.items() if payload_id in b.payload_ids()]
        if not tiers:
            return
        info = await self._catalog.stat(session_id, payload_id)
        if info.state == PayloadState.PAYLOAD_STATE_COMMITTED:
            size = self.backends[tiers[0]].size(payload_id)
            self.held[payload_id] = Held(session_id, tiers[0], size, True, info.ref.version)

    def _get(self, payload_id: str, session_id: str) -> Held:
        held = self.held.get(payload_id)
        if held is None or held.session_id != session_id:
            raise not_held(payload_id)
        return held

    # ------------------------------------------------------------------ catalog duties
    def free(self, frees: Iterable[Free]) -> int:
        """Drop the bytes the catalog let go of; return how many payloads were dropped."""
        dropped = 0
        for f in frees:
            backend = self.backends.get(f.tier)
            if backend is not None and backend.free(f.payload_id):
                dropped += 1
            self.held.pop(f.payload_id, None)
        return dropped

    def held_ids(self) -> list[str]:
        """Payloads held, kept ones from before a restart included (what registration reports)."""
        return sorted({pid for b in self.backends.values() for pid in b.payload_ids()})

    def close(self) -> None:
        """Release every backend's resources (RAM payloads die with the agent)."""
        for backend in self.backends.values():
            backend.close()


__all__ = ["CatalogLink", "Held", "PayloadAgent"]
