"""Payload store records and requests ⇄ protobuf messages (``payload.proto``)."""

from __future__ import annotations

from collections.abc import Mapping

from alpcrun.errors import InvalidArgument
from alpcrun.payload.catalog import Allocation
from alpcrun.payload.placement import TierUsage
from alpcrun.payload.types import Lease, PayloadRecord, PayloadState, Replica, ReplicaState, Tier
from alpcrun.proto import (
    PayloadInfo,
    PayloadLease,
    PayloadRef,
    PayloadReplica,
    PayloadSpec,
    PayloadTier,
    PayloadTierUsage,
)
from alpcrun.proto import PayloadState as PayloadStateProto

_TIER_TO_PROTO = {
    Tier.GPU: PayloadTier.PAYLOAD_TIER_GPU,
    Tier.RAM: PayloadTier.PAYLOAD_TIER_RAM,
    Tier.DISK: PayloadTier.PAYLOAD_TIER_DISK,
    Tier.OBJECT: PayloadTier.PAYLOAD_TIER_OBJECT,
    Tier.VOID: PayloadTier.PAYLOAD_TIER_VOID,
}
_TIER_FROM_PROTO = {v: k for k, v in _TIER_TO_PROTO.items()}
_STATE_TO_PROTO = {
    PayloadState.ALLOCATED: PayloadStateProto.PAYLOAD_STATE_ALLOCATED,
    PayloadState.COMMITTED: PayloadStateProto.PAYLOAD_STATE_COMMITTED,
    PayloadState.DELETING: PayloadStateProto.PAYLOAD_STATE_DELETING,
}
_STATE_FROM_PROTO = {v: k for k, v in _STATE_TO_PROTO.items()}
MAX_TTL_S = 366 * 24 * 3600.0
"""Longest TTL a payload may be given (a year)."""


def tier_to_proto(tier: Tier) -> PayloadTier.ValueType:
    """The wire value of a tier."""
    return _TIER_TO_PROTO[tier]


def tier_from_proto(value: int, field: str, *, optional: bool = False) -> Tier | None:
    """A tier from its wire value; unspecified is None when ``optional``, else an error."""
    if value == PayloadTier.PAYLOAD_TIER_UNSPECIFIED and optional:
        return None
    try:
        return _TIER_FROM_PROTO[PayloadTier.ValueType(value)]
    except KeyError:
        raise InvalidArgument(f"unknown tier {value}", field=field) from None


def state_from_proto(value: int, field: str) -> PayloadState | None:
    """A state filter from its wire value (unspecified: None)."""
    if value == PayloadStateProto.PAYLOAD_STATE_UNSPECIFIED:
        return None
    try:
        return _STATE_FROM_PROTO[PayloadStateProto.ValueType(value)]
    except KeyError:
        raise InvalidArgument(f"unknown state {value}", field=field) from None


def replica_to_proto(replica: Replica, addresses: Mapping[str, str]) -> PayloadReplica:
    """A replica on the wire, with its agent's data address."""
    return PayloadReplica(
        node=replica.node,
        tier=_TIER_TO_PROTO[replica.tier],
        ready=replica.state is ReplicaState.READY,
        lost=replica.state is ReplicaState.LOST,
        agent_address=addresses.get(replica.node, ""),
    )


def info_to_proto(record: PayloadRecord, addresses: Mapping[str, str], now: float) -> PayloadInfo:
    """A payload's record on the wire (``now``: monotonic, for the TTL left)."""
    return PayloadInfo(
        ref=PayloadRef(payload_id=record.id, version=record.version, size_bytes=record.size),
        session_id=record.session_id,
        state=_STATE_TO_PROTO[record.state],
        meta=record.meta,
        parents=record.parents,
        replicas=[replica_to_proto(r, addresses) for r in record.replicas],
        created_at=record.created_at,
        ttl_seconds=max(0.0, record.expires_at - now) if record.expires_at else 0.0,
        keep=record.keep,
    )


def lease_to_proto(lease: Lease, size: int, address: str, ttl_s: float) -> PayloadLease:
    """A granted lease on the wire."""
    return PayloadLease(
        lease_id=lease.id,
        ref=PayloadRef(payload_id=lease.payload_id, version=lease.version, size_bytes=size),
        replica=PayloadReplica(
            node=lease.node, tier=_TIER_TO_PROTO[lease.tier], ready=True, agent_address=address
        ),
        ttl_seconds=ttl_s,
    )


def allocation_from_proto(session_id: str, i: int, spec: PayloadSpec) -> Allocation:
    """One requested allocation, its fields checked (the catalog checks sizes and bounds)."""
    where = f"payloads[{i}]"
    if not 0 <= spec.ttl_seconds <= MAX_TTL_S:
        raise InvalidArgument(f"must be 0..{MAX_TTL_S:g} seconds", field=f"{where}.ttl_seconds")
    return Allocation(
        session_id=session_id,
        size=spec.size_bytes,
        tier=tier_from_proto(spec.tier, f"{where}.tier", optional=True),
        node=spec.node,
        meta=dict(spec.meta),
        parents=tuple(spec.parents),
        ttl_s=spec.ttl_seconds,
        keep=spec.keep,
    )


def usage_to_proto(usage: TierUsage) -> PayloadTierUsage:
    """One (node, tier)'s figures on the wire."""
    return PayloadTierUsage(
        node=usage.node,
        tier=_TIER_TO_PROTO[usage.tier],
        capacity_bytes=usage.capacity,
        used_bytes=usage.used,
        reserved_bytes=usage.reserved,
    )


__all__ = [
    "MAX_TTL_S",
    "allocation_from_proto",
    "info_to_proto",
    "lease_to_proto",
    "replica_to_proto",
    "state_from_proto",
    "tier_from_proto",
    "tier_to_proto",
    "usage_to_proto",
]
