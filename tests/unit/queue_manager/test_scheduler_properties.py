"""Invariants of the binding policy over random grids (hypothesis).

Each example builds sessions (priority, min/max workers, preemptible, selector, queued
batches) and workers (labels), optionally binds part of the grid first, then schedules
until nothing changes and checks the invariants after every round.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alpcrun.proto import SessionAttributes
from alpcrun.queue_manager.records import WorkerPhase
from alpcrun.queue_manager.scheduler import Bind, Unbind, UnbindReason

from .conftest import Harness

SELECTORS = [{}, {"gpu": "true"}, {"zone": "a"}]
LABELS = [{}, {"gpu": "true"}, {"zone": "a"}, {"gpu": "true", "zone": "a"}]

session_st = st.fixed_dictionaries(
    {
        "priority": st.integers(0, 10),
        "min_workers": st.integers(0, 3),
        "max_workers": st.integers(0, 5),
        "preemptible": st.booleans(),
        "selector": st.sampled_from(SELECTORS),
        "batches": st.integers(0, 6),
    }
)
grid_st = st.tuples(
    st.lists(session_st, min_size=1, max_size=10),
    st.lists(st.sampled_from(LABELS), min_size=0, max_size=14),
    st.integers(0, 10),  # workers registered before the first sessions' binds
)


def build(sessions, labels, early):
    h = Harness()
    records = []

    def add_session(spec):
        attrs = SessionAttributes(
            app_id="app",
            priority=spec["priority"],
            min_workers=min(spec["min_workers"], spec["max_workers"] or 99),
            max_workers=spec["max_workers"],
            preemptible=spec["preemptible"],
            worker_selector=spec["selector"],
        )
        s = h.core.create_session(attrs)
        for _ in range(spec["batches"]):
            h.core.submit(s, h.batch(1))
        records.append(s)

    # A first wave binds some workers, then the rest of the grid arrives (preemption cases).
    half = len(sessions) // 2
    for spec in sessions[:half]:
        add_session(spec)
    for lab in labels[:early]:
        h.worker(**lab)
    h.core.schedule()
    for spec in sessions[half:]:
        add_session(spec)
    for lab in labels[early:]:
        h.worker(**lab)
    return h, records


def matches(worker, s) -> bool:
    return s.config.selector_key <= worker.label_key


def check_round(h: Harness, actions) -> None:
    sessions = [s for s in h.core.sessions.values() if not s.closed]
    workers = list(h.core.workers.values())
    for s in sessions:
        # max_workers is never exceeded.
        if s.config.max_workers:
            assert s.active_workers() <= s.config.max_workers
        # Every bound worker satisfies its session's selector.
        for w in s.workers.values():
            assert matches(w, s)
    idle = [w for w in workers if w.phase is WorkerPhase.IDLE and not w.draining]
    binds = [a for a in actions if isinstance(a, Bind)]
    bound_in_round = {a.worker_id: a.session_id for a in binds}
    for s in sessions:
        short = s.active_workers() < s.wanted_workers()
        if not short:
            continue
        # Work conservation: no idle worker that could serve a session short of workers.
        # (Workers released in this very round are placed by the next one.)
        released = {a.worker_id for a in actions if isinstance(a, Unbind)}
        assert not [w for w in idle if matches(w, s) and w.id not in released], s.config
        # Priority order: no worker this session could use went, in this round, to a
        # lower-priority session beyond that session's guarantee.
        for wid, sid in bound_in_round.items():
            other = h.core.sessions[sid]
            w = h.core.workers[wid]
            if other.config.priority < s.config.priority and matches(w, s):
                guarantee = min(other.config.min_workers, other.wanted_workers())
                assert other.active_workers() <= guarantee


def settle(h: Harness, rounds: int = 8):
    history = []
    for _ in range(rounds):
        actions = h.core.scheduler.plan(
            h.core.sessions.values(), h.core.workers.values(), h.clock.monotonic()
        )
        if not actions:
            return history
        h.core.apply_plan(actions)
        check_round(h, actions)
        history.append(actions)
    raise AssertionError(f"no fixpoint after {rounds} rounds: {history[-2:]}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grid_st)
def test_invariants_hold_and_scheduling_converges(grid):
    h, _ = build(*grid)
    settle(h)


def test_a_guarantee_leaves_the_only_matching_worker_to_a_higher_priority_session():
    """A min_workers guarantee takes a worker of a plentiful label set, not the one worker a
    higher-priority session with a selector could use (found by the property test above)."""
    plain = {"priority": 0, "min_workers": 0, "max_workers": 0, "preemptible": False,
             "selector": {}, "batches": 0}  # fmt: skip
    sessions = [dict(plain) for _ in range(7)] + [
        dict(plain, min_workers=1, batches=2),
        dict(plain, priority=1, selector={"gpu": "true"}, batches=1),
        dict(plain, priority=1, selector={"zone": "a"}, batches=1),
    ]
    h, records = build(sessions, [{"gpu": "true"}, {"zone": "a"}, {"zone": "a"}], 0)
    settle(h)
    guaranteed, gpu, zone = records[-3:]
    assert (guaranteed.active_workers(), gpu.active_workers(), zone.active_workers()) == (1, 1, 1)


@settings(max_examples=200, deadline=None)
@given(grid_st)
def test_min_workers_honoured_when_workers_exist(grid):
    """Once settled, a session with work is below its guarantee only if no worker it could
    use is idle or held beyond another session's own guarantee at lower or equal priority."""
    h, records = build(*grid)
    settle(h)
    for s in records:
        guarantee = min(s.config.min_workers, s.wanted_workers())
        if s.active_workers() >= guarantee:
            continue
        for w in h.core.workers.values():
            if not matches(w, s):
                continue
            assert w.phase is not WorkerPhase.IDLE
            holder = h.core.sessions[w.session_id]
            held = holder.active_workers()
            holder_guarantee = min(holder.config.min_workers, holder.wanted_workers())
            # Whoever holds it either needs it for its own guarantee or is not preemptible.
            assert (
                held <= holder_guarantee
                or not holder.config.preemptible
                or holder.config.priority >= s.config.priority
                or holder.has_work is False
            )


@settings(max_examples=200, deadline=None)
@given(grid_st)
def test_higher_priority_sessions_are_never_short_while_preemptible_lower_ones_hold_workers(grid):
    h, records = build(*grid)
    settle(h)
    for s in records:
        if s.active_workers() >= s.wanted_workers():
            continue
        for w in h.core.workers.values():
            if w.phase is not WorkerPhase.BOUND or not matches(w, s):
                continue
            holder = h.core.sessions[w.session_id]
            guarantee = min(holder.config.min_workers, holder.wanted_workers())
            if holder.config.preemptible and holder.config.priority < s.config.priority:
                assert holder.active_workers() <= guarantee
            # Parked workers (session without work) would have been reclaimed.
            assert holder.has_work


def test_preemption_reason_is_recorded():
    h = Harness()
    low = h.session(priority=0, preemptible=True)
    for _ in range(3):
        h.core.submit(low, h.batch(1))
    h.worker()
    h.core.schedule()
    high = h.session(priority=10)
    h.core.submit(high, h.batch(1))
    actions = settle(h)
    assert actions[0] == [Unbind(actions[0][0].worker_id, low.id, UnbindReason.PREEMPTED)]
    assert high.active_workers() == 1
