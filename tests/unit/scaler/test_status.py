"""The scaler's own health and metrics: liveness on a stuck loop, readiness on failed rounds."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from alpcrun.scaler.policy import Decision, Reason
from alpcrun.scaler.status import ScalerStatus
from alpcrun.testing import FakeClock


def _samples(status: ScalerStatus) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest

    text = generate_latest(status.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_liveness_needs_a_round_within_the_limit_success_or_not():
    """Live at start (grace), live while rounds finish even failing, not live when they stop."""
    clock = FakeClock()
    status = ScalerStatus(clock=clock, stale_after_s=30)
    assert status.live()[0]
    clock.advance(31)
    live, why = status.live()
    assert not live
    assert "31s" in why
    status.failed(ConnectionError("queue manager away"))
    assert status.live()[0]  # a failing round is still a loop that runs
    clock.advance(29)
    assert status.live()[0]
    clock.advance(2)
    assert not status.live()[0]


def test_readiness_follows_the_last_round():
    """Not ready before the first round or after a failed one; ready after a success."""
    status = ScalerStatus(clock=FakeClock(), stale_after_s=30)
    assert status.ready() == (False, "no round yet")
    status.succeeded(3.0, Decision(1, 3, 3, Reason.SCALE_UP))
    assert status.ready() == (True, "ok")
    status.failed(TimeoutError("api server"))
    ready, why = status.ready()
    assert not ready
    assert "TimeoutError: api server" in why


def test_metrics_count_rounds_and_scalings_by_direction():
    """Demand, desired, replicas, rounds by outcome and scalings up/down are exported."""
    clock = FakeClock()
    status = ScalerStatus(clock=clock, stale_after_s=30)
    status.succeeded(6.0, Decision(1, 6, 4, Reason.BOUNDS))
    status.succeeded(6.0, Decision(4, 6, 4, Reason.STABLE))
    status.failed(OSError("down"))
    status.succeeded(0.0, Decision(4, 1, 2, Reason.SCALE_DOWN))
    m = _samples(status)
    assert m[("alpcrun_scaler_demand", ())] == 0.0
    assert m[("alpcrun_scaler_desired_replicas", ())] == 1
    assert m[("alpcrun_scaler_replicas", ())] == 2
    assert m[("alpcrun_scaler_rounds_total", (("outcome", "ok"),))] == 3
    assert m[("alpcrun_scaler_rounds_total", (("outcome", "failed"),))] == 1
    assert m[("alpcrun_scaler_scalings_total", (("direction", "up"),))] == 1
    assert m[("alpcrun_scaler_scalings_total", (("direction", "down"),))] == 1
    assert m[("alpcrun_scaler_last_success_timestamp_seconds", ())] == clock.time()
