"""The RAM tier: one sealed memfd per payload, owned by the node agent.

Why memfd and not POSIX shm: a memfd has no name in a shared namespace, so nothing but the
agent's Unix socket can hand it out (no ``/dev/shm`` to share with worker pods, no
``hostIPC``, no leftovers to clean after a crash: the memory goes when the last descriptor
and mapping go), and it can be *sealed*. On commit the agent adds ``F_SEAL_WRITE`` (and
shrink, grow, seal): the kernel then refuses every write and every writable mapping, so a
committed payload is immutable for everyone, and the seal fails while a producer still has a
writable mapping open, so a commit cannot race a late write. Readers on the same node map
the sealed descriptor read-only: zero copies. The bytes live as long as the agent (or a
reader's mapping): a restarted agent has lost its RAM replicas, and says so to the catalog.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from dataclasses import dataclass

from alpcrun.errors import PayloadStateError
from alpcrun.payload.tiers.base import (
    TierStatistics,
    check_payload_id,
    check_range,
    committed_already,
    not_committed,
    not_held,
    tier_full,
)
from alpcrun.payload.types import Tier

_SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL


@dataclass(eq=False, slots=True)
class _Slot:
    fd: int
    size: int
    committed: bool = False
    mapping: mmap.mmap | None = None  # read-only, after commit, for serving other nodes


class RamBackend:
    """Payload bytes in sealed memfds.

    Args:
        capacity: Bytes this tier may hold.
    """

    tier = Tier.RAM

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._slots: dict[str, _Slot] = {}
        self._used = 0

    def _slot(self, payload_id: str) -> _Slot:
        slot = self._slots.get(payload_id)
        if slot is None:
            raise not_held(payload_id)
        return slot

    def create(self, payload_id: str, size: int) -> None:
        """A new, zero-filled memfd of ``size`` bytes (its pages are allocated as written)."""
        check_payload_id(payload_id)
        if payload_id in self._slots:
            raise PayloadStateError(f"payload {payload_id} exists here", field="payload_id")
        if size <= 0 or self._used + size > self.capacity:
            raise tier_full(self.tier, size, self.capacity - self._used)
        fd = os.memfd_create(f"alpcrun-{payload_id}", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
        except OSError:
            os.close(fd)
            raise
        self._slots[payload_id] = _Slot(fd, size)
        self._used += size

    def writable_fd(self, payload_id: str) -> int:
        """A duplicate descriptor a same-node producer maps read-write, then closes."""
        slot = self._slot(payload_id)
        if slot.committed:
            raise committed_already(payload_id)
        return os.dup(slot.fd)

    def write(self, payload_id: str, offset: int, data: bytes | memoryview) -> None:
        """Write a chunk at ``offset`` of an uncommitted payload."""
        slot = self._slot(payload_id)
        if slot.committed:
            raise committed_already(payload_id)
        view = memoryview(data)
        check_range(slot.size, offset, view.nbytes)
        while view.nbytes:
            n = os.pwrite(slot.fd, view, offset)
            view, offset = view[n:], offset + n

    def commit(self, payload_id: str) -> None:
        """Seal the memfd: no write, no writable mapping, no resize, ever again."""
        slot = self._slot(payload_id)
        if slot.committed:
            return
        try:
            fcntl.fcntl(slot.fd, fcntl.F_ADD_SEALS, _SEALS)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise PayloadStateError(
                    f"payload {payload_id} still has a writable mapping open: close it, then "
                    "commit",
                    field="payload_id",
                ) from None
            raise
        slot.committed = True
        slot.mapping = mmap.mmap(slot.fd, slot.size, prot=mmap.PROT_READ)

    def readonly_fd(self, payload_id: str) -> int:
        """A duplicate of the sealed descriptor: it can only be mapped read-only."""
        slot = self._slot(payload_id)
        if not slot.committed:
            raise not_committed(payload_id)
        return os.dup(slot.fd)

    def read(self, payload_id: str, offset: int, length: int) -> bytes:
        """A copy of ``[offset, offset + length)`` (for a reader on another node)."""
        slot = self._slot(payload_id)
        if slot.mapping is None:
            raise not_committed(payload_id)
        check_range(slot.size, offset, length)
        return slot.mapping[offset : offset + length]

    def free(self, payload_id: str) -> bool:
        """Close the agent's descriptor; readers' mappings keep their pages until unmapped."""
        slot = self._slots.pop(payload_id, None)
        if slot is None:
            return False
        if slot.mapping is not None:
            slot.mapping.close()
        os.close(slot.fd)
        self._used -= slot.size
        return True

    def payload_ids(self) -> list[str]:
        """Ids of the payloads held."""
        return list(self._slots)

    def size(self, payload_id: str) -> int:
        """The payload's length."""
        return self._slot(payload_id).size

    def statistics(self) -> TierStatistics:
        """Capacity, bytes held and payloads held."""
        return TierStatistics(self.tier, self.capacity, self._used, len(self._slots))

    def close(self) -> None:
        """Free everything (the agent is stopping)."""
        for payload_id in list(self._slots):
            self.free(payload_id)


__all__ = ["RamBackend"]
