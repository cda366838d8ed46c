"""``alpcrun central-cache`` and ``alpcrun node-agent``: the shared-data servers."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from typing import Any

from alpcrun import tls_flags
from alpcrun.affinity import apply_setting
from alpcrun.config import CentralCacheSettings, NodeAgentSettings, load_settings
from alpcrun.logs import setup_logging

Common = Callable[[argparse.ArgumentParser], None]


def add_parsers(sub: Any, common: Common) -> None:
    """Add the ``central-cache`` and ``node-agent`` subcommands to ``sub``."""
    cc = sub.add_parser("central-cache", help="run the central shared-data cache (port 2337)")
    common(cc)
    _server_flags(cc, 2337, 9338)
    tls_flags.add_server_flags(cc, "ALPCRUNCH_CACHE_", dials="queue manager")
    cc.add_argument("--max-ttl", help="longest TTL of shared data, e.g. 600s")
    cc.add_argument("--cleanup-interval", help="how often expired entries are dropped, e.g. 1s")
    cc.add_argument("--max-bytes", help="bytes of shared data held at once, e.g. 4GB")
    cc.add_argument(
        "--queue-manager", help="queue manager address: delete closed sessions' shared data"
    )
    na = sub.add_parser("node-agent", help="run the node agent: node-local shared-data cache")
    common(na)
    _server_flags(na, 3337, 9339)
    tls_flags.add_server_flags(na, "ALPCRUNCH_NODE_", dials="central cache")
    na.add_argument("--cache-size", help="bytes the node cache holds, e.g. 1GB")
    na.add_argument("--central-cache-addr", help="central cache address (default localhost:2337)")
    na.add_argument("--unix-socket", metavar="PATH", help="also serve on this Unix socket")
    na.add_argument(
        "--read-port",
        metavar="PORT",
        help="TCP port of the read path: shared-data reads without gRPC (default 3338; "
        "0 picks one; off: none; not served with TLS)",
    )
    na.add_argument(
        "--read-socket", metavar="PATH", help="also serve the read path on this Unix socket"
    )
    na.add_argument(
        "--read-idle-timeout",
        metavar="DURATION",
        help="close a read-path connection idle this long, e.g. 60s (default 60s)",
    )
    na.add_argument(
        "--read-max-connections",
        type=int,
        metavar="N",
        help="read-path connections open at once; beyond, the one idle longest is closed "
        "(default 1024)",
    )
    na.add_argument(
        "--queue-manager",
        metavar="HOST:PORT",
        help="run the node's payload store, registered with this queue manager's catalog "
        "(ALPCRUNCH_NODE_QUEUE_MANAGER; default: no payload store)",
    )
    na.add_argument("--node", help="this node's name in the payload catalog (default: host name)")
    na.add_argument("--ram-bytes", metavar="SIZE", help="payload RAM tier capacity, e.g. 4GB")
    na.add_argument("--disk-dir", metavar="DIR", help="payload disk tier directory (default: none)")
    na.add_argument("--disk-bytes", metavar="SIZE", help="payload disk tier capacity, e.g. 100GB")
    na.add_argument(
        "--payload-socket",
        metavar="PATH",
        help="Unix socket where workers on the node get payload descriptors (zero-copy reads)",
    )
    na.add_argument(
        "--advertise-address",
        metavar="HOST:PORT",
        help="where other nodes reach this agent's payload data path (default: host name:port)",
    )


def _server_flags(p: argparse.ArgumentParser, port: int, metrics_port: int) -> None:
    p.add_argument("--host", help="listen address (default 0.0.0.0)")
    p.add_argument("--port", type=int, help=f"gRPC port (default {port}; 0 picks one)")
    p.add_argument(
        "--metrics-port", type=int, help=f"Prometheus port (default {metrics_port}; 0 picks one)"
    )
    p.add_argument(
        "--auth-disabled", action="store_true", default=None, help="accept calls without a key"
    )
    add_cpu_affinity_flag(p)


def add_cpu_affinity_flag(p: argparse.ArgumentParser) -> None:
    """``--cpu-affinity`` of every server command."""
    p.add_argument(
        "--cpu-affinity",
        metavar="CPUS",
        help="run on these CPUs only, e.g. 3 or 0-1 (default: any)",
    )


def _common_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "log_level": args.log_level,
        "log_json": args.log_json,
        "api_key": args.api_key,
        "api_key_file": args.api_key_file,
        "host": args.host,
        "port": args.port,
        "metrics_port": args.metrics_port,
        "auth_disabled": args.auth_disabled,
        "cpu_affinity": args.cpu_affinity,
        **tls_flags.overrides(args),
    }


def central_cache(args: argparse.Namespace) -> int:
    """``alpcrun central-cache``: serve until SIGTERM/SIGINT."""
    from alpcrun.cache.app import CentralCacheServer

    settings = load_settings(
        CentralCacheSettings,
        config_file=args.config,
        max_ttl=args.max_ttl,
        cleanup_interval=args.cleanup_interval,
        max_bytes=args.max_bytes,
        queue_manager=args.queue_manager,
        **_common_overrides(args),
    )
    setup_logging(settings.log_level, json_lines=settings.log_json)
    apply_setting(settings.cpu_affinity, env_prefix="ALPCRUNCH_CACHE_")
    asyncio.run(_serve(CentralCacheServer(settings=settings)))
    return 0


def node_agent(args: argparse.Namespace) -> int:
    """``alpcrun node-agent``: serve until SIGTERM/SIGINT."""
    from alpcrun.cache.app import NodeAgent

    settings = load_settings(
        NodeAgentSettings,
        config_file=args.config,
        cache_size=args.cache_size,
        central_cache_addr=args.central_cache_addr,
        unix_socket=args.unix_socket,
        read_port=args.read_port,
        read_socket=args.read_socket,
        read_idle_timeout=args.read_idle_timeout,
        read_max_connections=args.read_max_connections,
        queue_manager=args.queue_manager,
        node=args.node,
        ram_bytes=args.ram_bytes,
        disk_dir=args.disk_dir,
        disk_bytes=args.disk_bytes,
        payload_socket=args.payload_socket,
        advertise_address=args.advertise_address,
        **_common_overrides(args),
    )
    setup_logging(settings.log_level, json_lines=settings.log_json)
    apply_setting(settings.cpu_affinity, env_prefix="ALPCRUNCH_NODE_")
    asyncio.run(_serve(NodeAgent(settings=settings)))
    return 0


async def _serve(server: Any) -> None:
    await server.start()
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def on_signal() -> None:
        if not stopping:
            stopping.append(asyncio.ensure_future(server.stop()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await server.wait_stopped()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
