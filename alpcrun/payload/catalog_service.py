"""grpc.aio servicer of alpcrun.v1.PayloadCatalog: decode, call the :class:`Catalog`, encode.

Hosted by the queue manager. A request's ``session_id`` scopes it: the payloads of another
session are NOT_FOUND. An empty ``session_id`` (reads, listings, deletes by an operator with
the grid's key) reaches every session's payloads; allocating needs an open session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc.aio

from alpcrun.constants import MAX_ID_LENGTH
from alpcrun.errors import AlpcrunError, InvalidArgument
from alpcrun.payload.catalog import Catalog
from alpcrun.payload.convert import (
    allocation_from_proto,
    info_to_proto,
    lease_to_proto,
    state_from_proto,
    tier_from_proto,
    tier_to_proto,
    usage_to_proto,
)
from alpcrun.payload.types import PayloadRecord, Tier
from alpcrun.proto import (
    AcquireLeasesRequest,
    AcquireLeasesResponse,
    AgentHeartbeatRequest,
    AgentHeartbeatResponse,
    AllocateRequest,
    AllocateResponse,
    CommitRequest,
    CommitResponse,
    DeletePayloadsResponse,
    FreeInstruction,
    GetPayloadUsageRequest,
    GetPayloadUsageResponse,
    ListPayloadsRequest,
    ListPayloadsResponse,
    PayloadCatalogServicer,
    PayloadIdsRequest,
    PayloadInfo,
    RegisterAgentRequest,
    ReleaseLeasesRequest,
    ReleaseLeasesResponse,
    RenewLeasesRequest,
    RenewLeasesResponse,
    ResolveResponse,
    StatPayloadRequest,
)
from alpcrun.proto.status import abort_with

log = logging.getLogger("alpcrun.payload.catalog")
Context = grpc.aio.ServicerContext[Any, Any]
DEFAULT_PAGE = 1000
"""Payloads in a listing page when the request asks for none (and the most it may ask)."""
MAX_HOLDERS = 10_000
"""Holders one RenewLeases may name."""


def _scope(session_id: str) -> str | None:
    if len(session_id) > MAX_ID_LENGTH:
        raise InvalidArgument(f"at most {MAX_ID_LENGTH} chars", field="session_id")
    return session_id or None


class PayloadCatalogService(PayloadCatalogServicer):
    """The payload catalog over gRPC.

    Args:
        catalog: The catalog core.
        open_session: Raises SessionNotFound or SessionClosed unless the session is open
            (the queue manager's session table).
        heartbeat_interval_s: What agents are told about their heartbeat interval.
    """

    def __init__(
        self,
        catalog: Catalog,
        open_session: Callable[[str], object],
        *,
        heartbeat_interval_s: float = 5.0,
    ) -> None:
        self.catalog = catalog
        self._open_session = open_session
        self._heartbeat_s = heartbeat_interval_s

    def _info(self, record: PayloadRecord) -> PayloadInfo:
        addresses = {n.name: n.address for n in self.catalog.nodes.nodes.values()}
        return info_to_proto(record, addresses, self.catalog.clock.monotonic())

    def _frees(self, node: str) -> AgentHeartbeatResponse:
        frees = self.catalog.take_frees(node)
        return AgentHeartbeatResponse(
            free=[
                FreeInstruction(payload_id=f.payload_id, tier=tier_to_proto(f.tier)) for f in frees
            ],
            heartbeat_interval_seconds=self._heartbeat_s,
        )

    def _deleted(self, before: int, named: int) -> DeletePayloadsResponse:
        gone = before - len(self.catalog.payloads)
        return DeletePayloadsResponse(deleted=gone, deferred=max(0, named - gone))

    # ------------------------------------------------------------------ producers
    async def Allocate(self, request: AllocateRequest, context: Context) -> AllocateResponse:
        """Reserve space for each payload, all or nothing."""
        try:
            if not request.session_id:
                raise InvalidArgument("a payload belongs to a session", field="session_id")
            self._open_session(request.session_id)
            specs = [
                allocation_from_proto(request.session_id, i, spec)
                for i, spec in enumerate(request.payloads)
            ]
            records = self.catalog.allocate(specs)
            return AllocateResponse(payloads=[self._info(r) for r in records])
        except AlpcrunError as exc:
            await abort_with(context, exc)

    async def Commit(self, request: CommitRequest, context: Context) -> CommitResponse:
        """Commit written payloads, all or nothing."""
        try:
            items = [(e.payload_id, e.size_bytes) for e in request.payloads]
            records = self.catalog.commit(items, _scope(request.session_id))
            return CommitResponse(payloads=[self._info(r) for r in records])
        except AlpcrunError as exc:
            await abort_with(context, exc)

    async def Abort(self, request: PayloadIdsRequest, context: Context) -> DeletePayloadsResponse:
        """Give up allocated payloads."""
        try:
            before = len(self.catalog.payloads)
            self.catalog.abort(list(request.payload_ids), _scope(request.session_id))
            return self._deleted(before, len(request.payload_ids))
        except AlpcrunError as exc:
            await abort_with(context, exc)

    async def Delete(self, request: PayloadIdsRequest, context: Context) -> DeletePayloadsResponse:
        """Delete payloads; leased ones wait for their last lease."""
        try:
            before = len(self.catalog.payloads)
            self.catalog.delete(list(request.payload_ids), _scope(request.session_id))
            return self._deleted(before, len(request.payload_ids))
        except AlpcrunError as exc:
            await abort_with(context, exc)

    # ------------------------------------------------------------------ readers
    async def Resolve(self, request: PayloadIdsRequest, context: Context) -> ResolveResponse:
        """Readable payloads' records and replicas, all or nothing."""
        try:
            records = self.catalog.resolve(list(request.payload_ids), _scope(request.session_id))
            return ResolveResponse(payloads=[self._info(r) for r in records])
        except AlpcrunError as exc:
            await abort_with(context, exc)

    async def AcquireLeases(
        self, request: AcquireLeasesRequest, context: Context
    ) -> AcquireLeasesResponse:
        """A lease on one ready replica of each payload, all or nothing."""
        try:
            refs = [(r.payload_id, r.version) for r in request.refs]
            cat = self.catalog
            leases = cat.acquire(refs, _scope(request.session_id), request.holder, request.node)
            nodes = cat.nodes.nodes
            ttl = cat.limits.lease_ttl_s
            return AcquireLeasesResponse(
                leases=[
                    lease_to_proto(
                        lease,
                        cat.payloads[lease.payload_id].size,
                        nodes[lease.node].address if lease.node in nodes else "",
                        ttl,
                    )
                    for lease in leases
                ]
            )
        except AlpcrunError as exc:
            await abort_with(context, exc)

    async def RenewLeases(
        self, request: RenewLeasesRequest, context: Context
    ) -> RenewLeasesResponse:
        """Extend every lease of the holders named."""
        try:
            if len(request.holders) > MAX_HOLDERS:
                raise InvalidArgument(f"at most {MAX_HOLDERS} holders", field="holders")
            return RenewLeasesResponse(renewed=sum(self.catalog.renew(h) for h in request.holders))
        except AlpcrunError as exc:
            await abort_with(context, exc)

    async def ReleaseLeases(
        self, request: ReleaseLeasesRequest, context: Context
    ) -> ReleaseLeasesResponse:
        """End leases of a holder (all of them when none is named)."""
        if request.lease_ids:
            self.catalog.release_leases(list(request.lease_ids), request.holder)
        else:
            self.catalog.release(request.holder)
        return ReleaseLeasesResponse()

    # ------------------------------------------------------------------ views
    async def ListPayloads(
        self, request: ListPayloadsRequest, context: Context
    ) -> ListPayloadsResponse:
        """A page of payloads, filtered."""
        try:
            size = request.page_size or DEFAULT_PAGE
            if size > DEFAULT_PAGE:
                raise InvalidArgument(f"at most {DEFAULT_PAGE}", field="page_size")
            records, token = self.catalog.page(
                session_id=_scope(request.session_id),
                state=state_from_proto(request.state, "state"),
                tier=tier_from_proto(request.tier, "tier", optional=True),
                node=request.node or None,
                after=request.page_token[:MAX_ID_LENGTH],
                limit=size,
            )
            return ListPayloadsResponse(
                payloads=[self._info(r) for r in records], next_page_token=token
            )
        except AlpcrunError as exc:
            await abort_with(context, exc)

    async def StatPayload(self, request: StatPayloadRequest, context: Context) -> PayloadInfo:
        """One payload's record, in any state."""
        try:
            return self._info(self.catalog.stat(request.payload_id, _scope(request.session_id)))
        except AlpcrunError as exc:
            await abort_with(context, exc)

    async def GetPayloadUsage(
        self, request: GetPayloadUsageRequest, context: Context
    ) -> GetPayloadUsageResponse:
        """Per (node, tier) capacity and use, and totals."""
        st = self.catalog.statistics()
        return GetPayloadUsageResponse(
            tiers=[usage_to_proto(u) for u in st.usage],
            payloads=st.payloads,
            committed_bytes=st.committed_bytes,
            leases=st.leases,
        )

    # ------------------------------------------------------------------ agents
    async def RegisterAgent(
        self, request: RegisterAgentRequest, context: Context
    ) -> AgentHeartbeatResponse:
        """A node agent (re)registers; payloads it no longer holds are lost."""
        try:
            capacities: dict[Tier, int] = {}
            for i, t in enumerate(request.tiers):
                tier = tier_from_proto(t.tier, f"tiers[{i}].tier")
                assert tier is not None
                capacities[tier] = t.capacity_bytes
            lost = self.catalog.register_node(
                request.node, request.agent_address, capacities, request.held_payload_ids
            )
            if lost:
                log.warning(
                    "node %s re-registered without %d payloads: lost", request.node, len(lost)
                )
            return self._frees(request.node)
        except AlpcrunError as exc:
            await abort_with(context, exc)

    async def AgentHeartbeat(
        self, request: AgentHeartbeatRequest, context: Context
    ) -> AgentHeartbeatResponse:
        """A node agent's sign of life; the answer carries the bytes it must free."""
        try:
            self.catalog.node_heartbeat(request.node)
            return self._frees(request.node)
        except AlpcrunError as exc:
            await abort_with(context, exc)


__all__ = ["DEFAULT_PAGE", "PayloadCatalogService"]
