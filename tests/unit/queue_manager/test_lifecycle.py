"""Session lifecycle (idle, expiry, close reasons, re-attach) and the waiting explanations."""

import grpc
import pytest

from alpcrun.errors import SessionClosed
from alpcrun.proto import SessionAttributes, SessionState
from alpcrun.proto.status import to_status
from alpcrun.queue_manager.explain import Explainer

from .conftest import ClientRecorder, Harness


def explain(h: Harness, s):
    return Explainer(h.core.sessions.values(), h.core.workers.values()).explain(s)


def test_session_goes_idle_then_active_again_on_activity():
    h = Harness()
    s = h.session(idle_timeout={"seconds": 10})
    h.clock.advance(11)
    h.core.tick()
    assert s.state == SessionState.SESSION_STATE_IDLE
    h.core.submit(s, h.batch())
    assert s.state == SessionState.SESSION_STATE_ACTIVE


def test_session_without_client_expires_after_session_expiry_then_is_forgotten():
    h = Harness(session_expiry_s=100, session_retention_s=50)
    s = h.session()
    h.core.submit(s, h.batch())  # queued work keeps it alive however long it waits
    h.clock.advance(500)
    h.core.tick()
    assert not s.closed
    h.core.close_session(s.id)
    t = h.session()
    h.clock.advance(99)
    h.core.tick()
    assert not t.closed
    h.clock.advance(1)
    h.core.tick()
    assert t.closed
    assert t.close_reason == "expired"
    assert h.core.sessions_expired == 1
    h.clock.advance(50)
    h.core.tick()
    assert t.id not in h.core.sessions


def test_attached_client_keeps_an_idle_session_alive():
    h = Harness(session_expiry_s=10)
    s = h.session()
    h.core.attach_client(s.id, ClientRecorder())
    h.clock.advance(1000)
    h.core.tick()
    assert not s.closed


def test_session_expiry_zero_means_never():
    h = Harness(session_expiry_s=0)
    s = h.session()
    h.clock.advance(10**7)
    h.core.tick()
    assert not s.closed


def test_close_reasons():
    h = Harness()
    a = h.session()
    h.core.close_session(a.id)
    assert a.close_reason == "closed"
    b = h.session(cleanup_on_client_exit=True)
    out = ClientRecorder()
    h.core.attach_client(b.id, out)
    h.core.detach_client(b.id, out)
    assert b.closed
    assert b.close_reason == "client_exit"


def test_closed_session_refuses_batches_with_failed_precondition():
    h = Harness()
    s = h.session()
    h.core.close_session(s.id)
    with pytest.raises(SessionClosed) as info:
        h.core.submit(s, h.batch())
    assert to_status(info.value)[0] is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(SessionClosed):
        h.core.update_session(s.id, SessionAttributes(priority=1))


def test_results_buffered_while_detached_are_delivered_on_reattach():
    h = Harness()
    s = h.session()
    first = ClientRecorder()
    h.core.attach_client(s.id, first)
    h.core.submit(s, h.batch())
    h.core.detach_client(s.id, first)  # the client lost its stream
    (w, _) = h.worker()
    h.core.schedule()
    data = h.connect(w)
    h.core.worker_results(w, h.answer(data.sent[0]))
    assert s.results.undelivered == 1
    assert not s.closed
    again = ClientRecorder()
    h.core.attach_client(s.id, again)
    assert again.ready == 1
    seq, batch = s.results.peek()
    assert batch.tasks[0].payload == b"x!"
    h.core.results_written(s, seq, keep=True)  # written to a stream that acknowledges
    assert s.results.unacked == 1
    h.core.detach_client(s.id, again)  # ...which breaks before the client acknowledged
    third = ClientRecorder()
    h.core.attach_client(s.id, third)
    assert third.ready == 1
    assert s.results.peek() == (seq, batch)  # written again, same number
    h.core.results_written(s, seq, keep=True)
    h.core.ack_results(s, seq)
    assert len(s.results) == 0


def test_close_session_drains_queues_and_frees_workers():
    h = Harness()
    s = h.session()
    for _ in range(3):
        h.core.submit(s, h.batch())
    (w, _) = h.worker()
    h.core.schedule()
    data = h.connect(w)
    _, discarded = h.core.close_session(s.id)
    assert discarded == 9
    assert len(s.queue) == 0
    assert w.session_id == s.id  # finishing its in-flight batches
    for b in list(data.sent):
        h.core.worker_results(w, h.answer(b))
    assert data.closed
    h.core.worker_stream_closed(w.id, data)
    assert w.session_id is None
    assert not s.workers


# ---------------------------------------------------------------- explanations
def test_explain_no_workers_then_no_matching_worker():
    h = Harness()
    s = h.session(worker_selector={"gpu": "true"})
    h.core.submit(s, h.batch())
    assert explain(h, s).code == "no_workers"
    h.worker()
    why = explain(h, s)
    assert why.code == "no_matching_worker"
    assert "gpu=true" in why.message


def test_explain_max_workers():
    h = Harness()
    s = h.session(max_workers=1)
    for _ in range(3):
        h.core.submit(s, h.batch())
    h.worker()
    h.worker()
    h.core.schedule()
    why = explain(h, s)
    assert why.code == "max_workers"
    assert "1" in why.message


def test_explain_lower_priority_counts_the_sessions_ahead():
    h = Harness()
    for _ in range(2):
        high = h.session(priority=9)
        h.core.submit(high, h.batch())
    h.worker()
    h.worker()
    h.core.schedule()
    low = h.session(priority=1)
    h.core.submit(low, h.batch())
    why = explain(h, low)
    assert why.code == "lower_priority"
    assert "2 session(s) holding 2" in why.message


def test_explain_fair_share_and_not_preemptible_and_moving():
    h = Harness()
    a = h.session(priority=5)
    for _ in range(3):
        h.core.submit(a, h.batch())
    (w, _) = h.worker()
    h.core.schedule()
    b = h.session(priority=5)
    h.core.submit(b, h.batch())
    assert explain(h, b).code == "fair_share"
    c = h.session(priority=7)
    h.core.submit(c, h.batch())
    assert explain(h, c).code == "not_preemptible"
    h.connect(w)
    h.core.update_session(a.id, SessionAttributes(preemptible=True))
    h.core.schedule()  # w is preempted for c; it finishes its batches first
    assert explain(h, c).code == "workers_moving"


def test_explain_nothing_when_satisfied_or_without_work():
    h = Harness()
    s = h.session()
    assert explain(h, s) is None
    h.core.submit(s, h.batch())
    h.worker()
    assert explain(h, s).code == "scheduling"
    h.core.schedule()
    assert explain(h, s) is None


def test_metrics_expose_scheduler_decisions_per_session_and_by_reason():
    from prometheus_client import generate_latest

    from alpcrun.queue_manager.metrics import make_registry

    h = Harness()
    low = h.session(priority=1, preemptible=True)
    for _ in range(3):
        h.core.submit(low, h.batch())
    (w, _) = h.worker()
    h.core.schedule()
    h.connect(w)
    high = h.session(priority=9)
    h.core.submit(high, h.batch())
    h.core.schedule()
    text = generate_latest(make_registry(h.core)).decode()
    assert 'alpcrun_unbinds_total{reason="preempted"} 1.0' in text
    assert "alpcrun_preemptions_total 1.0" in text
    assert f'alpcrun_session_preemptions{{app_id="app",session_id="{low.id}"}} 1.0' in text
    assert f'alpcrun_session_workers_wanted{{app_id="app",session_id="{high.id}"}} 1.0' in text
    assert f'alpcrun_session_inflight_batches{{app_id="app",session_id="{low.id}"}} 3.0' in text
    assert "alpcrun_workers_wanted 4.0" in text
