"""The scaler's decision core: up, down, bounds and stabilisation, on a fake clock."""

from __future__ import annotations

import pytest

from alpcrun.scaler.policy import Reason, ScaleDecider, ScalePolicy
from alpcrun.testing import FakeClock

WINDOW = 300.0


def decider(**kw) -> tuple[ScaleDecider, FakeClock]:
    kw.setdefault("min_replicas", 1)
    kw.setdefault("max_replicas", 20)
    kw.setdefault("scale_down_window_s", WINDOW)
    kw.setdefault("max_step_up", 100)
    kw.setdefault("max_step_down", 100)
    clock = FakeClock()
    return ScaleDecider(ScalePolicy(**kw), clock=clock), clock


def settled(**kw) -> tuple[ScaleDecider, FakeClock]:
    """A decider that has run for a whole window, so scale-down is allowed."""
    d, clock = decider(**kw)
    clock.advance(WINDOW + 1)
    return d, clock


def test_scales_up_at_once_to_the_demand():
    """Demand above the current count scales up in the same decision."""
    d, _ = decider()
    decision = d.decide(demand=7, current=2)
    assert (decision.replicas, decision.reason, decision.changed) == (7, Reason.SCALE_UP, True)


def test_per_replica_rounds_up():
    """A queue depth of 250 at 100 tasks per replica needs 3 replicas."""
    d, _ = decider(per_replica=100)
    assert d.decide(demand=250, current=1).replicas == 3
    assert d.decide(demand=300, current=3).reason is Reason.STABLE


def test_scale_up_is_limited_by_max_step():
    """At most max_step_up replicas are added per decision."""
    d, _ = decider(max_step_up=4)
    assert d.decide(demand=50, current=2).replicas == 6
    assert d.decide(demand=50, current=6).replicas == 10


def test_never_above_max_nor_below_min():
    """The desired count is held within [min_replicas, max_replicas]."""
    d, _ = settled(min_replicas=2, max_replicas=5)
    up = d.decide(demand=1000, current=3)
    assert (up.desired, up.replicas) == (5, 5)
    d, _ = settled(min_replicas=2, max_replicas=5)
    down = d.decide(demand=0, current=4)
    assert (down.desired, down.replicas, down.reason) == (2, 2, Reason.SCALE_DOWN)


def test_current_outside_bounds_is_corrected_at_once():
    """A count someone set outside the bounds comes back inside without waiting or stepping."""
    d, _ = decider(min_replicas=3, max_replicas=8, max_step_down=1, max_step_up=1)
    high = d.decide(demand=0, current=15)
    assert (high.replicas, high.reason) == (8, Reason.BOUNDS)
    low = d.decide(demand=0, current=0)
    assert (low.replicas, low.reason) == (3, Reason.BOUNDS)


def test_scale_down_waits_for_the_window():
    """Lower demand only scales down once it has been lower for the whole window."""
    d, clock = settled()
    assert d.decide(demand=10, current=10).reason is Reason.STABLE
    clock.advance(10)
    hold = d.decide(demand=2, current=10)
    assert (hold.replicas, hold.reason, hold.changed) == (10, Reason.STABILISING, False)
    clock.advance(WINDOW - 20)
    assert d.decide(demand=2, current=10).replicas == 10  # 10 still within the window
    clock.advance(20)
    down = d.decide(demand=2, current=10)
    assert (down.replicas, down.reason) == (2, Reason.SCALE_DOWN)


def test_scale_down_goes_to_the_highest_recent_recommendation():
    """Within the window, the highest count desired is kept: a dip does not kill needed workers."""
    d, clock = settled()
    d.decide(demand=10, current=10)
    clock.advance(100)
    d.decide(demand=6, current=10)
    clock.advance(100)
    d.decide(demand=3, current=10)
    clock.advance(WINDOW - 150)  # the 10 left the window; 6 and 3 are in it
    decision = d.decide(demand=1, current=10)
    assert (decision.replicas, decision.reason) == (6, Reason.SCALE_DOWN)


def test_scale_down_is_limited_by_max_step():
    """At most max_step_down replicas are removed per decision."""
    d, _ = settled(max_step_down=3)
    assert d.decide(demand=0, current=10).replicas == 7
    assert d.decide(demand=0, current=7).replicas == 4


def test_spike_during_stabilisation_scales_up_immediately():
    """Scale-up ignores the window: new work gets workers at once."""
    d, clock = settled()
    d.decide(demand=2, current=5)
    clock.advance(30)
    assert d.decide(demand=12, current=5).replicas == 12


def test_fresh_decider_does_not_scale_down_before_a_window_passed():
    """Without history (a restarted scaler) the first scale-down waits a whole window."""
    d, clock = decider()
    assert d.decide(demand=0, current=8).reason is Reason.STABILISING
    clock.advance(WINDOW)
    assert d.decide(demand=0, current=8).replicas == 1


def test_zero_window_scales_down_at_once():
    """scale_down_window_s=0 turns stabilisation off."""
    d, _ = decider(scale_down_window_s=0)
    assert d.decide(demand=1, current=9).replicas == 1


@pytest.mark.parametrize(
    "kw",
    [
        {"min_replicas": 5, "max_replicas": 2},
        {"min_replicas": -1},
        {"per_replica": 0},
        {"max_step_up": 0},
        {"max_step_down": 0},
        {"scale_down_window_s": -1},
    ],
)
def test_policy_refuses_nonsense(kw):
    """Inconsistent bounds and steps are refused when the policy is built."""
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the field
        ScalePolicy(**kw)
