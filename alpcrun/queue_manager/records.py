"""Session and worker records held by the queue manager core (plain state, no I/O)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from alpcrun.proto import SessionState
from alpcrun.queue_manager.attributes import SessionConfig
from alpcrun.queue_manager.deadletters import DeadLetterQueue
from alpcrun.queue_manager.outlets import ClientOutlet, WorkerControl, WorkerData
from alpcrun.queue_manager.queues import QueuedBatch, TaskQueue
from alpcrun.queue_manager.results import ResultBuffer

CLOSED_STATE = int(SessionState.SESSION_STATE_CLOSED)
"""``SessionRecord.state`` of a closed session, as a plain int (hot-path comparisons)."""
_IDLE_STATE = int(SessionState.SESSION_STATE_IDLE)
_ACTIVE_STATE = int(SessionState.SESSION_STATE_ACTIVE)


class WorkerPhase(enum.Enum):
    """Where a registered worker stands."""

    IDLE = "idle"
    """Not bound; may be bound to any matching session."""
    BOUND = "bound"
    """Bound to a session; receives its batches once its WorkerStream is open."""
    UNBINDING = "unbinding"
    """Told to unbind; finishing in-flight batches, receives no new ones."""


@dataclass(eq=False, slots=True)
class WorkerRecord:
    """A connected worker."""

    id: str
    """Server-assigned id."""
    node: str
    """Kubernetes node (or host name)."""
    pod: str
    """Pod name (or pid)."""
    labels: dict[str, str]
    """Labels matched against sessions' worker selectors."""
    concurrency: int
    """Batches the worker processes at once (as it reported)."""
    control: WorkerControl
    """Its WorkerUpdate stream."""
    connected_at: float
    """Wall-clock registration time."""
    last_seen: float
    """Monotonic time of its last message."""
    phase: WorkerPhase = WorkerPhase.IDLE
    """Binding phase."""
    draining: bool = False
    """The worker is shutting down and takes no new work."""
    session_id: str | None = None
    """Session it is bound to (or unbinding from)."""
    window: int = 10
    """Most unanswered batches it may hold (the session's flow-control window)."""
    data: WorkerData | None = None
    """Its WorkerStream, while open."""
    inflight: dict[int, QueuedBatch] = field(default_factory=dict)
    """Dispatched batches awaiting results, by dispatch id."""
    bound_at: float = 0.0
    """Monotonic time of its last bind."""
    bind_sent_at: float = 0.0
    """Monotonic time BIND was last sent to it (at its bind, or again to a worker that
    reported it missed it)."""
    completed_batches: int = 0
    """Result batches received from it."""
    abandoned: set[int] = field(default_factory=set)
    """Dispatch ids it still holds whose attempt timed out (their late results are dropped)."""
    label_key: frozenset[tuple[str, str]] = field(init=False, repr=False)
    """``labels`` as a hashable set of items (computed)."""

    def __post_init__(self) -> None:
        self.label_key = frozenset(self.labels.items())


@dataclass(eq=False, slots=True)
class SessionRecord:
    """A session with its queues, bound workers and counters."""

    id: str
    """ULID."""
    config: SessionConfig
    """Resolved attributes."""
    created_at: float
    """Wall-clock creation time."""
    last_activity: float
    """Monotonic time of the last client activity or result."""
    queue: TaskQueue
    """Pending batches."""
    seq: int = 0
    """Creation order (ties between equal sessions go to the older one)."""
    state: int = SessionState.SESSION_STATE_ACTIVE
    """SessionState value."""
    closed_at: float = 0.0
    """Monotonic time it was closed (for retention)."""
    results: ResultBuffer = field(default_factory=ResultBuffer)
    """Result batches not yet written to a client, or written and not acknowledged."""
    dead_letters: DeadLetterQueue = field(default_factory=DeadLetterQueue)
    """Tasks that used up their attempts or failed for good."""
    delayed: list[tuple[float, int, QueuedBatch]] = field(default_factory=list)
    """Retries waiting for their ``Retry(after=...)`` delay: a heap of (due, key, batch)."""
    known: dict[str, int] = field(default_factory=dict)
    """Client batch ids not yet finished with: tasks still without a final result (0 once all
    have one, until the last result is acknowledged). A batch sent again under such an id is
    a duplicate."""
    workers: dict[str, WorkerRecord] = field(default_factory=dict)
    """Bound (or unbinding) workers by id."""
    client: ClientOutlet | None = None
    """The attached client stream."""
    inflight_batches: int = 0
    """Batches dispatched and unanswered."""
    inflight_tasks: int = 0
    """Tasks in those batches."""
    submitted: int = 0
    """Tasks accepted."""
    completed: int = 0
    """Tasks that succeeded."""
    failed: int = 0
    """Tasks dead-lettered."""
    retried: int = 0
    """Task attempts that failed and were tried again."""
    timed_out: int = 0
    """Attempts failed by task_timeout."""
    duplicate_results: int = 0
    """Late results of earlier attempts, dropped."""
    duplicate_batches: int = 0
    """Client batches received again under a known id, ignored."""
    discarded: int = 0
    """Tasks discarded by close or results that arrived after close."""
    preempted: int = 0
    """Workers taken from this session for higher-priority sessions."""
    close_reason: str = ""
    """Why it was closed: ``closed``, ``client_exit`` or ``expired``."""

    @property
    def closed(self) -> bool:
        """Whether the session is closed."""
        return self.state == CLOSED_STATE

    @property
    def has_work(self) -> bool:
        """Queued, delayed or in-flight batches exist."""
        return bool(self.queue) or self.inflight_batches > 0 or bool(self.delayed)

    @property
    def delayed_tasks(self) -> int:
        """Tasks waiting for a retry delay."""
        return sum(item.ntasks for _, _, item in self.delayed)

    def touch(self, now: float) -> None:
        """Client activity at monotonic time ``now``: the session is active again."""
        self.last_activity = now
        if self.state == _IDLE_STATE:
            self.state = _ACTIVE_STATE

    def wanted_workers(self) -> int:
        """Workers this session could use now: one per queued or in-flight batch, within bounds."""
        if self.closed:
            return 0
        pending = len(self.queue) + self.inflight_batches
        if pending == 0:
            return 0
        wanted = max(pending, self.config.min_workers)
        if self.config.max_workers:
            wanted = min(wanted, self.config.max_workers)
        return wanted

    def active_workers(self) -> int:
        """Bound workers that are not unbinding."""
        return sum(1 for w in self.workers.values() if w.phase is WorkerPhase.BOUND)
