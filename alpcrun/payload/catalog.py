"""The payload catalog: the control plane of the payload store (sans-I/O, clock injected).

It knows every payload's size, owner, state, version and replicas, the read leases on them,
and each node's tier capacity; it never sees a payload's bytes. Lifecycle:

1. ``allocate``: space is reserved on a (node, tier); the payload is ALLOCATED and its
   replica WRITING. An allocation not committed within ``pending_ttl_s`` is reclaimed.
2. ``commit``: the producer wrote exactly ``size`` bytes; the payload is COMMITTED and
   immutable from then on, its replica READY, its version bumped.
3. ``acquire``: a reader gets a lease on one ready replica (its own node's first); the
   replica is not freed while the lease lives.
4. ``delete`` (or its session closing, or its TTL): freed at once if nobody reads it,
   otherwise DELETING until the last lease ends; no new lease is granted meanwhile.

Every call that a task-heavy workload makes takes many payloads at once and is all or
nothing: a batch with one bad entry changes nothing. Payloads of another session are
``NotFound`` (no hint that they exist). Methods that free bytes return :class:`Free`
instructions for the node agents that hold them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ulid import ULID

from alpcrun._clock import Clock, MonotonicClock
from alpcrun.constants import MAX_ID_LENGTH
from alpcrun.errors import (
    InvalidArgument,
    NotFound,
    PayloadLost,
    PayloadStateError,
    ResourceExhausted,
)
from alpcrun.payload.leases import LeaseTable
from alpcrun.payload.placement import NodeTable, TierUsage
from alpcrun.payload.types import (
    Free,
    Lease,
    PayloadRecord,
    PayloadState,
    Replica,
    ReplicaState,
    Tier,
)

_ALLOCATED, _COMMITTED, _DELETING = (
    PayloadState.ALLOCATED,
    PayloadState.COMMITTED,
    PayloadState.DELETING,
)


MAX_HELD = 1_000_000
"""Payload ids one agent registration may report holding."""


@dataclass(frozen=True, slots=True)
class CatalogLimits:
    """Bounds and timings the catalog enforces."""

    max_payload_bytes: int = 1 << 40
    """Largest single payload."""
    session_quota_bytes: int = 64 << 30
    """Bytes one session may hold (allocated or committed) at once."""
    pending_ttl_s: float = 600.0
    """An allocation not committed for this long is reclaimed."""
    lease_ttl_s: float = 30.0
    """A read lease lives this long unless renewed."""
    node_timeout_s: float = 30.0
    """A node agent silent this long is lost, with its replicas."""
    max_meta_bytes: int = 4096
    """User metadata per payload (keys plus values)."""
    max_parents: int = 64
    """Lineage parents per payload."""
    max_batch: int = 10_000
    """Payloads one call may name."""


@dataclass(frozen=True, slots=True)
class Allocation:
    """One payload to allocate."""

    session_id: str
    """The owning session."""
    size: int
    """Exact length in bytes the producer will write."""
    tier: Tier | None = None
    """Tier wanted; None: RAM, else disk."""
    node: str = ""
    """The producer's node, tried first."""
    meta: Mapping[str, str] = field(default_factory=dict)
    """User metadata (``dtype``, ``shape``...)."""
    parents: tuple[str, ...] = ()
    """Lineage parents."""
    ttl_s: float = 0.0
    """Delete after this long; 0: live as long as the session (unless ``keep``)."""
    keep: bool = False
    """Survive the session's close."""


@dataclass(frozen=True, slots=True)
class CatalogStatistics:
    """Counts for metrics and status."""

    payloads: int
    """Payloads known (any state)."""
    committed: int
    """Committed payloads."""
    committed_bytes: int
    """Their bytes."""
    leases: int
    """Live read leases."""
    reclaimed: int
    """Allocations reclaimed after ``pending_ttl_s`` since start."""
    lost: int
    """Payloads that lost their last replica since start."""
    usage: tuple[TierUsage, ...]
    """Per (node, tier) figures."""


class Catalog:
    """Payload records, replicas, leases and node capacity.

    Args:
        limits: Bounds and timings.
        clock: Time (a fake one in tests).
    """

    def __init__(self, *, limits: CatalogLimits | None = None, clock: Clock | None = None) -> None:
        self.limits = limits or CatalogLimits()
        self.clock = clock or MonotonicClock()
        self.payloads: dict[str, PayloadRecord] = {}
        """Every payload not yet deleted, by id."""
        self.nodes = NodeTable(node_timeout_s=self.limits.node_timeout_s)
        self.leases = LeaseTable(ttl_s=self.limits.lease_ttl_s)
        self._session_bytes: dict[str, int] = {}
        self._frees: dict[str, list[Free]] = {}
        self.reclaimed = 0
        self.lost = 0

    # ------------------------------------------------------------------ nodes
    def register_node(
        self,
        name: str,
        address: str,
        capacities: Mapping[Tier, int],
        held: Iterable[str] = (),
    ) -> list[str]:
        """A node agent (re)registers its tiers, their capacity, and the payloads it holds.

        An agent that restarted lost what it held in memory: the catalog's replicas on the
        node that ``held`` does not list are lost, and held payloads the catalog no longer
        knows are queued to be freed. Returns the payloads left with no replica.
        """
        if not name or len(name) > MAX_ID_LENGTH:
            raise InvalidArgument(f"required, 1..{MAX_ID_LENGTH} chars", field="node")
        if len(address) > 2 * MAX_ID_LENGTH:
            raise InvalidArgument(f"at most {2 * MAX_ID_LENGTH} chars", field="agent_address")
        held = list(held)
        if len(held) > MAX_HELD:
            raise InvalidArgument(f"at most {MAX_HELD} ids", field="held_payload_ids")
        if any(c < 0 for c in capacities.values()):
            raise InvalidArgument("a capacity cannot be negative", field="tiers")
        known = name in self.nodes.nodes
        self.nodes.register(name, address, capacities, self.clock.monotonic())
        held_ids = set(held)
        unreadable = self._reconcile(name, held_ids) if known or held_ids else []
        for pid in held_ids - self.payloads.keys():
            self._queue_free([Free(name, tier, pid) for tier in capacities])
        return unreadable

    def take_frees(self, node: str) -> list[Free]:
        """The frees queued for ``node``'s agent since it last asked (its heartbeat)."""
        return self._frees.pop(node, [])

    def _queue_free(self, frees: list[Free]) -> list[Free]:
        for free in frees:
            self._frees.setdefault(free.node, []).append(free)
        return frees

    def _reconcile(self, name: str, held: set[str]) -> list[str]:
        """Replicas on ``name`` of payloads it does not hold are lost."""
        unreadable = []
        for record in list(self.payloads.values()):
            gone = [
                r
                for r in record.replicas
                if r.node == name and r.state is not ReplicaState.LOST and record.id not in held
            ]
            if not gone:
                continue
            if record.state is _ALLOCATED:
                self._remove(record)
                continue
            for replica in gone:
                self.nodes.release(name, replica.tier, record.size)
                replica.state = ReplicaState.LOST
            record.version += 1
            if record.state is _COMMITTED and not record.readable:
                self.lost += 1
                unreadable.append(record.id)
        return unreadable

    def node_heartbeat(self, name: str) -> None:
        """A sign of life from a registered node agent."""
        self.nodes.heartbeat(name, self.clock.monotonic())

    def node_lost(self, name: str) -> list[str]:
        """A node agent is gone with its bytes; return the payloads left with no replica.

        Its replicas are lost (readers' leases on them end), its open allocations are
        reclaimed, and every payload that had a replica there gets a new version.
        """
        unreadable = []
        for record in list(self.payloads.values()):
            mine = [r for r in record.replicas if r.node == name]
            if not mine:
                continue
            if record.state is _ALLOCATED:
                self._remove(record)
                continue
            for replica in mine:
                replica.state = ReplicaState.LOST
            record.replicas = [r for r in record.replicas if r.node != name] + mine
            record.version += 1
            if not record.readable and record.state is _COMMITTED:
                self.lost += 1
                unreadable.append(record.id)
        for lease in list(self.leases.leases.values()):
            if lease.node == name:
                self.leases.release([lease.id], lease.holder)
        self.nodes.forget(name)
        self._frees.pop(name, None)
        return unreadable

    # ------------------------------------------------------------------ lifecycle
    def allocate(self, requests: Sequence[Allocation]) -> list[PayloadRecord]:
        """Reserve space for each payload; all or nothing.

        Raises:
            InvalidArgument: A size, meta or parent list is out of bounds (the field named).
            ResourceExhausted: A session's quota, or every allowed tier, is full.
        """
        self._check_batch(len(requests), "allocations")
        for i, req in enumerate(requests):
            self._check_allocation(i, req)
        self._check_quota(requests)
        now, wall = self.clock.monotonic(), self.clock.time()
        made: list[PayloadRecord] = []
        try:
            for req in requests:
                node, tier = self.nodes.place(req.size, req.tier, req.node)
                record = PayloadRecord(
                    id=str(ULID()),
                    session_id=req.session_id,
                    size=req.size,
                    created_at=wall,
                    allocated_at=now,
                    meta=dict(req.meta),
                    parents=req.parents,
                    expires_at=now + req.ttl_s if req.ttl_s > 0 else 0.0,
                    keep=req.keep,
                    replicas=[Replica(node, tier, ReplicaState.WRITING)],
                )
                made.append(record)
                self.payloads[record.id] = record
                self._session_bytes[req.session_id] = (
                    self._session_bytes.get(req.session_id, 0) + req.size
                )
        except ResourceExhausted:
            for record in made:
                self._remove(record)
            raise
        return made

    def commit(
        self, items: Sequence[tuple[str, int]], session_id: str | None
    ) -> list[PayloadRecord]:
        """Commit allocated payloads ``(id, bytes written)``; all or nothing.

        Raises:
            NotFound: An unknown id (or another session's).
            PayloadStateError: A payload is not allocated (already committed, or deleting).
            InvalidArgument: The bytes written differ from the allocated size.
        """
        self._check_batch(len(items), "payloads")
        records = []
        for i, (pid, written) in enumerate(items):
            record = self._get(pid, session_id, f"payloads[{i}].id")
            if record.state is not _ALLOCATED:
                raise PayloadStateError(
                    f"payload {pid} is {record.state.value}, not allocated: it is immutable "
                    "once committed",
                    field=f"payloads[{i}].id",
                )
            if written != record.size:
                raise InvalidArgument(
                    f"payload {pid} was allocated {record.size} bytes, {written} were written",
                    field=f"payloads[{i}].size",
                )
            records.append(record)
        for record in records:
            replica = record.replicas[0]
            replica.state = ReplicaState.READY
            replica.last_access = self.clock.monotonic()
            record.state = _COMMITTED
            record.version += 1
            self.nodes.committed(replica.node, replica.tier, record.size)
        return records

    def abort(self, ids: Sequence[str], session_id: str | None) -> list[Free]:
        """Give up allocated payloads: their space and partial bytes are freed."""
        self._check_batch(len(ids), "payloads")
        records = [self._get(pid, session_id, f"payload_ids[{i}]") for i, pid in enumerate(ids)]
        for i, record in enumerate(records):
            if record.state is not _ALLOCATED:
                raise PayloadStateError(
                    f"payload {record.id} is {record.state.value}; only an allocated payload "
                    "can be aborted (delete a committed one)",
                    field=f"payload_ids[{i}]",
                )
        return [f for record in records for f in self._remove(record)]

    def delete(self, ids: Sequence[str], session_id: str | None) -> list[Free]:
        """Delete payloads: freed now, or once their last lease ends (DELETING meanwhile)."""
        self._check_batch(len(ids), "payloads")
        records = [self._get(pid, session_id, f"payload_ids[{i}]") for i, pid in enumerate(ids)]
        return [f for record in records for f in self._delete(record)]

    def close_session(self, session_id: str) -> list[Free]:
        """A session closed: its payloads go, except those kept or given a TTL."""
        doomed = [
            r
            for r in self.payloads.values()
            if r.session_id == session_id and not r.keep and not r.expires_at
        ]
        return [f for record in doomed for f in self._delete(record)]

    # ------------------------------------------------------------------ readers
    def resolve(self, ids: Sequence[str], session_id: str | None) -> list[PayloadRecord]:
        """The records of readable payloads, replicas included; all or nothing."""
        self._check_batch(len(ids), "payloads")
        return [
            self._readable(self._get(pid, session_id, f"payload_ids[{i}]"), f"payload_ids[{i}]")
            for i, pid in enumerate(ids)
        ]

    def acquire(
        self,
        refs: Sequence[tuple[str, int]],
        session_id: str | None,
        holder: str,
        reader_node: str,
    ) -> list[Lease]:
        """Lease one ready replica of each payload ``(id, version or 0)`` for ``holder``.

        The reader's own node is preferred, then the faster tier. All or nothing.

        Raises:
            NotFound: An unknown id (or another session's).
            PayloadStateError: Not committed, being deleted, or ``version`` is not current.
            PayloadLost: No replica is left.
        """
        self._check_batch(len(refs), "refs")
        if not holder or len(holder) > 2 * MAX_ID_LENGTH:
            raise InvalidArgument("a lease needs a holder", field="holder")
        chosen = []
        for i, (pid, version) in enumerate(refs):
            where = f"refs[{i}]"
            record = self._readable(self._get(pid, session_id, f"{where}.payload_id"), where)
            if version and version != record.version:
                raise PayloadStateError(
                    f"payload {pid} is at version {record.version}, not {version}: the "
                    "reference is stale (its replicas changed)",
                    field=f"{where}.version",
                )
            chosen.append((record, _best_replica(record, reader_node)))
        now = self.clock.monotonic()
        leases = []
        for record, replica in chosen:
            replica.last_access = now
            leases.append(
                self.leases.grant(
                    record.id, record.version, replica.node, replica.tier, holder, now
                )
            )
        return leases

    def renew(self, holder: str) -> int:
        """Extend every lease of ``holder`` (a worker heartbeat for a running attempt)."""
        return self.leases.renew(holder, self.clock.monotonic())

    def release(self, holder: str) -> list[Free]:
        """End every lease of ``holder`` (its attempt ended); deletions waiting on them finish."""
        return self._after_release(self.leases.release_holder(holder))

    def release_where(self, gone: Callable[[str], bool]) -> list[Free]:
        """End the leases of every holder that ``gone`` says is over.

        The queue manager asks this of every task attempt holding leases: one that ended,
        failed, timed out or lost its worker is over.
        """
        frees: list[Free] = []
        for holder in self.leases.holders():
            if gone(holder):
                frees += self.release(holder)
        return frees

    def release_leases(self, lease_ids: Sequence[str], holder: str) -> list[Free]:
        """End some of ``holder``'s leases (a reader closed its views early)."""
        return self._after_release(self.leases.release(list(lease_ids), holder))

    # ------------------------------------------------------------------ time
    def tick(self) -> tuple[list[Free], list[str]]:
        """Periodic duties; returns the bytes to free and the payloads that became unreadable.

        Lapsed leases end, allocations past ``pending_ttl_s`` are reclaimed, payloads past
        their TTL are deleted, and silent nodes are lost.
        """
        now = self.clock.monotonic()
        frees = self._after_release(self.leases.expire(now))
        pending = self.limits.pending_ttl_s
        for record in list(self.payloads.values()):
            if record.state is _ALLOCATED and now - record.allocated_at >= pending:
                self.reclaimed += 1
                frees += self._remove(record)
            elif record.expires_at and now >= record.expires_at and record.state is _COMMITTED:
                frees += self._delete(record)
        unreadable = [pid for name in self.nodes.silent(now) for pid in self.node_lost(name)]
        return frees, unreadable

    # ------------------------------------------------------------------ views
    def stat(self, payload_id: str, session_id: str | None) -> PayloadRecord:
        """One payload's record (any state)."""
        return self._get(payload_id, session_id, "payload_id")

    def page(
        self,
        *,
        session_id: str | None = None,
        state: PayloadState | None = None,
        tier: Tier | None = None,
        node: str | None = None,
        after: str = "",
        limit: int = 100,
    ) -> tuple[list[PayloadRecord], str]:
        """A page of payloads in id order after ``after``, filtered; and the next page's token."""
        matches = sorted(
            (
                r
                for r in self.payloads.values()
                if r.id > after and _matches(r, session_id, state, tier, node)
            ),
            key=lambda r: r.id,
        )
        page = matches[: max(1, limit)]
        return page, page[-1].id if len(matches) > len(page) else ""

    def usage(self) -> list[TierUsage]:
        """Per (node, tier): capacity, used and reserved bytes."""
        return self.nodes.usage()

    def session_ids(self) -> list[str]:
        """Sessions that hold payload bytes."""
        return list(self._session_bytes)

    def session_bytes(self, session_id: str) -> int:
        """Bytes the session holds against its quota."""
        return self._session_bytes.get(session_id, 0)

    def statistics(self) -> CatalogStatistics:
        """Counts for metrics and status."""
        committed = [r for r in self.payloads.values() if r.state is _COMMITTED]
        return CatalogStatistics(
            payloads=len(self.payloads),
            committed=len(committed),
            committed_bytes=sum(r.size for r in committed),
            leases=len(self.leases),
            reclaimed=self.reclaimed,
            lost=self.lost,
            usage=tuple(self.nodes.usage()),
        )

    # ------------------------------------------------------------------ internals
    def _check_batch(self, n: int, what: str) -> None:
        if n > self.limits.max_batch:
            raise InvalidArgument(f"at most {self.limits.max_batch} per call, got {n}", field=what)

    def _check_allocation(self, i: int, req: Allocation) -> None:
        lim = self.limits
        where = f"allocations[{i}]"
        if not 0 < req.size <= lim.max_payload_bytes:
            raise InvalidArgument(f"must be 1..{lim.max_payload_bytes}", field=f"{where}.size")
        if sum(len(k) + len(v) for k, v in req.meta.items()) > lim.max_meta_bytes:
            raise InvalidArgument(
                f"at most {lim.max_meta_bytes} bytes of keys and values", field=f"{where}.meta"
            )
        if len(req.parents) > lim.max_parents or any(
            not p or len(p) > MAX_ID_LENGTH for p in req.parents
        ):
            raise InvalidArgument(
                f"at most {lim.max_parents} ids of 1..{MAX_ID_LENGTH} chars",
                field=f"{where}.parents",
            )
        if req.ttl_s < 0:
            raise InvalidArgument("cannot be negative", field=f"{where}.ttl")

    def _check_quota(self, requests: Iterable[Allocation]) -> None:
        wanted: dict[str, int] = {}
        for req in requests:
            wanted[req.session_id] = wanted.get(req.session_id, 0) + req.size
        quota = self.limits.session_quota_bytes
        for sid, size in wanted.items():
            held = self._session_bytes.get(sid, 0)
            if held + size > quota:
                raise ResourceExhausted(
                    f"session {sid} would hold {held + size} payload bytes, over its quota "
                    f"(payload_quota_bytes = {quota})"
                )

    def _get(self, payload_id: str, session_id: str | None, where: str) -> PayloadRecord:
        record = self.payloads.get(payload_id)
        if record is None or (session_id is not None and record.session_id != session_id):
            raise NotFound(f"payload {payload_id[:MAX_ID_LENGTH]!r} not found", field=where)
        return record

    def _readable(self, record: PayloadRecord, where: str) -> PayloadRecord:
        if record.state is not _COMMITTED:
            raise PayloadStateError(
                f"payload {record.id} is {record.state.value}, not readable", field=where
            )
        if not record.readable:
            raise PayloadLost(f"payload {record.id} lost its last replica", field=where)
        return record

    def _delete(self, record: PayloadRecord) -> list[Free]:
        if record.state is _ALLOCATED or not self.leases.on_payload(record.id):
            return self._remove(record)
        record.state = _DELETING
        record.version += 1
        return []

    def _remove(self, record: PayloadRecord) -> list[Free]:
        """Forget the record; release its space and quota; the agents free its bytes."""
        self.payloads.pop(record.id, None)
        held = self._session_bytes.get(record.session_id, 0) - record.size
        if held > 0:
            self._session_bytes[record.session_id] = held
        else:
            self._session_bytes.pop(record.session_id, None)
        frees = []
        for r in record.replicas:
            if r.state is ReplicaState.WRITING:
                self.nodes.unreserve(r.node, r.tier, record.size)
            elif r.state is ReplicaState.READY:
                self.nodes.release(r.node, r.tier, record.size)
            if r.state is not ReplicaState.LOST:
                frees.append(Free(r.node, r.tier, record.id))
        return self._queue_free(frees)

    def _after_release(self, ended: Iterable[Lease]) -> list[Free]:
        frees: list[Free] = []
        for lease in ended:
            record = self.payloads.get(lease.payload_id)
            if (
                record is not None
                and record.state is _DELETING
                and not self.leases.on_payload(record.id)
            ):
                frees += self._remove(record)
        return frees


def _best_replica(record: PayloadRecord, reader_node: str) -> Replica:
    """The ready replica to read: on the reader's node first, then the fastest tier."""
    order: Callable[[Replica], tuple[bool, int]] = lambda r: (  # noqa: E731 - a sort key
        r.node != reader_node,
        list(Tier).index(r.tier),
    )
    return min((r for r in record.replicas if r.state is ReplicaState.READY), key=order)


def _matches(
    r: PayloadRecord,
    session_id: str | None,
    state: PayloadState | None,
    tier: Tier | None,
    node: str | None,
) -> bool:
    return (
        (session_id is None or r.session_id == session_id)
        and (state is None or r.state is state)
        and (tier is None or any(x.tier is tier for x in r.replicas))
        and (node is None or any(x.node == node for x in r.replicas))
    )


__all__ = ["Allocation", "Catalog", "CatalogLimits", "CatalogStatistics"]
