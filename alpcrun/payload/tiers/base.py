"""What every tier backend offers the node agent, and the checks they share.

A backend keeps the bytes of payloads on one tier of one node. The agent creates a payload's
space when the catalog allocates it, hands a *writable* file descriptor to a producer on the
same node (or writes chunks that arrive from another node), commits it (after which its bytes
never change), hands *read-only* descriptors to readers on the same node, serves byte ranges
to other nodes, and frees it. Payload ids are catalog ULIDs and are checked before any name is
built from one: no request ever becomes a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from alpcrun.errors import InvalidArgument, NotFound, PayloadStateError, ResourceExhausted
from alpcrun.payload.types import Tier

_ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def is_payload_id(text: str) -> bool:
    """Whether ``text`` has the form of a catalog payload id (a ULID)."""
    return _ULID.fullmatch(text) is not None


def check_payload_id(payload_id: str, field: str = "payload_id") -> str:
    """``payload_id`` if it is a catalog id (a ULID), else InvalidArgument naming ``field``."""
    if not is_payload_id(payload_id):
        raise InvalidArgument("not a payload id (a 26-character ULID)", field=field)
    return payload_id


def check_range(size: int, offset: int, length: int) -> None:
    """An ``[offset, offset + length)`` range inside ``size`` bytes, else InvalidArgument."""
    if offset < 0 or length < 0 or offset + length > size:
        raise InvalidArgument(
            f"range [{offset}, {offset + length}) is outside the payload's {size} bytes",
            field="offset",
        )


@dataclass(frozen=True, slots=True)
class TierStatistics:
    """A backend's figures."""

    tier: Tier
    """Which tier."""
    capacity: int
    """Bytes it may hold."""
    used: int
    """Bytes of its payloads, open or committed."""
    payloads: int
    """Payloads it holds."""


class Backend(Protocol):
    """One tier of one node's payload bytes."""

    tier: Tier
    """The tier it serves."""

    def create(self, payload_id: str, size: int) -> None:
        """Make room for a new payload of ``size`` bytes (ResourceExhausted if it does not fit)."""

    def writable_fd(self, payload_id: str) -> int:
        """A new descriptor a same-node producer may map read-write (theirs to close)."""

    def write(self, payload_id: str, offset: int, data: bytes | memoryview) -> None:
        """Write a chunk of an uncommitted payload (a producer on another node)."""

    def commit(self, payload_id: str) -> None:
        """The payload is complete: from now on its bytes never change."""

    def readonly_fd(self, payload_id: str) -> int:
        """A new read-only descriptor of a committed payload for a same-node reader."""

    def read(self, payload_id: str, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset + length)`` of a committed payload (a reader elsewhere)."""

    def free(self, payload_id: str) -> bool:
        """Drop the payload's bytes; return whether it was held."""

    def size(self, payload_id: str) -> int:
        """The payload's length (NotFound if not held)."""

    def statistics(self) -> TierStatistics:
        """Figures for metrics and registration."""

    def payload_ids(self) -> list[str]:
        """Ids of the payloads held."""

    def close(self) -> None:
        """Release resources (the agent is stopping)."""


def not_held(payload_id: str) -> NotFound:
    """The error for a payload this backend does not hold."""
    return NotFound(f"payload {payload_id} is not held here", field="payload_id")


def committed_already(payload_id: str) -> PayloadStateError:
    """The error for a write to a committed payload."""
    return PayloadStateError(
        f"payload {payload_id} is committed: it is immutable", field="payload_id"
    )


def not_committed(payload_id: str) -> PayloadStateError:
    """The error for a read of a payload still being written."""
    return PayloadStateError(f"payload {payload_id} is not committed yet", field="payload_id")


def tier_full(tier: Tier, size: int, free: int) -> ResourceExhausted:
    """The error for an allocation that does not fit."""
    return ResourceExhausted(f"the {tier.value} tier has {free} bytes free, {size} were asked for")


__all__ = [
    "Backend",
    "TierStatistics",
    "check_payload_id",
    "check_range",
    "committed_already",
    "is_payload_id",
    "not_committed",
    "not_held",
    "tier_full",
]
