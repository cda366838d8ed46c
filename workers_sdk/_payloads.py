"""Payloads for the worker: open a task's references, put outputs, with or without a grid.

The runner reaches the payload store of the grid (:class:`GridPayloads`: the catalog through
the queue manager's channel, the bytes through the node agent's socket on this node or the
holding agent elsewhere); :class:`~workers_sdk.testing.WorkerHarness` uses
:class:`MemoryPayloads`, which keeps payloads in a dict, so a worker's payload code runs in a
unit test with no server at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Protocol

import grpc.aio

from alpcrun.errors import NotFound, PayloadLost
from alpcrun.payload.store import PayloadStore, PayloadView, StoreOptions, encode_payload
from alpcrun.proto import PayloadRef

MAX_SESSIONS = 16
"""Sessions whose payload connections a worker keeps open (it serves one at a time)."""


class PayloadSource(Protocol):
    """Where a worker's tasks open and put payloads."""

    async def open(self, session_id: str, ref: PayloadRef, holder: str) -> PayloadView:
        """A read-only view of ``ref`` with a lease for ``holder`` (released when closed)."""
        ...

    async def put(self, session_id: str, obj: Any, meta: Mapping[str, str] | None) -> PayloadRef:
        """Store ``obj`` as a payload of the session; its reference."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class GridPayloads:
    """The grid's payload store, for the sessions a worker serves.

    Args:
        channel: The worker's channel to the queue manager (the catalog).
        options: This worker's node, its node agent's socket and the API key.
    """

    def __init__(self, channel: grpc.aio.Channel, options: StoreOptions) -> None:
        self._channel = channel
        self._options = options
        self._stores: dict[str, PayloadStore] = {}

    async def _store(self, session_id: str) -> PayloadStore:
        store = self._stores.pop(session_id, None)
        if store is None:
            store = PayloadStore(self._channel, session_id, self._options)
            if len(self._stores) >= MAX_SESSIONS:
                oldest = next(iter(self._stores))
                await self._stores.pop(oldest).close()
        self._stores[session_id] = store  # most recently used last
        return store

    async def open(self, session_id: str, ref: PayloadRef, holder: str) -> PayloadView:
        """A view of ``ref``: zero-copy when its replica is on this node.

        Raises:
            PayloadLost: The payload is gone (deleted, or its only replica was lost).
        """
        try:
            return await (await self._store(session_id)).open(ref, holder=holder)
        except NotFound as exc:
            raise PayloadLost(str(exc), field=exc.field) from None

    async def put(self, session_id: str, obj: Any, meta: Mapping[str, str] | None) -> PayloadRef:
        """Store ``obj`` on this node (when it has an agent); its reference."""
        return await (await self._store(session_id)).put(obj, meta=meta)

    async def close(self) -> None:
        """Close every session's agent connections."""
        stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            await store.close()


class MemoryPayloads:
    """Payloads kept in memory, for tests of a worker without any server.

    Put the inputs with :meth:`add`, pass the references to ``WorkerHarness.run(...,
    refs=[...])``, and read what the task put with :meth:`get`.
    """

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, dict[str, str]]] = {}
        self._ids = itertools.count(1)

    def add(self, obj: Any, meta: Mapping[str, str] | None = None) -> PayloadRef:
        """Store ``obj`` (bytes-like or a NumPy array); its reference."""
        view, info = encode_payload(obj, meta)
        data = bytes(view)
        pid = f"memory-{next(self._ids)}"
        self._data[pid] = (data, info)
        return PayloadRef(payload_id=pid, version=1, size_bytes=len(data))

    def get(self, ref: PayloadRef) -> bytes:
        """The bytes of a payload (PayloadLost if there is none)."""
        return self._entry(ref)[0]

    def _entry(self, ref: PayloadRef) -> tuple[bytes, dict[str, str]]:
        try:
            return self._data[ref.payload_id]
        except KeyError:
            raise PayloadLost(f"payload {ref.payload_id!r} is gone", field="ref") from None

    async def open(self, session_id: str, ref: PayloadRef, holder: str) -> PayloadView:
        """A view of the stored bytes."""
        data, meta = self._entry(ref)
        return PayloadView(ref, meta, data=data)

    async def put(self, session_id: str, obj: Any, meta: Mapping[str, str] | None) -> PayloadRef:
        """Store ``obj``; its reference."""
        return self.add(obj, meta)

    async def close(self) -> None:
        """Nothing to release."""


__all__ = ["MAX_SESSIONS", "GridPayloads", "MemoryPayloads", "PayloadSource"]
