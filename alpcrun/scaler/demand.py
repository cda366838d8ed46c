"""Read the demand (``alpcrun_workers_wanted`` or a queue depth) from a queue manager's /metrics.

The scaler reads the very series that the HPA and KEDA modes read through Prometheus, straight
from the queue manager's exposition, so all three modes scale on the same figure.
"""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from alpcrun.errors import AlpcrunError

SCALE_METRICS = (
    "alpcrun_workers_wanted",
    "alpcrun_queue_depth",
    "alpcrun_session_workers_wanted",
    "alpcrun_session_queue_depth",
)
"""Gauges the queue manager exports that a pool can scale on."""

MAX_EXPOSITION_BYTES = 64 << 20
"""Largest /metrics body read (one series per open session)."""


class MetricNotFound(AlpcrunError):
    """The exposition does not hold the metric the scaler was told to read."""


def demand_from_exposition(text: str, metric: str, *, app_id: str = "") -> float:
    """Sum of ``metric``'s samples in a Prometheus text exposition.

    Args:
        text: the body of a /metrics response.
        metric: a gauge name, e.g. ``alpcrun_workers_wanted``.
        app_id: only samples whose ``app_id`` label has this value (per-session gauges).

    Raises:
        MetricNotFound: no family of that name in the exposition.
    """
    for family in text_string_to_metric_families(text):
        if family.name != metric:
            continue
        return float(
            sum(
                s.value
                for s in family.samples
                if s.name == metric and (not app_id or s.labels.get("app_id") == app_id)
            )
        )
    raise MetricNotFound(f"metric {metric!r} is not exported")


def _get(url: str, timeout: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read(MAX_EXPOSITION_BYTES + 1)
    if len(body) > MAX_EXPOSITION_BYTES:
        raise AlpcrunError(f"{url}: exposition larger than {MAX_EXPOSITION_BYTES} bytes")
    return body.decode()


class MetricsDemand:
    """Reads the demand from ``url`` (a queue manager's /metrics) on every call."""

    def __init__(self, url: str, metric: str, *, app_id: str = "", timeout_s: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"metrics URL must be http(s): {url!r}")
        if metric not in SCALE_METRICS:
            raise ValueError(f"cannot scale on {metric!r}; use one of {', '.join(SCALE_METRICS)}")
        self.url = url
        self.metric = metric
        self.app_id = app_id
        self.timeout_s = timeout_s

    async def __call__(self) -> float:
        """The current demand."""
        text = await asyncio.to_thread(_get, self.url, self.timeout_s)
        return demand_from_exposition(text, self.metric, app_id=self.app_id)
