"""The node agent's connection to the payload catalog: registration, heartbeats, commits."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio

from alpcrun.constants import MD_API_KEY
from alpcrun.payload.convert import tier_from_proto, tier_to_proto
from alpcrun.payload.types import Free, Tier
from alpcrun.proto import (
    AgentHeartbeatRequest,
    AgentHeartbeatResponse,
    CommitEntry,
    CommitRequest,
    PayloadCatalogStub,
    PayloadInfo,
    RegisterAgentRequest,
    StatPayloadRequest,
    TierCapacity,
)
from alpcrun.proto.status import from_rpc_error

T = TypeVar("T")
CALL_TIMEOUT_S = 10.0
"""Longest the agent waits for one catalog call."""


async def answer(call: Awaitable[T]) -> T:
    """The call's reply, or its failure as a domain error."""
    try:
        return await call
    except grpc.RpcError as err:
        raise from_rpc_error(err) from None


def _frees(node: str, reply: AgentHeartbeatResponse) -> list[Free]:
    frees = []
    for i, f in enumerate(reply.free):
        tier = tier_from_proto(f.tier, f"free[{i}].tier")
        assert tier is not None
        frees.append(Free(node, tier, f.payload_id))
    return frees


class GrpcCatalogLink:
    """The catalog's PayloadCatalog service, as the agent uses it.

    Args:
        channel: A channel to the queue manager.
        api_key: Sent as ``api_key`` metadata (None: no key).
        node: This node's name.
    """

    def __init__(self, channel: grpc.aio.Channel, api_key: str | None, node: str) -> None:
        self._stub = PayloadCatalogStub(channel)
        metadata = ((MD_API_KEY, api_key),) if api_key else ()
        self._options: dict[str, Any] = {"metadata": metadata, "timeout": CALL_TIMEOUT_S}
        self.node = node

    async def stat(self, session_id: str, payload_id: str) -> PayloadInfo:
        """The payload's record (NotFound for an unknown one or another session's)."""
        request = StatPayloadRequest(session_id=session_id, payload_id=payload_id)
        return await answer(self._stub.StatPayload(request, **self._options))

    async def commit(self, session_id: str, payload_id: str, size: int) -> PayloadInfo:
        """Commit one payload; its record after commit."""
        entry = CommitEntry(payload_id=payload_id, size_bytes=size)
        request = CommitRequest(session_id=session_id, payloads=[entry])
        reply = await answer(self._stub.Commit(request, **self._options))
        return reply.payloads[0]

    async def register(
        self, address: str, capacities: Mapping[Tier, int], held: Sequence[str]
    ) -> tuple[list[Free], float]:
        """Register this node; the frees it must do and the heartbeat interval."""
        request = RegisterAgentRequest(
            node=self.node,
            agent_address=address,
            tiers=[
                TierCapacity(tier=tier_to_proto(t), capacity_bytes=c) for t, c in capacities.items()
            ],
            held_payload_ids=held,
        )
        reply = await answer(self._stub.RegisterAgent(request, **self._options))
        return _frees(self.node, reply), reply.heartbeat_interval_seconds

    async def heartbeat(self) -> list[Free]:
        """A sign of life; the frees it must do."""
        request = AgentHeartbeatRequest(node=self.node)
        reply = await answer(self._stub.AgentHeartbeat(request, **self._options))
        return _frees(self.node, reply)


__all__ = ["CALL_TIMEOUT_S", "GrpcCatalogLink", "answer"]
