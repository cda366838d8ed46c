"""What the scaler reports about itself: liveness, readiness and Prometheus metrics.

:class:`ScalerStatus` is sans-I/O (an injected clock); :class:`StatusServer` serves it over HTTP
on the scaler's event loop, bounded as every server's ``/metrics`` is
(:mod:`alpcrun.proto.metrics_http`: one request per connection, 10 s for a request to arrive
and for its answer to be read, at most 32 connections):

- ``/healthz`` (liveness): 200 while the loop finishes a round, successful or not, at least every
  ``stale_after`` seconds; 503 when it is stuck (a call that never returns), and no answer at
  all while the event loop itself is blocked (the probe's timeout counts that as a failure). A
  queue manager or API server that is away does not fail liveness: restarting the scaler would
  not bring it back.
- ``/readyz`` (readiness): 200 when the last round succeeded, 503 with the error otherwise.
- ``/metrics``: the scaler's gauges and counters (names below), in the Prometheus text format.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from alpcrun._clock import Clock
from alpcrun.proto.metrics_http import HttpEndpoint, HttpLimits, HttpReply, MetricsRoute
from alpcrun.scaler.policy import Decision


class ScalerStatus:
    """The outcome of the scaler's rounds, as health and metrics."""

    def __init__(self, *, clock: Clock, stale_after_s: float) -> None:
        self._clock = clock
        self.stale_after_s = stale_after_s
        self._started = clock.monotonic()
        self._last_round: float | None = None
        self.last_error: str | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.demand = Gauge("alpcrun_scaler_demand", "Demand read in the last round", registry=r)
        self.desired = Gauge(
            "alpcrun_scaler_desired_replicas",
            "Replicas the demand asks for, within the bounds",
            registry=r,
        )
        self.replicas = Gauge(
            "alpcrun_scaler_replicas", "Replicas set or kept in the last round", registry=r
        )
        self.rounds = Counter(
            "alpcrun_scaler_rounds", "Rounds by outcome (ok, failed)", ["outcome"], registry=r
        )
        self.scalings = Counter(
            "alpcrun_scaler_scalings",
            "Scale changes by direction (up, down)",
            ["direction"],
            registry=r,
        )
        self.last_success = Gauge(
            "alpcrun_scaler_last_success_timestamp_seconds",
            "Unix time of the last successful round",
            registry=r,
        )
        for outcome in ("ok", "failed"):
            self.rounds.labels(outcome)
        for direction in ("up", "down"):
            self.scalings.labels(direction)

    def succeeded(self, demand: float, decision: Decision) -> None:
        """Record a round that read the demand and the scale (and changed it if it had to)."""
        self._last_round = self._clock.monotonic()
        self.last_error = None
        self.demand.set(demand)
        self.desired.set(decision.desired)
        self.replicas.set(decision.replicas)
        self.rounds.labels("ok").inc()
        if decision.changed:
            self.scalings.labels("up" if decision.replicas > decision.current else "down").inc()
        self.last_success.set(self._clock.time())

    def failed(self, error: BaseException) -> None:
        """Record a round that failed (nothing was changed)."""
        self._last_round = self._clock.monotonic()
        self.last_error = f"{type(error).__name__}: {error}"
        self.rounds.labels("failed").inc()

    def live(self) -> tuple[bool, str]:
        """Whether the loop still finishes rounds (liveness), and why not."""
        since = self._last_round if self._last_round is not None else self._started
        idle = self._clock.monotonic() - since
        if idle <= self.stale_after_s:
            return True, "ok"
        return False, f"no round finished for {idle:.0f}s (limit {self.stale_after_s:.0f}s)"

    def ready(self) -> tuple[bool, str]:
        """Whether the last round succeeded (readiness), and why not."""
        if self._last_round is None:
            return False, "no round yet"
        if self.last_error is not None:
            return False, f"last round failed: {self.last_error}"
        return True, "ok"


class StatusServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` of a :class:`ScalerStatus`, on the event loop.

    Args:
        status: What to serve.
        host: Address to listen on.
        port: Port (0: a free one).
        limits: Timeouts and most connections (default: as every server's ``/metrics``).
    """

    def __init__(
        self, status: ScalerStatus, *, host: str, port: int, limits: HttpLimits | None = None
    ) -> None:
        self.status = status
        self._metrics = MetricsRoute(lambda: status.registry)  # its metrics take locks
        self._endpoint = HttpEndpoint(
            {"/metrics": self._metrics, "/healthz": self._live, "/readyz": self._ready},
            host=host,
            port=port,
            limits=limits,
        )
        self.port: int = port
        """The port bound (after :meth:`start`)."""

    async def start(self) -> None:
        """Listen (raises ``OSError`` when the address cannot be bound)."""
        await self._endpoint.start()
        self.port = self._endpoint.port

    async def close(self) -> None:
        """Stop serving and release the port."""
        await self._endpoint.stop()
        self._metrics.close()

    async def _live(self) -> HttpReply:
        return _probe(*self.status.live())

    async def _ready(self) -> HttpReply:
        return _probe(*self.status.ready())


def _probe(ok: bool, why: str) -> HttpReply:
    return HttpReply(200 if ok else 503, (why + "\n").encode())
