"""The lease table: who reads which replica until when (sans-I/O, times passed in).

A read lease pins one replica of one payload: the catalog frees no replica that a live lease
holds. Each lease belongs to a *holder*, the task attempt that reads (the queue manager names
it), and lives ``ttl_s`` unless renewed: the worker's heartbeat renews every lease of its
running attempts, and the queue manager releases a holder's leases when the attempt ends,
fails, times out or its worker is lost. A lease nobody renews lapses on its own.
"""

from __future__ import annotations

import dataclasses
import itertools

from alpcrun.payload.types import Lease, Tier


class LeaseTable:
    """Live leases by id, by holder and by payload.

    Args:
        ttl_s: How long a lease lives from its grant or last renewal.
    """

    __slots__ = ("_by_holder", "_by_payload", "_ids", "leases", "ttl_s")

    def __init__(self, *, ttl_s: float = 30.0) -> None:
        self.ttl_s = ttl_s
        self.leases: dict[str, Lease] = {}
        """Live leases by id."""
        self._by_holder: dict[str, set[str]] = {}
        self._by_payload: dict[str, set[str]] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self.leases)

    def grant(
        self, payload_id: str, version: int, node: str, tier: Tier, holder: str, now: float
    ) -> Lease:
        """A new lease on the replica (node, tier) of ``payload_id`` for ``holder``."""
        lease = Lease(
            id=f"l{next(self._ids)}",
            payload_id=payload_id,
            version=version,
            node=node,
            tier=tier,
            holder=holder,
            expires_at=now + self.ttl_s,
        )
        self.leases[lease.id] = lease
        self._by_holder.setdefault(holder, set()).add(lease.id)
        self._by_payload.setdefault(payload_id, set()).add(lease.id)
        return lease

    def renew(self, holder: str, now: float) -> int:
        """Extend every lease of ``holder`` by ``ttl_s`` from ``now``; return how many."""
        ids = self._by_holder.get(holder, ())
        for lid in ids:
            self.leases[lid] = dataclasses.replace(self.leases[lid], expires_at=now + self.ttl_s)
        return len(ids)

    def release_holder(self, holder: str) -> list[Lease]:
        """End every lease of ``holder`` (its attempt is over); return them."""
        return [self._drop(lid) for lid in list(self._by_holder.get(holder, ()))]

    def release(self, lease_ids: list[str], holder: str) -> list[Lease]:
        """End the named leases of ``holder`` (unknown or others' ids are ignored)."""
        mine = self._by_holder.get(holder, set())
        return [self._drop(lid) for lid in lease_ids if lid in mine]

    def expire(self, now: float) -> list[Lease]:
        """End every lease past its expiry; return them."""
        late = [lid for lid, lease in self.leases.items() if lease.expires_at <= now]
        return [self._drop(lid) for lid in late]

    def holders(self) -> list[str]:
        """Every holder with a live lease."""
        return list(self._by_holder)

    def on_payload(self, payload_id: str) -> int:
        """Live leases on any replica of ``payload_id``."""
        return len(self._by_payload.get(payload_id, ()))

    def on_replica(self, payload_id: str, node: str, tier: Tier) -> bool:
        """Whether a live lease holds the replica (node, tier) of ``payload_id``."""
        return any(
            self.leases[lid].node == node and self.leases[lid].tier is tier
            for lid in self._by_payload.get(payload_id, ())
        )

    def _drop(self, lease_id: str) -> Lease:
        lease = self.leases.pop(lease_id)
        for index, key in ((self._by_holder, lease.holder), (self._by_payload, lease.payload_id)):
            ids = index[key]
            ids.discard(lease_id)
            if not ids:
                del index[key]
        return lease


__all__ = ["LeaseTable"]
