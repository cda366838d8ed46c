"""``alpcrun scaler``: keep a worker Deployment at the replicas the queue manager wants."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable

from alpcrun._clock import MonotonicClock
from alpcrun.logs import setup_logging
from alpcrun.scaler.demand import SCALE_METRICS, MetricsDemand
from alpcrun.scaler.kube import DeploymentScale, apps_api
from alpcrun.scaler.policy import ScaleDecider, ScalePolicy
from alpcrun.scaler.runner import ScalerRunner
from alpcrun.scaler.settings import ScalerSettings
from alpcrun.scaler.status import ScalerStatus, StatusServer

log = logging.getLogger("alpcrun.scaler")

_FLAGS = {
    "deployment": ("NAME", "worker Deployment to scale"),
    "namespace": ("NS", "its namespace (default: default)"),
    "metrics-url": ("URL", "queue manager /metrics URL (default http://localhost:9337/metrics)"),
    "app-id": ("ID", "only this application's sessions (per-session metric)"),
    "per-replica": ("N", "demand one replica absorbs (default 1)"),
    "min-replicas": ("N", "fewest replicas (default 1)"),
    "max-replicas": ("N", "most replicas (default 10)"),
    "interval": ("DURATION", "time between decisions (default 15s)"),
    "scale-down-window": ("DURATION", "scale down to the most wanted in this window (default 5m)"),
    "max-step-up": ("N", "most replicas added at once (default 10)"),
    "max-step-down": ("N", "most replicas removed at once (default 5)"),
    "kubeconfig": ("FILE", "kubeconfig outside a pod (default: in-cluster, then ~/.kube/config)"),
    "host": ("ADDR", "address of the status endpoint (default 0.0.0.0)"),
}


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register ``alpcrun scaler``."""
    p = sub.add_parser("scaler", help="scale a worker Deployment to the workers wanted")
    common(p)
    for flag, (metavar, text) in _FLAGS.items():
        p.add_argument(f"--{flag}", metavar=metavar, help=text)
    p.add_argument("--metric", choices=SCALE_METRICS, help="gauge to scale on")
    p.add_argument(
        "--metrics-port",
        type=int,
        help="port of /metrics, /healthz and /readyz (default 9340; 0 picks one)",
    )


def settings_from(args: argparse.Namespace) -> ScalerSettings:
    """The scaler's settings: flags > env (ALPCRUNCH_SCALER_*) > YAML > defaults."""
    from alpcrun.config import load_settings

    overrides = {flag.replace("-", "_"): getattr(args, flag.replace("-", "_")) for flag in _FLAGS}
    return load_settings(
        ScalerSettings,
        config_file=args.config,
        log_level=args.log_level,
        log_json=args.log_json,
        api_key=args.api_key,
        api_key_file=args.api_key_file,
        metric=args.metric,
        metrics_port=args.metrics_port,
        **overrides,
    )


def run(args: argparse.Namespace) -> int:
    """Scale until SIGTERM/SIGINT."""
    s = settings_from(args)
    setup_logging(s.log_level, json_lines=s.log_json)
    if not s.deployment:
        print("alpcrun scaler: --deployment (or ALPCRUNCH_SCALER_DEPLOYMENT) is required")
        return 2
    policy = ScalePolicy(
        min_replicas=s.min_replicas,
        max_replicas=s.max_replicas,
        per_replica=s.per_replica,
        scale_down_window_s=s.scale_down_window,
        max_step_up=s.max_step_up,
        max_step_down=s.max_step_down,
    )
    clock = MonotonicClock()
    # A round may take up to a few API calls' timeouts; three intervals and a minute is stuck.
    status = ScalerStatus(clock=clock, stale_after_s=3 * s.interval + 60)
    runner = ScalerRunner(
        decider=ScaleDecider(policy, clock=clock),
        demand=MetricsDemand(s.metrics_url, s.metric, app_id=s.app_id),
        target=DeploymentScale(
            apps_api(kubeconfig=s.kubeconfig), name=s.deployment, namespace=s.namespace
        ),
        interval_s=s.interval,
        status=status,
    )
    return asyncio.run(_scale(runner, status, s))


async def _scale(runner: ScalerRunner, status: ScalerStatus, s: ScalerSettings) -> int:
    """Serve the status (if asked) and scale until SIGTERM/SIGINT; the exit status."""
    server = None
    if s.metrics_port is not None:
        server = StatusServer(status, host=s.host, port=s.metrics_port)
        try:
            await server.start()
        except OSError as exc:
            print(f"alpcrun scaler: cannot serve on {s.host}:{s.metrics_port}: {exc}")
            return 2
        log.info("scaler status on http://%s:%d (/metrics, /healthz, /readyz)", s.host, server.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.run(stop)
    finally:
        if server is not None:
            await server.close()
    return 0
