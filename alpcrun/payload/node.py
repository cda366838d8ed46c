"""The payload side of a node agent process: tiers, data path, handoff socket, catalog link.

:class:`PayloadNode` builds the node's tier backends from its settings, hosts the
PayloadAgent service on the node agent's gRPC server, serves the handoff socket, and keeps the
node registered with the catalog: it registers on start (reporting the payloads it still
holds, so the catalog can mark the rest lost), heartbeats, and frees what the catalog lets go
of. A catalog that cannot be reached is retried; payloads already held keep being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc.aio

from alpcrun.errors import AlpcrunError
from alpcrun.payload.agent import PayloadAgent
from alpcrun.payload.agent_service import PayloadAgentService
from alpcrun.payload.catalog_link import GrpcCatalogLink
from alpcrun.payload.handoff import HandoffServer
from alpcrun.payload.tiers.base import Backend
from alpcrun.payload.tiers.disk import DiskBackend
from alpcrun.payload.tiers.ram import RamBackend
from alpcrun.proto import add_payload_agent_servicer
from alpcrun.proto.auth import ApiKeys

log = logging.getLogger("alpcrun.payload.node")
RETRY_S = 2.0
"""Seconds between attempts to reach the catalog after a failure."""


@dataclass(frozen=True, slots=True)
class PayloadNodeConfig:
    """What the node agent's settings say about its payload store."""

    node: str
    """This node's name."""
    ram_bytes: int
    """RAM tier capacity (0: no RAM tier)."""
    disk_dir: Path | None
    """Disk tier directory (None: no disk tier)."""
    disk_bytes: int
    """Disk tier capacity."""
    socket: Path | None
    """The handoff socket for same-node producers and readers (None: none)."""


def backends(config: PayloadNodeConfig) -> list[Backend]:
    """The tier backends the configuration asks for."""
    out: list[Backend] = []
    if config.ram_bytes > 0:
        out.append(RamBackend(config.ram_bytes))
    if config.disk_dir is not None and config.disk_bytes > 0:
        out.append(DiskBackend(config.disk_dir, config.disk_bytes))
    return out


class PayloadNode:
    """One node's payload store, inside a node agent.

    Args:
        config: Tiers, socket and names.
        channel: A channel to the queue manager (the catalog).
        api_key: The grid's key (sent to the catalog, required on the socket), or None.
    """

    def __init__(
        self, config: PayloadNodeConfig, channel: grpc.aio.Channel, api_key: str | None
    ) -> None:
        self.config = config
        self.link = GrpcCatalogLink(channel, api_key, config.node)
        self.agent = PayloadAgent(config.node, backends(config), self.link)
        self.service = PayloadAgentService(self.agent)
        self._handoff = (
            HandoffServer(
                self.agent, config.socket, api_keys=ApiKeys([api_key]) if api_key else None
            )
            if config.socket is not None
            else None
        )
        self._loop_task: asyncio.Task[None] | None = None
        self.advertise = ""
        """The ``host:port`` other nodes reach this agent's data path at (set by start)."""
        self.registered = asyncio.Event()
        """Set once the catalog has taken the node's registration."""

    def add_services(self, server: grpc.aio.Server) -> None:
        """Host the PayloadAgent service on the node agent's server."""
        add_payload_agent_servicer(self.service, server)

    async def start(self, advertise: str) -> None:
        """Serve the socket and keep the node registered, reachable at ``advertise``."""
        self.advertise = advertise
        if self._handoff is not None:
            await self._handoff.start()
        self._loop_task = asyncio.create_task(self._keep_registered(), name="payload-node")

    async def stop(self) -> None:
        """Stop the catalog link and the socket; RAM payloads go with the process."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._handoff is not None:
            await self._handoff.stop()
        self.agent.close()

    async def _keep_registered(self) -> None:
        while True:
            try:
                frees, interval = await self.link.register(
                    self.advertise, self.agent.capacities(), self.agent.held_ids()
                )
                self.agent.free(frees)
                self.registered.set()
                log.info("payload agent of node %s registered", self.config.node)
                while True:
                    await asyncio.sleep(max(0.1, interval))
                    self.agent.free(await self.link.heartbeat())
            except AlpcrunError as exc:
                self.registered.clear()
                log.warning("payload catalog unreachable (%s); retrying in %ss", exc, RETRY_S)
                await asyncio.sleep(RETRY_S)


__all__ = ["PayloadNode", "PayloadNodeConfig", "backends"]
