"""The scaler's decision core: demand in, replica count out (sans-I/O, clock injected).

The rules follow the Kubernetes HPA's, so the two modes behave alike:

- the desired count is ``ceil(demand / per_replica)`` held within ``[min_replicas, max_replicas]``;
- scaling up happens at once, at most ``max_step_up`` replicas per decision;
- scaling down goes only to the highest count desired during the last ``scale_down_window_s``
  (a dip in demand does not kill workers that are about to be needed again), at most
  ``max_step_down`` replicas per decision; a freshly started decider has no history, so it waits a
  whole window before its first scale-down;
- a current count outside the bounds is brought inside them at once.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from alpcrun._clock import Clock


class Reason(StrEnum):
    """Why a decision is what it is."""

    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    STABLE = "stable"
    STABILISING = "stabilising"
    """Less is wanted, but not for a whole scale-down window yet."""
    BOUNDS = "bounds"
    """The current count was outside [min_replicas, max_replicas]."""


@dataclass(frozen=True)
class ScalePolicy:
    """Bounds and damping of the scaler."""

    min_replicas: int = 0
    """Fewest replicas, whatever the demand."""
    max_replicas: int = 10
    """Most replicas, whatever the demand."""
    per_replica: float = 1.0
    """Demand one replica absorbs (1 for alpcrun_workers_wanted; N tasks for a queue depth)."""
    scale_down_window_s: float = 300.0
    """Scale down only to the highest count desired during this window."""
    max_step_up: int = 10
    """Most replicas added by one decision."""
    max_step_down: int = 5
    """Most replicas removed by one decision."""

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError("need 0 <= min_replicas <= max_replicas")
        if self.per_replica <= 0 or self.scale_down_window_s < 0:
            raise ValueError("per_replica must be positive and scale_down_window_s not negative")
        if self.max_step_up < 1 or self.max_step_down < 1:
            raise ValueError("max_step_up and max_step_down must be at least 1")

    def desired(self, demand: float) -> int:
        """Replicas the demand asks for, within the bounds."""
        wanted = math.ceil(demand / self.per_replica - 1e-9) if demand > 0 else 0
        return max(self.min_replicas, min(self.max_replicas, wanted))


@dataclass(frozen=True)
class Decision:
    """One decision of the scaler."""

    current: int
    """Replicas the target had."""
    desired: int
    """Replicas the demand asks for now, within the bounds."""
    replicas: int
    """Replicas the target should have now."""
    reason: Reason
    """Why."""

    @property
    def changed(self) -> bool:
        """Whether the target must be scaled."""
        return self.replicas != self.current


class ScaleDecider:
    """Turns observations of demand into replica counts; keeps the scale-down history."""

    def __init__(self, policy: ScalePolicy, *, clock: Clock) -> None:
        self.policy = policy
        self._clock = clock
        self._started = clock.monotonic()
        self._history: deque[tuple[float, int]] = deque()

    def decide(self, demand: float, current: int) -> Decision:
        """The replica count for ``demand`` when the target has ``current`` replicas."""
        p = self.policy
        now = self._clock.monotonic()
        desired = p.desired(demand)
        self._history.append((now, desired))
        while self._history and self._history[0][0] < now - p.scale_down_window_s:
            self._history.popleft()
        if current < p.min_replicas or current > p.max_replicas:
            bounded = max(p.min_replicas, min(p.max_replicas, current))
            return Decision(current, desired, bounded, Reason.BOUNDS)
        if desired > current:
            return Decision(
                current, desired, min(desired, current + p.max_step_up), Reason.SCALE_UP
            )
        if desired == current:
            return Decision(current, desired, current, Reason.STABLE)
        floor = max(d for _, d in self._history)
        if now - self._started < p.scale_down_window_s:
            floor = current  # no full window of history yet: do not scale down
        target = max(floor, desired, current - p.max_step_down)
        if target >= current:
            return Decision(current, desired, current, Reason.STABILISING)
        return Decision(current, desired, target, Reason.SCALE_DOWN)
