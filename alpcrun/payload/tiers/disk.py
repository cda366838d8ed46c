"""The disk tier: one file per payload under the agent's directory, renamed into place on commit.

A payload is written to ``<dir>/<id>.part`` and, on commit, flushed (``fsync``) and renamed to
``<dir>/<id>``, then the directory is flushed: a crash leaves either no file or the whole one,
never a half-written payload under its final name. Names are built only from catalog ids
(ULIDs, checked); descriptors never carry a path: same-node readers get an open read-only
descriptor from the agent and map it. Committed files survive an agent restart (they are found
again on start; leftover ``.part`` files are removed).
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path

from alpcrun.errors import ConfigError, PayloadStateError
from alpcrun.payload.tiers.base import (
    TierStatistics,
    check_payload_id,
    check_range,
    committed_already,
    is_payload_id,
    not_committed,
    not_held,
    tier_full,
)
from alpcrun.payload.types import Tier

_PART = ".part"


@dataclass(eq=False, slots=True)
class _File:
    size: int
    fd: int = -1  # the writable descriptor while uncommitted
    committed: bool = False


class DiskBackend:
    """Payload bytes in files.

    Args:
        directory: Where the files live (created if missing, mode 0700).
        capacity: Bytes this tier may hold.
        fsync: Flush each payload and the directory on commit (off only for scratch disks).
    """

    tier = Tier.DISK

    def __init__(self, directory: Path, capacity: int, *, fsync: bool = True) -> None:
        self.directory = directory
        self.capacity = capacity
        self.fsync = fsync
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot use {str(directory)!r} as the disk tier: {exc}") from exc
        self._files: dict[str, _File] = {}
        self._used = 0
        self._recover()

    def _recover(self) -> None:
        """Adopt committed files left by an earlier run; remove unfinished ones."""
        for path in self.directory.iterdir():
            if path.name.endswith(_PART):
                path.unlink(missing_ok=True)
                continue
            if not is_payload_id(path.name):
                continue  # not ours: left alone
            size = path.stat().st_size
            self._files[path.name] = _File(size, committed=True)
            self._used += size

    def _file(self, payload_id: str) -> _File:
        f = self._files.get(payload_id)
        if f is None:
            raise not_held(payload_id)
        return f

    def _path(self, payload_id: str, *, part: bool = False) -> Path:
        return self.directory / (check_payload_id(payload_id) + (_PART if part else ""))

    def payload_ids(self) -> list[str]:
        """Ids of the payloads held (committed ones survive restarts)."""
        return list(self._files)

    def create(self, payload_id: str, size: int) -> None:
        """A new ``.part`` file of ``size`` bytes (sparse until written)."""
        path = self._path(payload_id, part=True)
        if payload_id in self._files:
            raise PayloadStateError(f"payload {payload_id} exists here", field="payload_id")
        if size <= 0 or self._used + size > self.capacity:
            raise tier_full(self.tier, size, self.capacity - self._used)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, size)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._files[payload_id] = _File(size, fd)
        self._used += size

    def writable_fd(self, payload_id: str) -> int:
        """A duplicate of the ``.part`` file's descriptor for a same-node producer."""
        f = self._file(payload_id)
        if f.committed:
            raise committed_already(payload_id)
        return os.dup(f.fd)

    def write(self, payload_id: str, offset: int, data: bytes | memoryview) -> None:
        """Write a chunk at ``offset`` of an uncommitted payload."""
        f = self._file(payload_id)
        if f.committed:
            raise committed_already(payload_id)
        view = memoryview(data)
        check_range(f.size, offset, view.nbytes)
        while view.nbytes:
            n = os.pwrite(f.fd, view, offset)
            view, offset = view[n:], offset + n

    def commit(self, payload_id: str) -> None:
        """Flush, rename into place, flush the directory."""
        f = self._file(payload_id)
        if f.committed:
            return
        if self.fsync:
            os.fsync(f.fd)
        os.rename(self._path(payload_id, part=True), self._path(payload_id))
        if self.fsync:
            dir_fd = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        os.close(f.fd)
        f.fd, f.committed = -1, True

    def readonly_fd(self, payload_id: str) -> int:
        """A new read-only descriptor of the committed file."""
        if not self._file(payload_id).committed:
            raise not_committed(payload_id)
        return os.open(self._path(payload_id), os.O_RDONLY | os.O_CLOEXEC)

    def read(self, payload_id: str, offset: int, length: int) -> bytes:
        """A copy of ``[offset, offset + length)`` (for a reader on another node)."""
        f = self._file(payload_id)
        if not f.committed:
            raise not_committed(payload_id)
        check_range(f.size, offset, length)
        fd = os.open(self._path(payload_id), os.O_RDONLY | os.O_CLOEXEC)
        try:
            if length == 0:
                return b""
            with mmap.mmap(fd, f.size, prot=mmap.PROT_READ) as m:
                return m[offset : offset + length]
        finally:
            os.close(fd)

    def free(self, payload_id: str) -> bool:
        """Remove the file; readers' open mappings keep their pages until unmapped."""
        f = self._files.pop(payload_id, None)
        if f is None:
            return False
        if f.fd >= 0:
            os.close(f.fd)
        self._path(payload_id, part=not f.committed).unlink(missing_ok=True)
        self._used -= f.size
        return True

    def size(self, payload_id: str) -> int:
        """The payload's length."""
        return self._file(payload_id).size

    def statistics(self) -> TierStatistics:
        """Capacity, bytes held and payloads held."""
        return TierStatistics(self.tier, self.capacity, self._used, len(self._files))

    def close(self) -> None:
        """Close open descriptors; committed files stay for the next start."""
        for payload_id, f in list(self._files.items()):
            if not f.committed:
                self.free(payload_id)


__all__ = ["DiskBackend"]
