"""Quotas on what clients make the queue manager keep: sessions, label bytes, dead letters.

Sessions are counted in all and per API key (the key the CreateSession call presented; kept
only as a digest). Every session the queue manager holds counts, open or closed and within its
``session_retention``: a closed session still holds its dead letters and results. Over a quota,
the call fails with ``RESOURCE_EXHAUSTED`` naming the setting; a label or tag set over
``max_label_bytes`` is ``INVALID_ARGUMENT`` naming the field.
"""

from __future__ import annotations

import hashlib

from alpcrun.errors import InvalidArgument, ResourceExhausted
from alpcrun.queue_manager.attributes import SessionConfig
from alpcrun.queue_manager.limits import CoreLimits
from alpcrun.queue_manager.records import SessionRecord
from alpcrun.queue_manager.stats import CoreCounters


def key_digest(api_key: str) -> str:
    """A short digest naming an API key in the session table (the key itself is not kept)."""
    return hashlib.blake2b(api_key.encode(), digest_size=8).hexdigest() if api_key else ""


class SessionOwners:
    """How many sessions each API key holds; admits new ones within the caps."""

    __slots__ = ("_by_key", "_owner")

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}
        self._by_key: dict[str, int] = {}

    def admit(self, owner: str, held: int, limits: CoreLimits) -> None:
        """Raise ResourceExhausted unless one more session fits (``held`` are held in all)."""
        if held >= limits.max_sessions:
            raise ResourceExhausted(
                f"max_sessions reached: the queue manager holds {held} sessions (open, and "
                f"closed within session_retention); close sessions or wait for closed ones to "
                f"be forgotten"
            )
        mine = self._by_key.get(owner, 0)
        if mine >= limits.max_sessions_per_key:
            raise ResourceExhausted(
                f"max_sessions_per_key reached: this API key holds {mine} sessions (open, and "
                f"closed within session_retention)"
            )

    def add(self, session_id: str, owner: str) -> None:
        """Count a new session for ``owner``."""
        self._owner[session_id] = owner
        self._by_key[owner] = self._by_key.get(owner, 0) + 1

    def remove(self, session_id: str) -> None:
        """The session is forgotten."""
        owner = self._owner.pop(session_id, None)
        if owner is None:
            return
        left = self._by_key[owner] - 1
        if left:
            self._by_key[owner] = left
        else:
            del self._by_key[owner]


def check_label_bytes(config: SessionConfig, limit: int) -> None:
    """Refuse tags or a worker selector over ``limit`` UTF-8 bytes (keys and values)."""
    tags = sum(len(t.encode()) for t in config.tags)
    if tags > limit:
        raise InvalidArgument(
            f"the tags hold {tags} bytes; at most {limit} (max_label_bytes)",
            field="attributes.tags",
        )
    check_labels(config.worker_selector, limit, "attributes.worker_selector")


def check_labels(labels: dict[str, str], limit: int, field: str) -> None:
    """Refuse labels over ``limit`` UTF-8 bytes, keys and values together."""
    size = sum(len(k.encode()) + len(v.encode()) for k, v in labels.items())
    if size > limit:
        raise InvalidArgument(
            f"the labels hold {size} bytes (keys and values); at most {limit} (max_label_bytes)",
            field=field,
        )


def check_letter_room(record: SessionRecord, counters: CoreCounters, limits: CoreLimits) -> None:
    """Refuse new batches while the session's, or all sessions', dead letters are at their bound.

    Letters already on their way (tasks of accepted batches that fail) are still kept; a
    client sees RESOURCE_EXHAUSTED for *new* work until letters are resubmitted or discarded.
    """
    held = record.dead_letters.bytes
    if held >= limits.max_dead_letter_bytes:
        raise ResourceExhausted(
            f"max_dead_letter_bytes reached: session {record.id} holds {held} bytes of dead "
            f"letters; resubmit or discard them (alpcrun dlq) before sending more tasks"
        )
    total = counters.letter_bytes
    if total >= limits.max_total_dead_letter_bytes:
        raise ResourceExhausted(
            f"max_total_dead_letter_bytes reached: the sessions hold {total} bytes of dead "
            f"letters; resubmit or discard them (alpcrun dlq) before sending more tasks"
        )


__all__ = [
    "SessionOwners",
    "check_label_bytes",
    "check_labels",
    "check_letter_room",
    "key_digest",
]
