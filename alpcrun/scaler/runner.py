"""The scaler's loop: read the demand, read the scale, decide, patch the scale."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from alpcrun.scaler.kube import ScaleTarget
from alpcrun.scaler.policy import Decision, ScaleDecider
from alpcrun.scaler.status import ScalerStatus

log = logging.getLogger("alpcrun.scaler")


class ScalerRunner:
    """Drives a :class:`ScaleDecider` against a demand source and a scale target."""

    def __init__(
        self,
        *,
        decider: ScaleDecider,
        demand: Callable[[], Awaitable[float]],
        target: ScaleTarget,
        interval_s: float,
        status: ScalerStatus | None = None,
    ) -> None:
        self.decider = decider
        self.demand = demand
        self.target = target
        self.interval_s = interval_s
        self.status = status

    async def step(self) -> Decision:
        """One round: observe, decide and, if the count changes, scale."""
        demand = await self.demand()
        current = await asyncio.to_thread(self.target.get_replicas)
        decision = self.decider.decide(demand, current)
        if decision.changed:
            await asyncio.to_thread(self.target.set_replicas, decision.replicas)
            log.info(
                "scaled %d -> %d replicas (%s; demand %g, desired %d)",
                decision.current,
                decision.replicas,
                decision.reason.value,
                demand,
                decision.desired,
            )
        if self.status is not None:
            self.status.succeeded(demand, decision)
        return decision

    async def run(self, stop: asyncio.Event) -> None:
        """Step every ``interval_s`` until ``stop`` is set; a failed round changes nothing."""
        while not stop.is_set():
            try:
                await self.step()
            except Exception as exc:  # the queue manager or the API server may be away a while
                log.warning("scaling round failed, replicas unchanged: %s", exc)
                if self.status is not None:
                    self.status.failed(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
