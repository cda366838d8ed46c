"""Session attributes: defaults, validation (errors name the field) and proto conversion."""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.duration_pb2 import Duration

from alpcrun.constants import MAX_ID_LENGTH, MAX_LABELS, MAX_TAGS
from alpcrun.errors import InvalidArgument
from alpcrun.proto import QueueType, SessionAttributes

_MAX_DURATION_S = 366 * 24 * 3600.0
_NANOS_PER_SECOND = 1_000_000_000
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
"""Unicode categories refused in names: controls (ESC, NUL, ...), format characters (bidi
overrides such as RLO, zero-width characters) and line/paragraph separators."""


def check_printable(value: str, field: str) -> str:
    """Refuse a name holding a control, format (bidi override) or line-separator character.

    Such names reach terminals (``alpcrun status``), logs and ``/metrics`` labels, where an
    escape sequence or a right-to-left override would rewrite what an operator sees.

    Raises:
        InvalidArgument: Naming ``field`` and the first such character (as ``U+XXXX``).
    """
    if value.isprintable():  # C-speed common case: no Cc, Cf, Zl or Zp in it
        return value
    for index, char in enumerate(value):
        if unicodedata.category(char) in _UNPRINTABLE_CATEGORIES:
            raise InvalidArgument(
                f"holds the control or format character U+{ord(char):04X} at position "
                f"{index}; names must be printable",
                field=field,
            )
    return value


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """The resolved, validated attributes of a session (DESIGN §3)."""

    app_id: str
    """Application id."""
    priority: int = 5
    """0..10; higher wins workers first."""
    min_workers: int = 0
    """Workers kept bound while the session has work."""
    max_workers: int = 0
    """Cap on bound workers; 0 means unlimited."""
    idle_timeout_s: float = 60.0
    """No activity and no work for this long releases the session's workers."""
    preemptible: bool = False
    """Its workers may be taken for higher-priority sessions."""
    cleanup_on_client_exit: bool = False
    """The session closes when its client stream ends."""
    max_inflight_batches_per_worker: int = 10
    """Flow-control window per bound worker."""
    tags: tuple[str, ...] = ()
    """Free-form labels."""
    fifo: bool = False
    """FIFO queue instead of per-batch priority."""
    max_attempts: int = 3
    """Attempts per task before it is dead-lettered."""
    task_timeout_s: float = 0.0
    """Longest attempt; 0 means none."""
    worker_selector: dict[str, str] = field(default_factory=dict)
    """Labels a worker must carry to serve this session."""
    selector_key: frozenset[tuple[str, str]] = field(init=False, repr=False, compare=False)
    """``worker_selector`` as a hashable set of items (computed)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "selector_key", frozenset(self.worker_selector.items()))

    def to_proto(self) -> SessionAttributes:
        """The attributes as a fully populated proto."""
        msg = SessionAttributes(
            app_id=self.app_id,
            priority=self.priority,
            min_workers=self.min_workers,
            max_workers=self.max_workers,
            preemptible=self.preemptible,
            cleanup_on_client_exit=self.cleanup_on_client_exit,
            max_inflight_batches_per_worker=self.max_inflight_batches_per_worker,
            tags=list(self.tags),
            queue_type=QueueType.QUEUE_TYPE_FIFO if self.fifo else QueueType.QUEUE_TYPE_PRIORITY,
            max_attempts=self.max_attempts,
            worker_selector=self.worker_selector,
        )
        msg.idle_timeout.FromNanoseconds(round(self.idle_timeout_s * 1e9))
        msg.task_timeout.FromNanoseconds(round(self.task_timeout_s * 1e9))
        return msg


def _int_in(value: int, lo: int, hi: int, name: str) -> int:
    if not lo <= value <= hi:
        raise InvalidArgument(
            f"must be between {lo} and {hi}, got {value}", field=f"attributes.{name}"
        )
    return value


def _seconds(value: Duration, name: str) -> float:
    if not -_NANOS_PER_SECOND < value.nanos < _NANOS_PER_SECOND:
        raise InvalidArgument(
            f"nanos must be between -999999999 and 999999999, got {value.nanos}",
            field=f"attributes.{name}.nanos",
        )
    seconds = value.seconds + value.nanos / 1e9
    if seconds < 0 or seconds > _MAX_DURATION_S or value.nanos < 0 < value.seconds:
        raise InvalidArgument(
            f"must be between 0s and {_MAX_DURATION_S:.0f}s", field=f"attributes.{name}"
        )
    return seconds


def _labels(items: dict[str, str], name: str) -> dict[str, str]:
    if len(items) > MAX_LABELS:
        raise InvalidArgument(f"at most {MAX_LABELS} entries", field=f"attributes.{name}")
    for key, value in items.items():
        if not key or len(key) > MAX_ID_LENGTH or len(value) > MAX_ID_LENGTH:
            raise InvalidArgument(
                f"keys must be 1..{MAX_ID_LENGTH} chars, values at most {MAX_ID_LENGTH}",
                field=f"attributes.{name}",
            )
        check_printable(key, f"attributes.{name}")
        check_printable(value, f"attributes.{name}")
    return dict(items)


def _tags(tags: list[str]) -> tuple[str, ...]:
    if len(tags) > MAX_TAGS:
        raise InvalidArgument(f"at most {MAX_TAGS} tags", field="attributes.tags")
    if any(not t or len(t) > MAX_ID_LENGTH for t in tags):
        raise InvalidArgument(f"tags must be 1..{MAX_ID_LENGTH} chars", field="attributes.tags")
    for index, tag in enumerate(tags):
        check_printable(tag, f"attributes.tags[{index}]")
    return tuple(tags)


def _app_id(value: str) -> str:
    if not value or len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"required, 1..{MAX_ID_LENGTH} chars", field="attributes.app_id")
    return check_printable(value, "attributes.app_id")


def _queue_type(value: int) -> bool:
    if value not in (QueueType.QUEUE_TYPE_FIFO, QueueType.QUEUE_TYPE_PRIORITY):
        raise InvalidArgument("must be PRIORITY or FIFO", field="attributes.queue_type")
    return value == QueueType.QUEUE_TYPE_FIFO


def _ranged(name: str, lo: int, hi: int) -> Callable[[int], int]:
    return lambda value: _int_in(value, lo, hi, name)


# (proto field, SessionConfig field, converter) for every attribute with presence.
_FIELDS: tuple[tuple[str, str, Callable[[Any], object]], ...] = (
    ("app_id", "app_id", _app_id),
    ("priority", "priority", _ranged("priority", 0, 10)),
    ("min_workers", "min_workers", _ranged("min_workers", 0, 100_000)),
    ("max_workers", "max_workers", _ranged("max_workers", 0, 100_000)),
    ("idle_timeout", "idle_timeout_s", lambda v: _seconds(v, "idle_timeout")),
    ("preemptible", "preemptible", bool),
    ("cleanup_on_client_exit", "cleanup_on_client_exit", bool),
    (
        "max_inflight_batches_per_worker",
        "max_inflight_batches_per_worker",
        _ranged("max_inflight_batches_per_worker", 1, 1000),
    ),
    ("queue_type", "fifo", _queue_type),
    ("max_attempts", "max_attempts", _ranged("max_attempts", 1, 100)),
    ("task_timeout", "task_timeout_s", lambda v: _seconds(v, "task_timeout")),
)


def apply(base: SessionConfig, msg: SessionAttributes) -> SessionConfig:
    """Return ``base`` with every attribute present in ``msg`` validated and applied."""
    changes: dict[str, Any] = {}
    fields: Any = msg  # HasField is typed with literal field names only
    for proto_name, name, convert in _FIELDS:
        if fields.HasField(proto_name):
            changes[name] = convert(getattr(msg, proto_name))
    if msg.tags or msg.replace_tags:
        changes["tags"] = _tags(list(msg.tags))
    if msg.worker_selector or msg.replace_worker_selector:
        changes["worker_selector"] = _labels(dict(msg.worker_selector), "worker_selector")
    config = dataclasses.replace(base, **changes)
    if config.max_workers and config.min_workers > config.max_workers:
        raise InvalidArgument("must not exceed max_workers", field="attributes.min_workers")
    return config


def resolve_new(msg: SessionAttributes, *, default_fifo: bool = False) -> SessionConfig:
    """Validate the attributes of a CreateSession request, filling in defaults."""
    if not msg.HasField("app_id"):
        raise InvalidArgument("required", field="attributes.app_id")
    return apply(SessionConfig(app_id=msg.app_id, fifo=default_fifo), msg)
