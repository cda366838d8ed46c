"""Bound workers without a WorkerStream: BIND sent again on a contradicting heartbeat, lost
after bind_stream_timeout (fake clock, recording outlets)."""

from __future__ import annotations

from alpcrun.proto import WorkerInstruction
from alpcrun.queue_manager.records import WorkerPhase

from .conftest import Harness

BIND = WorkerInstruction.TYPE_BIND


def _starved_session(h: Harness):
    """A session with max_workers 1 and work, bound to the first of two idle workers."""
    s = h.session(max_workers=1)
    first, first_control = h.worker()
    second, second_control = h.worker()
    h.core.submit(s, h.batch())
    h.core.schedule()
    assert [m.session_id for m in first_control.instructions(BIND)] == [s.id]
    assert not second_control.instructions(BIND)
    return s, (first, first_control), (second, second_control)


def test_a_bound_worker_that_opens_no_stream_is_lost_and_its_slot_goes_to_another():
    """No WorkerStream bind_stream_timeout after BIND: the worker is dropped, another is bound."""
    h = Harness(bind_stream_timeout_s=30.0)
    s, (first, first_control), (second, second_control) = _starved_session(h)
    h.clock.advance(29)
    h.core.heartbeat(first.id)
    h.core.heartbeat(second.id)
    h.core.tick()
    assert first.id in h.core.workers
    assert not second_control.instructions(BIND)
    h.clock.advance(2)
    h.core.heartbeat(first.id)  # alive and heartbeating, but it never opened its stream
    h.core.heartbeat(second.id)
    h.core.tick()
    assert first.id not in h.core.workers
    assert first_control.closed  # its WorkerUpdate stream is ended
    assert h.core.workers_lost == 1
    assert [m.session_id for m in second_control.instructions(BIND)] == [s.id]
    data = h.connect(second)
    assert len(data.sent) == 1  # the starved batch reaches the other worker
    assert s.inflight_batches == 1


def test_a_bound_worker_with_its_stream_open_is_never_dropped_for_it():
    """A worker that opened its stream in time keeps its bind however long it lasts."""
    h = Harness(bind_stream_timeout_s=30.0)
    s, (first, _), _ = _starved_session(h)
    h.clock.advance(29)
    h.connect(first)
    for _ in range(3):
        h.clock.advance(20)
        h.core.heartbeat(first.id)
        h.core.tick()
    assert first.id in h.core.workers
    assert first.phase is WorkerPhase.BOUND
    assert first.session_id == s.id


def test_an_idle_heartbeat_after_a_heartbeat_interval_gets_the_bind_sent_again():
    """A bound worker without a stream that reports idle is sent BIND again, once per interval."""
    h = Harness(heartbeat_interval_s=5.0, bind_stream_timeout_s=30.0)
    s, (first, control), _ = _starved_session(h)
    h.clock.advance(1)
    h.core.heartbeat(first.id, serving="")  # may have been written before BIND arrived
    assert len(control.instructions(BIND)) == 1
    h.clock.advance(5)
    h.core.heartbeat(first.id, serving="")
    resent = control.instructions(BIND)
    assert [m.session_id for m in resent] == [s.id, s.id]
    assert resent[1] == resent[0]  # same window and task timeout
    h.clock.advance(1)
    h.core.heartbeat(first.id, serving="")  # not again within the interval
    assert len(control.instructions(BIND)) == 2
    h.clock.advance(5)
    h.core.heartbeat(first.id, serving="another-session")
    assert len(control.instructions(BIND)) == 3
    assert first.phase is WorkerPhase.BOUND
    data = h.connect(first)  # it took the BIND this time
    assert len(data.sent) == 1


def test_heartbeats_that_agree_or_say_nothing_get_no_second_bind():
    """No BIND again for a worker serving its session, one with a stream, or no state."""
    h = Harness(heartbeat_interval_s=5.0)
    s, (first, control), _ = _starved_session(h)
    h.clock.advance(10)
    h.core.heartbeat(first.id, serving=s.id)  # its stream is on its way
    h.core.heartbeat(first.id)  # a heartbeat without a state
    assert len(control.instructions(BIND)) == 1
    h.connect(first)
    h.clock.advance(10)
    h.core.heartbeat(first.id, serving="")  # its stream is open: it is winding down or racing
    assert len(control.instructions(BIND)) == 1


def test_an_idle_worker_reporting_idle_is_left_alone():
    """Heartbeats of an unbound worker never produce a BIND."""
    h = Harness()
    w, control = h.worker()
    h.clock.advance(30)
    h.core.heartbeat(w.id, serving="")
    h.core.heartbeat(w.id, serving="some-session")
    assert not control.instructions(BIND)
    assert w.phase is WorkerPhase.IDLE
