"""Settings of ``alpcrun scaler`` (env prefix ``ALPCRUNCH_SCALER_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from alpcrun import constants
from alpcrun.config import Seconds, _Base


class ScalerSettings(_Base):
    """Where the demand comes from, which Deployment to scale, and how."""

    model_config = SettingsConfigDict(env_prefix="ALPCRUNCH_SCALER_")
    section: ClassVar[str] = "scaler"

    deployment: str = Field(default="", max_length=253)
    """Name of the worker Deployment to scale."""
    namespace: str = Field(default="default", max_length=63)
    """Its namespace (in a pod: the Downward API's metadata.namespace)."""
    metrics_url: str = f"http://localhost:{constants.QUEUE_MANAGER_METRICS_PORT}/metrics"
    """The queue manager's Prometheus endpoint."""
    metric: str = "alpcrun_workers_wanted"
    """Gauge to scale on (see ``alpcrun.scaler.demand.SCALE_METRICS``)."""
    app_id: str = ""
    """Only this application's sessions (with a per-session gauge)."""
    per_replica: float = Field(default=1.0, gt=0)
    """Demand one replica absorbs."""
    min_replicas: int = Field(default=1, ge=0)
    """Fewest replicas."""
    max_replicas: int = Field(default=10, ge=0)
    """Most replicas."""
    interval: Seconds = Field(default=15.0, gt=0)
    """Time between two decisions."""
    scale_down_window: Seconds = Field(default=300.0, ge=0)
    """Scale down only to the highest count desired during this window."""
    max_step_up: int = Field(default=10, ge=1)
    """Most replicas added at once."""
    max_step_down: int = Field(default=5, ge=1)
    """Most replicas removed at once."""
    kubeconfig: str | None = None
    """kubeconfig file when not running in a pod."""
    host: str = "0.0.0.0"
    """Address of the status endpoint."""
    metrics_port: int | None = Field(default=constants.SCALER_METRICS_PORT, ge=0, le=65535)
    """Port of ``/metrics``, ``/healthz`` and ``/readyz`` (0 picks one; None: no endpoint)."""

    @model_validator(mode="after")
    def _bounds(self) -> ScalerSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self
