"""The payload store as the SDKs use it: put, open (zero-copy on the same node), get, delete.

``PayloadStore`` talks to the catalog (the queue manager) for control and to node agents for
bytes. On a node with an agent (``node`` and ``agent_socket`` set), a put reserves space on
that node and writes straight into the agent's memory through a handed-over descriptor, and
an open of a payload held there maps it read-only: no copy anywhere. Elsewhere, bytes stream
to and from the agent that holds them over its PayloadAgent service.

NumPy arrays keep their dtype and shape (``meta``: ``dtype`` and ``shape``), so opening gives
the array back as a read-only view.
"""

from __future__ import annotations

import asyncio
import mmap
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import numpy as np
import numpy.typing as npt

from alpcrun.constants import MD_API_KEY
from alpcrun.payload.catalog_link import answer
from alpcrun.payload.convert import tier_to_proto
from alpcrun.payload.handoff import HandoffClient
from alpcrun.payload.types import Tier
from alpcrun.payload.views import MappedPayload
from alpcrun.proto import (
    AcquireLeasesRequest,
    AllocateRequest,
    PayloadAgentStub,
    PayloadCatalogStub,
    PayloadChunk,
    PayloadFdRequest,
    PayloadIdsRequest,
    PayloadInfo,
    PayloadLease,
    PayloadRef,
    PayloadSpec,
    PayloadTier,
    ReadPayloadRequest,
    ReleaseLeasesRequest,
)
from alpcrun.proto.status import from_rpc_error

if TYPE_CHECKING:
    from alpcrun.proto.services import PayloadAgentAsyncStub

_ANY_TIER = PayloadTier.PAYLOAD_TIER_UNSPECIFIED
CHUNK_BYTES = 1 << 20
"""Bytes per message when streaming to or from another node's agent."""


def encode_payload(
    obj: Any, meta: Mapping[str, str] | None
) -> tuple[memoryview, dict[str, str]]:
    """The bytes to store (a view, no copy) and the metadata that brings a NumPy array back."""
    out = dict(meta or {})
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        out.setdefault("dtype", arr.dtype.str)
        out.setdefault("shape", ",".join(str(d) for d in arr.shape))
        return arr.data.cast("B"), out
    view = memoryview(obj)
    if not view.c_contiguous:  # e.g. a reversed slice: stored as its bytes, in order
        view = memoryview(view.tobytes())
    return view.cast("B"), out


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in text.split(",")) if text else ()


class PayloadView:
    """A payload opened for reading: read-only bytes, a lease held until it is closed.

    Use it as a context manager. On the same node as the payload, its buffer is the mapping
    of the agent's memory; elsewhere it is a private copy fetched from the holding agent.
    """

    def __init__(
        self,
        ref: PayloadRef,
        meta: Mapping[str, str],
        *,
        mapped: MappedPayload | None = None,
        data: bytes | None = None,
        release: Any = None,
    ) -> None:
        self.ref = ref
        self.meta = dict(meta)
        self._mapped = mapped
        self._data = data
        self._release = release
        self.zero_copy = mapped is not None
        """Whether the bytes are the agent's own memory, mapped (no copy was made)."""

    def memoryview(self) -> memoryview:
        """The payload's bytes, read-only."""
        if self._mapped is not None:
            return self._mapped.memoryview()
        if self._data is None:
            raise ValueError("the payload view is closed")
        return memoryview(self._data)

    def array(self, dtype: npt.DTypeLike | None = None, shape: Any = None) -> npt.NDArray[Any]:
        """A read-only NumPy view (the put array's dtype and shape unless given)."""
        dt = np.dtype(dtype if dtype is not None else self.meta.get("dtype", "u1"))
        arr = np.frombuffer(self.memoryview(), dtype=dt)
        want = shape if shape is not None else _shape(self.meta.get("shape", ""))
        return arr.reshape(want) if want else arr

    async def aclose(self) -> None:
        """Unmap (when no array of it is alive) and release the lease."""
        if self._mapped is not None:
            self._mapped.close()
        self._data = None
        if self._release is not None:
            release, self._release = self._release, None
            await release()

    async def __aenter__(self) -> PayloadView:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """Where the store's caller runs and how it reaches the agents."""

    api_key: str | None = None
    """Sent to the catalog and agents."""
    node: str = ""
    """This machine's node name ("" when no agent runs here)."""
    agent_socket: str = ""
    """The local agent's handoff socket ("" for none: bytes stream over the network)."""


class PayloadStore:
    """Put, open, get and delete payloads of one session.

    Args:
        channel: A channel to the queue manager (the catalog).
        session_id: The session the payloads belong to.
        options: Node, local agent and key.
    """

    def __init__(
        self, channel: grpc.aio.Channel, session_id: str, options: StoreOptions | None = None
    ) -> None:
        self.options = options or StoreOptions()
        self.session_id = session_id
        self._catalog = PayloadCatalogStub(channel)
        key = self.options.api_key
        self._metadata = ((MD_API_KEY, key),) if key else ()
        self._handoff = (
            HandoffClient(self.options.agent_socket, key) if self.options.agent_socket else None
        )
        self._agents: dict[str, tuple[grpc.aio.Channel, PayloadAgentAsyncStub]] = {}

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata for the catalog and agents (the API key)."""
        return self._metadata

    def _agent(self, address: str) -> PayloadAgentAsyncStub:
        if address not in self._agents:
            channel = grpc.aio.insecure_channel(address)
            self._agents[address] = (channel, PayloadAgentStub(channel))
        return self._agents[address][1]

    async def close(self) -> None:
        """Close connections to agents."""
        if self._handoff is not None:
            self._handoff.close()
        for channel, _ in self._agents.values():
            await channel.close(None)
        self._agents.clear()

    # ------------------------------------------------------------------ producers
    async def put(
        self,
        obj: Any,
        *,
        tier: Tier | None = None,
        ttl_s: float = 0.0,
        keep: bool = False,
        meta: Mapping[str, str] | None = None,
    ) -> PayloadRef:
        """Store a bytes-like object or NumPy array; its reference."""
        (ref,) = await self.put_many([obj], tier=tier, ttl_s=ttl_s, keep=keep, meta=meta)
        return ref

    async def put_many(
        self,
        objs: Sequence[Any],
        *,
        tier: Tier | None = None,
        ttl_s: float = 0.0,
        keep: bool = False,
        meta: Mapping[str, str] | None = None,
    ) -> list[PayloadRef]:
        """Store several objects with one catalog call to allocate; their references, in order."""
        prepared = [encode_payload(o, meta) for o in objs]
        specs = [
            PayloadSpec(
                size_bytes=view.nbytes,
                tier=tier_to_proto(tier) if tier is not None else _ANY_TIER,
                node=self.options.node,
                meta=m,
                ttl_seconds=ttl_s,
                keep=keep,
            )
            for view, m in prepared
        ]
        request = AllocateRequest(session_id=self.session_id, payloads=specs)
        allocated = await answer(self._catalog.Allocate(request, metadata=self._metadata))
        refs = []
        for info, (view, _) in zip(allocated.payloads, prepared, strict=True):
            refs.append(await self._write(info, view))
        return refs

    async def _write(self, info: PayloadInfo, view: memoryview) -> PayloadRef:
        replica = info.replicas[0]
        pid = info.ref.payload_id
        if self._handoff is not None and replica.node == self.options.node:
            return await asyncio.to_thread(self._write_local, pid, view)
        reply = await answer(
            self._agent(replica.agent_address).WritePayload(
                _chunks(pid, self.session_id, view), metadata=self._metadata
            )
        )
        return PayloadRef(
            payload_id=pid, version=reply.committed.ref.version, size_bytes=view.nbytes
        )

    def _write_local(self, pid: str, view: memoryview) -> PayloadRef:
        assert self._handoff is not None
        _, fd = self._handoff.request(PayloadFdRequest.OP_OPEN_WRITE, pid, self.session_id)
        try:
            with mmap.mmap(fd, view.nbytes) as m:
                m[:] = view
        finally:
            os.close(fd)
        done, _ = self._handoff.request(PayloadFdRequest.OP_COMMIT, pid, self.session_id)
        return PayloadRef(payload_id=pid, version=done.version, size_bytes=view.nbytes)

    # ------------------------------------------------------------------ readers
    async def open(self, ref: PayloadRef, *, holder: str = "") -> PayloadView:
        """A read-only view of the payload, with a lease held until the view is closed."""
        holder = holder or f"client/{self.session_id}"
        request = AcquireLeasesRequest(
            session_id=self.session_id, refs=[ref], holder=holder, node=self.options.node
        )
        leases = await answer(self._catalog.AcquireLeases(request, metadata=self._metadata))
        lease: PayloadLease = leases.leases[0]
        stat = await answer(
            self._catalog.Resolve(
                PayloadIdsRequest(session_id=self.session_id, payload_ids=[ref.payload_id]),
                metadata=self._metadata,
            )
        )
        meta = dict(stat.payloads[0].meta)

        async def release() -> None:
            await answer(
                self._catalog.ReleaseLeases(
                    ReleaseLeasesRequest(holder=holder, lease_ids=[lease.lease_id]),
                    metadata=self._metadata,
                )
            )

        try:
            if self._handoff is not None and lease.replica.node == self.options.node:
                reply, fd = await asyncio.to_thread(
                    self._handoff.request,
                    PayloadFdRequest.OP_OPEN_READ,
                    ref.payload_id,
                    self.session_id,
                    lease.lease_id,
                )
                mapped = MappedPayload(fd, reply.size_bytes)
                return PayloadView(lease.ref, meta, mapped=mapped, release=release)
            data = await self._fetch(lease)
        except BaseException:
            await release()
            raise
        return PayloadView(lease.ref, meta, data=data, release=release)

    async def _fetch(self, lease: PayloadLease) -> bytes:
        buf = bytearray(lease.ref.size_bytes)
        stub = self._agent(lease.replica.agent_address)
        request = ReadPayloadRequest(
            lease_id=lease.lease_id, ref=lease.ref, session_id=self.session_id
        )
        try:
            async for chunk in stub.ReadPayload(request, metadata=self._metadata):
                buf[chunk.offset : chunk.offset + len(chunk.data)] = chunk.data
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        return bytes(buf)

    async def get(self, ref: PayloadRef) -> bytes:
        """A private copy of the payload's bytes."""
        async with await self.open(ref) as view:
            return bytes(view.memoryview())

    async def delete(self, refs: Sequence[PayloadRef]) -> None:
        """Delete payloads (leased ones go when their last lease ends)."""
        request = PayloadIdsRequest(
            session_id=self.session_id, payload_ids=[r.payload_id for r in refs]
        )
        await answer(self._catalog.Delete(request, metadata=self._metadata))


async def _chunks(pid: str, session_id: str, view: memoryview) -> AsyncIterator[PayloadChunk]:
    """A payload's bytes as write chunks, the last one asking for commit."""
    size = view.nbytes
    offset = 0
    while True:
        end = min(size, offset + CHUNK_BYTES)
        yield PayloadChunk(
            payload_id=pid,
            session_id=session_id,
            offset=offset,
            data=bytes(view[offset:end]),
            commit=end >= size,
        )
        if end >= size:
            return
        offset = end


__all__ = ["CHUNK_BYTES", "PayloadStore", "PayloadView", "StoreOptions", "encode_payload"]
