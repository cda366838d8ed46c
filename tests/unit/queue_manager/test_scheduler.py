from alpcrun.queue_manager.scheduler import Bind, Unbind

from .conftest import Harness


def plan(h: Harness):
    return h.core.scheduler.plan(
        h.core.sessions.values(), h.core.workers.values(), h.clock.monotonic()
    )


def test_higher_priority_session_gets_workers_first():
    """With one idle worker, the higher-priority session with work gets it."""
    h = Harness()
    low = h.session(priority=2)
    high = h.session(priority=8)
    h.core.submit(low, h.batch())
    h.core.submit(high, h.batch())
    w, _ = h.worker()
    assert plan(h) == [Bind(w.id, high.id)]


def test_equal_priority_sessions_share_workers():
    """Two equal-priority sessions with plenty of work get two workers each out of four."""
    h = Harness()
    a, b = h.session(), h.session()
    for _ in range(10):
        h.core.submit(a, h.batch())
        h.core.submit(b, h.batch())
    for _ in range(4):
        h.worker()
    binds = [x for x in plan(h) if isinstance(x, Bind)]
    assert sorted(x.session_id for x in binds).count(a.id) == 2
    assert len(binds) == 4


def test_max_workers_is_never_exceeded_and_wanted_follows_batches():
    """A session wants one worker per batch, capped by max_workers."""
    h = Harness()
    s = h.session(max_workers=2)
    for _ in range(5):
        h.core.submit(s, h.batch())
    for _ in range(4):
        h.worker()
    assert len(plan(h)) == 2
    t = h.session()
    h.core.submit(t, h.batch())
    assert t.wanted_workers() == 1


def test_worker_selector_limits_binding():
    """A session with a worker selector is only given matching workers."""
    h = Harness()
    s = h.session(worker_selector={"gpu": "true"})
    h.core.submit(s, h.batch())
    h.worker()
    assert plan(h) == []
    gpu, _ = h.worker(gpu="true")
    assert plan(h) == [Bind(gpu.id, s.id)]


def test_idle_session_releases_workers_after_idle_timeout():
    """A session without work keeps its worker until idle_timeout, then releases it."""
    h = Harness()
    s = h.session(idle_timeout=None)
    w, _ = h.worker()
    h.core.submit(s, h.batch())
    h.core.schedule()
    data = h.connect(w)
    h.core.worker_results(w, h.answer(data.sent[0]))
    assert plan(h) == []
    h.clock.advance(61)
    assert plan(h) == [Unbind(w.id, s.id, "session idle")]


def test_worker_of_session_without_work_is_reclaimed_for_pending_work():
    """Work conservation: a worker parked on a session with no work moves to one with work."""
    h = Harness()
    done = h.session()
    w, _ = h.worker()
    h.core.submit(done, h.batch())
    h.core.schedule()
    data = h.connect(w)
    h.core.worker_results(w, h.answer(data.sent[0]))
    busy = h.session()
    h.core.submit(busy, h.batch())
    assert plan(h) == [Unbind(w.id, done.id, "reclaimed for pending work")]


def test_closed_session_unbinds_and_lowered_max_workers_trims():
    """Lowering max_workers unbinds the extra workers."""
    from alpcrun.proto import SessionAttributes

    h = Harness()
    s = h.session()
    for _ in range(3):
        h.core.submit(s, h.batch())
        h.worker()
    h.core.schedule()
    assert s.active_workers() == 3
    h.core.update_session(s.id, SessionAttributes(max_workers=1))
    unbinds = [x for x in plan(h) if isinstance(x, Unbind)]
    assert len(unbinds) == 2
