"""Nodes and their tiers' capacity: admission of new payloads by reservation (sans-I/O).

Each node agent registers its tiers with a capacity in bytes. An allocation *reserves* its
size on one (node, tier) before any byte is written; committing turns the reservation into
used bytes, aborting or reclaiming releases it. A reservation that does not fit is refused
(moving data between tiers under pressure is a later piece): the placement tries the
preferred node first, then the others by free space, and, when no tier was asked for, RAM
before disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from alpcrun.errors import NotFound, ResourceExhausted
from alpcrun.payload.types import Tier

DEFAULT_TIERS = (Tier.RAM, Tier.DISK)
"""Tiers tried, in order, for an allocation that names none."""


@dataclass(slots=True)
class TierSpace:
    """Bytes of one tier on one node."""

    capacity: int
    """What the agent offers."""
    used: int = 0
    """Held by committed replicas."""
    reserved: int = 0
    """Promised to allocations not yet committed."""

    @property
    def free(self) -> int:
        """Bytes neither used nor reserved."""
        return self.capacity - self.used - self.reserved


@dataclass(slots=True)
class NodeRecord:
    """A registered node agent."""

    name: str
    """Node name."""
    address: str
    """Where other nodes reach its data path (``host:port``)."""
    last_heartbeat: float
    """Monotonic time of its last registration or heartbeat."""
    tiers: dict[Tier, TierSpace] = field(default_factory=dict)
    """Its tiers."""


@dataclass(frozen=True, slots=True)
class TierUsage:
    """One (node, tier)'s figures, for status, metrics and placement."""

    node: str
    """Node name."""
    tier: Tier
    """Tier."""
    capacity: int
    """Bytes offered."""
    used: int
    """Bytes of committed replicas."""
    reserved: int
    """Bytes promised to open allocations."""


class NodeTable:
    """Registered nodes, their tiers, and the bytes reserved and used on each.

    Args:
        node_timeout_s: A node silent this long is lost.
    """

    __slots__ = ("node_timeout_s", "nodes")

    def __init__(self, *, node_timeout_s: float = 30.0) -> None:
        self.node_timeout_s = node_timeout_s
        self.nodes: dict[str, NodeRecord] = {}
        """Registered nodes by name."""

    def register(
        self, name: str, address: str, capacities: Mapping[Tier, int], now: float
    ) -> NodeRecord:
        """Register a node (again): its tiers get these capacities; what is held stays held."""
        node = self.nodes.get(name)
        if node is None:
            node = self.nodes[name] = NodeRecord(name, address, now)
        node.address, node.last_heartbeat = address, now
        for tier, capacity in capacities.items():
            space = node.tiers.get(tier)
            if space is None:
                node.tiers[tier] = TierSpace(capacity)
            else:
                space.capacity = capacity
        return node

    def heartbeat(self, name: str, now: float) -> None:
        """A sign of life from a registered node (NotFound if it must register first)."""
        node = self.nodes.get(name)
        if node is None:
            raise NotFound(f"node {name!r} is not registered", field="node")
        node.last_heartbeat = now

    def silent(self, now: float) -> list[str]:
        """Nodes that sent nothing for ``node_timeout_s``."""
        return [n.name for n in self.nodes.values() if now - n.last_heartbeat > self.node_timeout_s]

    def forget(self, name: str) -> None:
        """Drop a lost node and its tiers."""
        self.nodes.pop(name, None)

    def place(self, size: int, tier: Tier | None, prefer: str) -> tuple[str, Tier]:
        """Reserve ``size`` bytes and return where: ``prefer`` first, then by free space.

        Raises:
            ResourceExhausted: No registered node has room on the tier (or tiers) allowed.
        """
        tiers = (tier,) if tier is not None else DEFAULT_TIERS
        others = sorted(
            (n for n in self.nodes.values() if n.name != prefer),
            key=lambda n: -sum(s.free for s in n.tiers.values()),
        )
        first = [self.nodes[prefer]] if prefer in self.nodes else []
        for t in tiers:
            for node in (*first, *others):
                space = node.tiers.get(t)
                if space is not None and space.free >= size:
                    space.reserved += size
                    return node.name, t
        wanted = tier.value if tier is not None else " or ".join(t.value for t in tiers)
        raise ResourceExhausted(f"no node has {size} bytes free on the {wanted} tier")

    def _space(self, node: str, tier: Tier) -> TierSpace | None:
        record = self.nodes.get(node)
        return None if record is None else record.tiers.get(tier)

    def committed(self, node: str, tier: Tier, size: int) -> None:
        """A reservation became a committed replica."""
        space = self._space(node, tier)
        if space is not None:
            space.reserved -= size
            space.used += size

    def unreserve(self, node: str, tier: Tier, size: int) -> None:
        """A reservation ended without a commit (abort, reclaim)."""
        space = self._space(node, tier)
        if space is not None:
            space.reserved -= size

    def release(self, node: str, tier: Tier, size: int) -> None:
        """A committed replica was freed."""
        space = self._space(node, tier)
        if space is not None:
            space.used -= size

    def usage(self) -> list[TierUsage]:
        """Every (node, tier)'s figures, by node then tier."""
        return [
            TierUsage(n.name, t, s.capacity, s.used, s.reserved)
            for n in sorted(self.nodes.values(), key=lambda n: n.name)
            for t, s in n.tiers.items()
        ]


__all__ = ["DEFAULT_TIERS", "NodeRecord", "NodeTable", "TierSpace", "TierUsage"]
