"""The payload store's vocabulary: tiers, states, records, replicas and leases (no I/O)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Tier(enum.Enum):
    """Where a replica's bytes live, fastest first."""

    GPU = "gpu"
    """Device memory owned by the node agent (a later issue)."""
    RAM = "ram"
    """Shared memory owned by the node agent."""
    DISK = "disk"
    """Files under the node agent's disk-tier directory."""
    OBJECT = "object"
    """An object store every node can read (a later issue)."""
    VOID = "void"
    """Nowhere: the bytes were discarded and must be recomputed (a later issue)."""


class PayloadState(enum.Enum):
    """Lifecycle of a payload: allocated, then committed (immutable), then deleted."""

    ALLOCATED = "allocated"
    """Space reserved; the producer is writing. Not readable."""
    COMMITTED = "committed"
    """Written and immutable; readable while it has a replica."""
    DELETING = "deleting"
    """Deleted while leased: no new leases; freed when the last lease ends."""


class ReplicaState(enum.Enum):
    """State of one copy of a payload on one (node, tier)."""

    WRITING = "writing"
    """Being written (the payload is allocated)."""
    READY = "ready"
    """Complete and readable."""
    LOST = "lost"
    """Its node was lost; the bytes are gone."""


@dataclass(eq=False, slots=True)
class Replica:
    """One copy of a payload on one node's tier."""

    node: str
    """Node name (the node agent's ``node``)."""
    tier: Tier
    """Tier on that node."""
    state: ReplicaState
    """Writing, ready or lost."""
    secondary: bool = False
    """A cache copy made for a reader on another node: always evictable, never the last one."""
    last_access: float = 0.0
    """Monotonic time of the last lease granted on it."""


@dataclass(eq=False, slots=True)
class PayloadRecord:
    """What the catalog knows of one payload (never its bytes)."""

    id: str
    """ULID assigned by the catalog."""
    session_id: str
    """Owning session: its tenant, quota and lifetime."""
    size: int
    """Length in bytes, fixed at allocation."""
    created_at: float
    """Wall-clock allocation time."""
    allocated_at: float
    """Monotonic allocation time (an allocation never committed is reclaimed after
    ``pending_ttl``)."""
    state: PayloadState = PayloadState.ALLOCATED
    """Lifecycle state."""
    version: int = 1
    """Bumped on every change a reader must notice (commit, replica lost, delete)."""
    meta: dict[str, str] = field(default_factory=dict)
    """User metadata, e.g. ``dtype`` and ``shape`` (bounded in size)."""
    parents: tuple[str, ...] = ()
    """Lineage: the payloads this one was computed from."""
    expires_at: float = 0.0
    """Monotonic time it is deleted; 0 means it lives as long as its session."""
    keep: bool = False
    """Survives its session's close (deleted explicitly or at ``expires_at``)."""
    replicas: list[Replica] = field(default_factory=list)
    """Its copies, primary first."""

    @property
    def readable(self) -> bool:
        """Committed and with at least one ready replica."""
        return self.state is PayloadState.COMMITTED and any(
            r.state is ReplicaState.READY for r in self.replicas
        )

    def replica(self, node: str, tier: Tier) -> Replica | None:
        """The replica on (node, tier), if any."""
        for r in self.replicas:
            if r.node == node and r.tier is tier:
                return r
        return None


@dataclass(frozen=True, slots=True)
class Lease:
    """A reader's hold on one replica: it is not freed while the lease lives."""

    id: str
    """Lease id."""
    payload_id: str
    """The payload read."""
    version: int
    """The payload's version when granted (a reader checks it against the descriptor)."""
    node: str
    """Node of the leased replica."""
    tier: Tier
    """Tier of the leased replica."""
    holder: str
    """The task attempt (or client) holding it; the queue manager releases by holder."""
    expires_at: float
    """Monotonic expiry unless renewed."""


@dataclass(frozen=True, slots=True)
class Free:
    """An instruction for a node agent: drop the bytes of a payload on one tier."""

    node: str
    """The agent's node."""
    tier: Tier
    """The tier holding the bytes."""
    payload_id: str
    """The payload."""


__all__ = [
    "Free",
    "Lease",
    "PayloadRecord",
    "PayloadState",
    "Replica",
    "ReplicaState",
    "Tier",
]
