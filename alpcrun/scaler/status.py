"""What the scaler reports about itself: liveness, readiness and Prometheus metrics.

:class:`ScalerStatus` is sans-I/O (an injected clock); :class:`StatusServer` serves it over HTTP:

- ``/healthz`` (liveness): 200 while the loop finishes a round, successful or not, at least every
  ``stale_after`` seconds; 503 when it is stuck (a call that never returns). A queue manager or
  API server that is away does not fail liveness: restarting the scaler would not bring it back.
- ``/readyz`` (readiness): 200 when the last round succeeded, 503 with the error otherwise.
- ``/metrics``: the scaler's gauges and counters (names below), in the Prometheus text format.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from alpcrun._clock import Clock
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


class _Handler(BaseHTTPRequestHandler):
    status: ScalerStatus  # set on the subclass made per server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, generate_latest(self.status.registry), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/readyz"):
            ok, why = self.status.live() if path == "/healthz" else self.status.ready()
            self._reply(200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8")
        else:
            self._reply(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds are not worth a log line."""


class StatusServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` of a :class:`ScalerStatus`, on a thread."""

    def __init__(self, status: ScalerStatus, *, host: str, port: int) -> None:
        handler = type("ScalerStatusHandler", (_Handler,), {"status": status})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="scaler-status", daemon=True
        )

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
