"""The files beside a journal: its lock, its epoch, and where a damaged journal is put aside.

``JOURNAL.lock`` is locked (``flock``) by the one queue manager that uses the journal, for as
long as it runs, and holds that process's pid: a second queue manager on the same file stops
at once instead of interleaving its writes with the first one's. The kernel releases the lock
when the process dies, SIGKILL included, so a restart never finds a stale lock.

``JOURNAL.epoch`` mirrors the journal's identity and *generation*: every committed transaction
raises the generation kept in the database's ``meta`` table, and the epoch file is rewritten
after each commit. Deleting or truncating the write-ahead log, or emptying the database, takes
committed transactions away without SQLite noticing; the database's generation then falls
behind the epoch's, and the journal refuses to start instead of starting with data missing.
The epoch is one fixed-size line rewritten in place (one ``pwrite`` of 87 bytes, inside one
disk sector) with a CRC, so a torn write is recognised rather than misread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import time
import zlib

from alpcrun.errors import ConfigError

_EPOCH_MAGIC = "alpcrun-journal-epoch 1"


def lock_path(path: str) -> str:
    """The lock file of the journal at ``path``."""
    return f"{path}.lock"


def epoch_path(path: str) -> str:
    """The epoch file of the journal at ``path``."""
    return f"{path}.epoch"


class JournalLock:
    """An exclusive ``flock`` on ``JOURNAL.lock``, held until :meth:`release` or process exit.

    Raises:
        alpcrun.errors.ConfigError: Another process holds it (the message names the journal
            and, when it could be read, the pid of the holder), or the file cannot be made.
    """

    def __init__(self, path: str) -> None:
        self.path = lock_path(path)
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot use {path!r} as the journal: {exc}") from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(self._fd)
            os.close(self._fd)
            self._fd = None
            who = f"process {holder}" if holder else "another process"
            raise ConfigError(
                f"journal {path!r} is in use by {who} (it holds {self.path}); two queue "
                "managers must never share a journal: stop the other one or give this one "
                "its own --journal file"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Unlock (the file stays: removing it could let two processes lock different files)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Epoch:
    """What the epoch file says about its journal."""

    journal_id: str
    """Random id the journal got when it was created (also in its ``meta`` table)."""
    generation: int
    """Transactions the journal had committed when the file was last written."""

    def line(self) -> bytes:
        """The file's content: one fixed-size line with a CRC of the rest."""
        body = f"{_EPOCH_MAGIC} {self.journal_id} {self.generation:020d}"
        return f"{body} {zlib.crc32(body.encode()):08x}\n".encode()


def read_epoch(path: str) -> Epoch | None:
    """The epoch of the journal at ``path``; None if there is no epoch file.

    Raises:
        ValueError: The file exists but does not hold an epoch line (the message says so).
        alpcrun.errors.ConfigError: The file cannot be read.
    """
    name = epoch_path(path)
    try:
        with open(name, "rb") as f:
            raw = f.read(256)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the journal's epoch file {name!r}: {exc}") from exc
    try:
        body, crc = raw.decode("ascii").rstrip("\n").rsplit(" ", 1)
        magic_a, magic_b, journal_id, generation = body.split(" ")
        if f"{magic_a} {magic_b}" != _EPOCH_MAGIC or int(crc, 16) != zlib.crc32(body.encode()):
            raise ValueError("bad magic or CRC")
        return Epoch(journal_id, int(generation))
    except (UnicodeDecodeError, ValueError):
        raise ValueError(
            f"its epoch file {name} is damaged ({len(raw)} bytes that are not an epoch "
            "line), so it cannot be checked for lost transactions"
        ) from None


class EpochFile:
    """The epoch file, created atomically and then rewritten in place after each commit."""

    def __init__(self, path: str, epoch: Epoch) -> None:
        self.path = epoch_path(path)
        tmp = f"{self.path}.tmp"
        with open(tmp, "wb") as f:
            f.write(epoch.line())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)

    def write(self, epoch: Epoch) -> None:
        """Record ``epoch`` (same length every time: the old line is overwritten whole)."""
        if self._fd is not None:
            os.pwrite(self._fd, epoch.line(), 0)

    def close(self) -> None:
        """Close the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def put_aside(path: str) -> str:
    """Rename the database and its ``-wal`` / ``-shm`` files to ``PATH.damaged-<UTC time>``.

    The renamed database keeps its write-ahead log beside it under the matching name, so it
    can still be opened and inspected. Returns the new name of the database.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = f"{path}.damaged-{stamp}"
    n = 1
    while os.path.exists(aside):
        n += 1
        aside = f"{path}.damaged-{stamp}-{n}"
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{path}{suffix}", f"{aside}{suffix}")
    return aside


__all__ = [
    "Epoch",
    "EpochFile",
    "JournalLock",
    "epoch_path",
    "lock_path",
    "put_aside",
    "read_epoch",
]
