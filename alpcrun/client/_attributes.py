"""Session keyword arguments → the ``SessionAttributes`` proto (durations, queue type, flags)."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, TypedDict

from google.protobuf.duration_pb2 import Duration

from alpcrun.proto import QueueType, SessionAttributes

Seconds = float | int | datetime.timedelta
"""A duration: seconds as a number, or a ``timedelta``."""


class SessionOptions(TypedDict, total=False):
    """Session attributes accepted as keyword arguments (see ``SessionAttributes``)."""

    app_id: str
    """Application id; required when creating a session."""
    priority: int
    """0..10, higher sessions get workers first (server default 5)."""
    min_workers: int
    """Workers kept bound while the session has work."""
    max_workers: int
    """Cap on bound workers; 0 means unlimited."""
    idle_timeout: Seconds
    """Idle time after which workers are released."""
    preemptible: bool
    """Whether workers may be taken for higher-priority sessions."""
    cleanup_on_client_exit: bool
    """Close the session when its client stream ends."""
    max_inflight_batches_per_worker: int
    """Flow-control window per bound worker."""
    tags: Sequence[str]
    """Labels for filtering, metrics and worker selection (replaced as a whole on update)."""
    queue_type: Literal["priority", "fifo"]
    """``"priority"`` (per-batch priority) or ``"fifo"``."""
    max_attempts: int
    """Attempts per task before it is dead-lettered."""
    task_timeout: Seconds
    """Longest time one attempt may run; 0 for none."""
    worker_selector: Mapping[str, str]
    """Labels a worker must carry to be bound (replaced as a whole on update)."""


_QUEUE_TYPES = {
    "priority": QueueType.QUEUE_TYPE_PRIORITY,
    "fifo": QueueType.QUEUE_TYPE_FIFO,
}


def to_duration(value: object, name: str) -> Duration:
    """Convert seconds (int/float) or a ``timedelta`` into a ``google.protobuf.Duration``.

    Args:
        value: The duration.
        name: Attribute name, for error messages.

    Returns:
        The Duration message.

    Raises:
        TypeError: ``value`` is not a number or a timedelta.
        ValueError: ``value`` is negative.
    """
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{name} must be seconds (a number) or a timedelta, not {value!r}")
    if seconds < 0:
        raise ValueError(f"{name} cannot be negative")
    out = Duration()
    out.FromNanoseconds(round(seconds * 1e9))
    return out


def _int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < 0:
        raise ValueError(f"{name} cannot be negative")
    return value


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {value!r}")
    return value


def _str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {value!r}")
    return value


def _set_queue_type(attrs: SessionAttributes, value: object) -> None:
    if not isinstance(value, str) or value.lower() not in _QUEUE_TYPES:
        raise ValueError(f"queue_type must be 'priority' or 'fifo', not {value!r}")
    attrs.queue_type = _QUEUE_TYPES[value.lower()]


def _set_tags(attrs: SessionAttributes, value: object) -> None:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | set | frozenset):
        raise TypeError(f"tags must be a list of str, not {value!r}")
    attrs.tags.extend(_str(tag, "tags[]") for tag in value)
    attrs.replace_tags = True


def _set_selector(attrs: SessionAttributes, value: object) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"worker_selector must be a mapping of str to str, not {value!r}")
    for key, label in value.items():
        key = _str(key, "worker_selector key")
        attrs.worker_selector[key] = _str(label, "worker_selector value")
    attrs.replace_worker_selector = True


Setter = Callable[[SessionAttributes, object], None]


def _scalar(kind: Callable[[object, str], object], name: str) -> Setter:
    def setter(attrs: SessionAttributes, value: object) -> None:
        setattr(attrs, name, kind(value, name))

    return setter


def _duration(name: str) -> Setter:
    def setter(attrs: SessionAttributes, value: object) -> None:
        getattr(attrs, name).CopyFrom(to_duration(value, name))

    return setter


_SETTERS: dict[str, Setter] = {
    "app_id": _scalar(_str, "app_id"),
    "priority": _scalar(_int, "priority"),
    "min_workers": _scalar(_int, "min_workers"),
    "max_workers": _scalar(_int, "max_workers"),
    "idle_timeout": _duration("idle_timeout"),
    "preemptible": _scalar(_bool, "preemptible"),
    "cleanup_on_client_exit": _scalar(_bool, "cleanup_on_client_exit"),
    "max_inflight_batches_per_worker": _scalar(_int, "max_inflight_batches_per_worker"),
    "tags": _set_tags,
    "queue_type": _set_queue_type,
    "max_attempts": _scalar(_int, "max_attempts"),
    "task_timeout": _duration("task_timeout"),
    "worker_selector": _set_selector,
}


def session_attributes(options: Mapping[str, object], *, create: bool) -> SessionAttributes:
    """Build a ``SessionAttributes`` message from session keyword arguments.

    Only the attributes given are set, so the server fills in defaults on create and leaves
    the others unchanged on update. ``tags`` and ``worker_selector`` replace the current
    values when given (``replace_tags`` / ``replace_worker_selector`` are set).

    Args:
        options: The keyword arguments (see :class:`SessionOptions`).
        create: Whether the attributes are for ``CreateSession`` (``app_id`` required).

    Returns:
        The attributes message.

    Raises:
        TypeError: An unknown keyword, a value of the wrong type, or ``app_id`` missing on create.
        ValueError: A negative number or duration, or an unknown queue type.
    """
    unknown = sorted(set(options) - set(_SETTERS))
    if unknown:
        raise TypeError(f"unknown session attribute(s): {', '.join(unknown)}")
    if create and "app_id" not in options:
        raise TypeError("app_id is required to create a session")
    attrs = SessionAttributes()
    for name, value in options.items():
        _SETTERS[name](attrs, value)
    if create:
        # The replace flags only mean something on update; a new session has nothing to replace.
        attrs.replace_tags = attrs.replace_worker_selector = False
    return attrs
