"""The binding policy, rule by rule, with a fake clock and recording outlets."""

from alpcrun.proto import SessionAttributes, WorkerInstruction
from alpcrun.queue_manager.scheduler import Bind, Scheduler, Unbind, UnbindReason

from .conftest import Harness


def plan(h: Harness):
    return h.core.scheduler.plan(
        h.core.sessions.values(), h.core.workers.values(), h.clock.monotonic()
    )


def loaded(h: Harness, batches: int = 10, **attrs):
    s = h.session(**attrs)
    for _ in range(batches):
        h.core.submit(s, h.batch())
    return s


def workers(h: Harness, n: int, **labels):
    return [h.worker(**labels)[0] for _ in range(n)]


# ---------------------------------------------------------------- priority and shares
def test_higher_priority_session_gets_workers_first():
    """With one idle worker, the higher-priority session with work gets it."""
    h = Harness()
    loaded(h, 1, priority=2)
    high = loaded(h, 1, priority=8)
    (w,) = workers(h, 1)
    assert plan(h) == [Bind(w.id, high.id)]


def test_strict_priority_between_levels():
    """A lower level gets nothing while a higher level still wants workers."""
    h = Harness()
    high = loaded(h, 3, priority=7)
    low = loaded(h, 3, priority=3)
    workers(h, 4)
    h.core.schedule()
    assert (high.active_workers(), low.active_workers()) == (3, 1)


def test_equal_priority_sessions_share_workers_max_min_fair():
    """Equal-priority sessions split the workers evenly; what one cannot use goes to the other."""
    h = Harness()
    a = loaded(h, 100)
    b = loaded(h, 100)
    c = loaded(h, 1)
    workers(h, 9)
    h.core.schedule()
    assert (a.active_workers(), b.active_workers(), c.active_workers()) == (4, 4, 1)


def test_fair_share_ties_go_to_the_older_session():
    h = Harness()
    old = loaded(h, 5)
    new = loaded(h, 5)
    (w,) = workers(h, 1)
    assert plan(h) == [Bind(w.id, old.id)]
    assert new.active_workers() == 0


def test_per_batch_priority_orders_dispatch_within_a_session():
    """In a priority queue the highest batch priority is dispatched first, FIFO within equals."""
    h = Harness()
    s = h.session()
    for prio in (1, 5, 5, 9):
        h.core.submit(s, h.batch(priority=prio))
    (w,) = workers(h, 1)
    h.core.schedule()
    data = h.connect(w)
    assert [b.priority for b in data.sent] == [9, 5, 5, 1]
    assert data.sent[1].id < data.sent[2].id


def test_fifo_queue_ignores_batch_priority():
    h = Harness()
    s = h.session(queue_type=2)  # QUEUE_TYPE_FIFO
    for prio in (1, 9, 5):
        h.core.submit(s, h.batch(priority=prio))
    (w,) = workers(h, 1)
    h.core.schedule()
    assert [b.priority for b in h.connect(w).sent] == [1, 9, 5]


# ---------------------------------------------------------------- min / max
def test_max_workers_is_never_exceeded_and_wanted_follows_batches():
    """A session wants one worker per batch, capped by max_workers."""
    h = Harness()
    loaded(h, 5, max_workers=2)
    workers(h, 4)
    assert len(plan(h)) == 2
    t = loaded(h, 1)
    assert t.wanted_workers() == 1


def test_min_workers_guarantee_comes_before_higher_priority_shares():
    """A low-priority session gets its min_workers before a higher level takes the rest."""
    h = Harness()
    high = loaded(h, 50, priority=9)
    low = loaded(h, 50, priority=1, min_workers=2)
    workers(h, 5)
    h.core.schedule()
    assert (high.active_workers(), low.active_workers()) == (3, 2)


def test_min_workers_raises_wanted_while_the_session_has_work():
    h = Harness()
    s = loaded(h, 1, min_workers=3)
    assert s.wanted_workers() == 3
    idle = h.session(min_workers=3)
    assert idle.wanted_workers() == 0


def test_lowering_max_workers_live_trims_the_workers_with_least_in_flight():
    h = Harness()
    s = loaded(h, 3)
    ws = workers(h, 3)
    h.core.schedule()
    h.connect(ws[0])  # ws[0] now holds batches; the others hold none
    h.core.update_session(s.id, SessionAttributes(max_workers=1))
    unbinds = [x for x in plan(h) if isinstance(x, Unbind)]
    assert {u.worker_id for u in unbinds} == {ws[1].id, ws[2].id}
    assert {u.reason for u in unbinds} == {UnbindReason.MAX_WORKERS}


def test_raising_priority_live_takes_effect_at_the_next_plan():
    h = Harness()
    a = loaded(h, 5, priority=5)
    b = loaded(h, 5, priority=5)
    h.core.update_session(b.id, SessionAttributes(priority=6))
    (w,) = workers(h, 1)
    assert plan(h) == [Bind(w.id, b.id)]
    assert a.active_workers() == 0


# ---------------------------------------------------------------- selectors
def test_worker_selector_limits_binding():
    """A session with a worker selector is only given matching workers."""
    h = Harness()
    s = loaded(h, 1, worker_selector={"gpu": "true"})
    workers(h, 1)
    assert plan(h) == []
    (gpu,) = workers(h, 1, gpu="true")
    assert plan(h) == [Bind(gpu.id, s.id)]


def test_plain_workers_are_handed_out_before_specialised_ones():
    """A session any worker can serve gets the plain worker; the GPU one stays for GPU work."""
    h = Harness()
    (gpu,) = workers(h, 1, gpu="true")
    (plain,) = workers(h, 1)
    anyw = loaded(h, 1, priority=9)
    gpu_s = loaded(h, 1, priority=1, worker_selector={"gpu": "true"})
    assert sorted(plan(h), key=str) == sorted(
        [Bind(plain.id, anyw.id), Bind(gpu.id, gpu_s.id)], key=str
    )


def test_changing_the_selector_live_unbinds_workers_that_no_longer_match():
    h = Harness()
    s = loaded(h, 2)
    (plain,) = workers(h, 1)
    (gpu,) = workers(h, 1, gpu="true")
    h.core.schedule()
    h.core.update_session(s.id, SessionAttributes(worker_selector={"gpu": "true"}))
    assert plan(h) == [Unbind(plain.id, s.id, UnbindReason.SELECTOR)]
    assert gpu.session_id == s.id


# ---------------------------------------------------------------- idle, reclaim, preemption
def test_idle_session_releases_workers_after_idle_timeout():
    """A session without work keeps its worker until idle_timeout, then releases it."""
    h = Harness()
    s = h.session()
    (w,) = workers(h, 1)
    h.core.submit(s, h.batch())
    h.core.schedule()
    data = h.connect(w)
    h.core.worker_results(w, h.answer(data.sent[0]))
    assert plan(h) == []
    h.clock.advance(61)
    assert plan(h) == [Unbind(w.id, s.id, UnbindReason.IDLE)]


def test_worker_of_session_without_work_is_reclaimed_for_pending_work():
    """Work conservation: a worker parked on a session with no work moves to one with work."""
    h = Harness()
    done = h.session()
    (w,) = workers(h, 1)
    h.core.submit(done, h.batch())
    h.core.schedule()
    data = h.connect(w)
    h.core.worker_results(w, h.answer(data.sent[0]))
    busy = loaded(h, 1, priority=0)
    assert plan(h) == [Unbind(w.id, done.id, UnbindReason.RECLAIMED)]
    h.core.schedule()
    h.core.worker_stream_closed(w.id, data)
    h.core.schedule()
    assert w.session_id == busy.id


def test_preemptible_lower_priority_session_gives_workers_to_a_starved_higher_one():
    h = Harness()
    low = loaded(h, 10, priority=2, preemptible=True)
    ws = workers(h, 4)
    h.core.schedule()
    streams = {w.id: h.connect(w) for w in ws}
    high = loaded(h, 3, priority=8)
    actions = plan(h)
    assert len(actions) == 3
    assert all(a == Unbind(a.worker_id, low.id, UnbindReason.PREEMPTED) for a in actions)
    h.core.schedule()
    assert low.preempted == 3
    # Preempted workers finish what they hold; nothing is lost, and then they move.
    for w in ws:
        if w.phase.value == "unbinding":
            for b in list(streams[w.id].sent):
                h.core.worker_results(w, h.answer(b))
            assert streams[w.id].closed
            h.core.worker_stream_closed(w.id, streams[w.id])
    h.core.schedule()
    assert high.active_workers() == 3
    assert low.active_workers() == 1
    assert low.queue.tasks + low.inflight_tasks + low.completed == low.submitted


def test_preemption_never_takes_non_preemptible_or_equal_priority_workers():
    h = Harness()
    loaded(h, 10, priority=2)  # not preemptible
    loaded(h, 10, priority=8, preemptible=True)
    workers(h, 4)
    h.core.schedule()
    loaded(h, 3, priority=8)
    assert plan(h) == []


def test_preemption_keeps_the_donor_guarantee_and_takes_lowest_priority_first():
    h = Harness()
    lowest = loaded(h, 10, priority=1, preemptible=True, min_workers=1)
    middle = loaded(h, 10, priority=4, preemptible=True)
    ws = workers(h, 4)
    h.core.schedule()
    assert (lowest.active_workers(), middle.active_workers()) == (1, 3)
    for w in ws:
        h.connect(w)
    loaded(h, 2, priority=9)
    actions = plan(h)
    assert [a.session_id for a in actions] == [middle.id, middle.id]
    assert all(a.reason is UnbindReason.PREEMPTED for a in actions)


def test_unbinding_workers_count_as_supply_so_preemption_is_not_repeated():
    """Anti-thrashing: workers already on their way are not preempted a second time."""
    h = Harness()
    low = loaded(h, 10, priority=1, preemptible=True)
    workers(h, 4)
    h.core.schedule()
    for w in low.workers.values():
        h.connect(w)  # each holds batches, so an unbind waits for them
    loaded(h, 2, priority=9)
    h.core.schedule()
    assert low.preempted == 2
    h.core.schedule()
    h.core.schedule()
    assert low.preempted == 2


def test_fresh_binds_are_not_moved_within_min_bind_seconds():
    h = Harness()
    h.core.scheduler = Scheduler(min_bind_seconds=5)
    low = loaded(h, 10, priority=1, preemptible=True)
    workers(h, 2)
    h.core.schedule()
    loaded(h, 2, priority=9)
    assert plan(h) == []
    h.clock.advance(5)
    assert len(plan(h)) == 2
    assert low.active_workers() == 2


def test_draining_workers_are_never_bound():
    h = Harness()
    loaded(h, 1)
    (w,) = workers(h, 1)
    h.core.heartbeat(w.id, draining=True)
    assert plan(h) == []


def test_closed_session_unbinds_its_workers():
    h = Harness()
    s = loaded(h, 2)
    (w, _) = h.worker()
    control = w.control
    h.core.schedule()
    h.core.close_session(s.id)
    assert control.instructions(WorkerInstruction.TYPE_UNBIND)
    assert w.session_id is None
    assert h.core.unbinds_by_reason == {"session_closed": 1}


def test_plan_is_stable_once_applied():
    """Re-planning an unchanged grid changes nothing (no rebinding every tick)."""
    h = Harness()
    for prio in (1, 5, 5, 9):
        loaded(h, 3, priority=prio, preemptible=prio == 1)
    workers(h, 7)
    h.core.schedule()
    for _ in range(3):
        assert plan(h) == []
