"""One function per ``alpcrun`` subcommand."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import yaml

import alpcrun.cli.payload as payload_cli
import alpcrun.cli.scaler as scaler_cli
from alpcrun import tls_flags
from alpcrun.affinity import apply_setting
from alpcrun.cli import cache, dlq
from alpcrun.config import (
    CentralCacheSettings,
    ClientSettings,
    NodeAgentSettings,
    QueueManagerSettings,
    WorkerSettings,
    _Base,
    load_settings,
    read_api_key_file,
)
from alpcrun.errors import ConfigError
from alpcrun.logs import setup_logging
from alpcrun.proto import (
    AdminStub,
    GetStatsRequest,
    ListSessionsRequest,
    ListSessionsResponse,
    ListWorkersRequest,
    ListWorkersResponse,
)
from alpcrun.proto.channel import open_channel
from alpcrun.proto.status import from_rpc_error
from alpcrun.tls import client_tls


def run(args: argparse.Namespace) -> int:
    """Dispatch to the subcommand named by ``args.command``."""
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "queue-manager": queue_manager,
        "local": local,
        "demo": demo,
        "status": status,
        "config": config_show,
        "dlq": dlq.run,
        "payload": payload_cli.run,
        "scaler": scaler_cli.run,
        "central-cache": cache.central_cache,
        "node-agent": cache.node_agent,
    }
    return handlers[args.command](args)


async def _until_signalled(main: Awaitable[Any], on_signal: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await main
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def queue_manager(args: argparse.Namespace) -> int:
    """``alpcrun queue-manager``: serve until SIGTERM/SIGINT, then stop gracefully (exit 0)."""
    from alpcrun.queue_manager.app import QueueManager

    settings = load_settings(
        QueueManagerSettings,
        config_file=args.config,
        log_level=args.log_level,
        log_json=args.log_json,
        api_key=args.api_key,
        api_key_file=args.api_key_file,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        auth_disabled=args.auth_disabled,
        scheduler_interval=args.scheduler_interval,
        worker_timeout=args.worker_timeout,
        journal=args.journal,
        journal_salvage=args.journal_salvage,
        shutdown_grace=args.shutdown_grace,
        cpu_affinity=args.cpu_affinity,
        **tls_flags.overrides(args),
    )
    setup_logging(settings.log_level, json_lines=settings.log_json)
    apply_setting(settings.cpu_affinity, env_prefix="ALPCRUNCH_QM_")

    async def serve() -> None:
        qm = QueueManager(settings=settings)
        await qm.start()
        stopping: list[asyncio.Task[None]] = []

        def on_signal() -> None:
            if not stopping:
                stopping.append(asyncio.ensure_future(qm.stop()))

        await _until_signalled(qm.wait_stopped(), on_signal)

    asyncio.run(serve())
    return 0


def _local_grid(
    args: argparse.Namespace, worker_spec: str | None, worker_log_level: str = "info"
) -> Any:
    from alpcrun.local import DEMO_WORKER, LocalGrid

    return LocalGrid(
        workers=args.workers,
        worker_spec=worker_spec or DEMO_WORKER,
        port=args.port,
        api_key=_local_key(args),
        concurrency=args.concurrency,
        worker_log_level=worker_log_level,
    )


def _local_key(args: argparse.Namespace) -> str | None:
    """The key ``alpcrun local`` and ``demo`` give their grid (None: a random one)."""
    if args.api_key and args.api_key_file:
        raise ConfigError("give --api-key or --api-key-file, not both")
    return read_api_key_file(args.api_key_file) if args.api_key_file else args.api_key


def local(args: argparse.Namespace) -> int:
    """``alpcrun local``: a grid on loopback until Ctrl-C; no process is left behind."""
    setup_logging("info")

    async def main() -> None:
        done = asyncio.Event()

        async def serve() -> None:
            async with _local_grid(args, args.worker) as grid:
                print(f"alpcrun local grid: queue manager {grid.address}, {args.workers} workers")
                print(f"  export ALPCRUNCH_CLIENT_QUEUE_MANAGER={grid.address}")
                print(f"  export ALPCRUNCH_API_KEY={grid.api_key}")
                print(f"  export ALPCRUNCH_CLIENT_CENTRAL_CACHE={grid.central_cache.address}")
                print(f"  metrics: http://127.0.0.1:{grid.queue_manager.metrics_port}/metrics")
                print("Press Ctrl-C to stop.", flush=True)
                await done.wait()

        # Handlers go in before the grid starts, so a signal during start-up still cleans up.
        await _until_signalled(serve(), done.set)

    asyncio.run(main())
    return 0


def _cancel(task: asyncio.Future[Any]) -> None:
    task.cancel()


def demo(args: argparse.Namespace) -> int:
    """``alpcrun demo``: Monte Carlo pricing of an option portfolio on a local grid."""
    from alpcrun.demo.run import format_summary, run_demo

    setup_logging("warning")

    async def main() -> int:
        print(
            f"Starting a local grid: queue manager + {args.workers} worker processes ...",
            file=sys.stderr,
        )
        async with _local_grid(args, None, "warning") as grid:
            task = asyncio.ensure_future(
                run_demo(
                    grid.address,
                    grid.api_key,
                    options=args.options,
                    chunks_per_option=args.chunks,
                    paths_per_chunk=args.paths,
                    central_cache=grid.central_cache.address,
                )
            )
            await _until_signalled(asyncio.wait({task}), lambda: _cancel(task))
            if task.cancelled():
                print("\ninterrupted", file=sys.stderr)
                return 130
            print(format_summary(task.result()))
        return 0

    return asyncio.run(main())


def status(args: argparse.Namespace) -> int:
    """``alpcrun status``: sessions, workers and queue depths from the admin API."""
    settings = load_settings(
        ClientSettings,
        config_file=args.config,
        api_key=args.api_key,
        api_key_file=args.api_key_file,
        queue_manager=args.queue_manager,
        **tls_flags.overrides(args),
    )
    metadata = (("api_key", settings.api_key.get_secret_value()),) if settings.api_key else ()
    tls = client_tls(settings)

    async def fetch() -> tuple[Any, Any, Any]:
        async with open_channel(settings.queue_manager, tls=tls) as channel:
            stub = AdminStub(channel)
            try:
                stats = await stub.GetStats(GetStatsRequest(), metadata=metadata, timeout=10)
                sessions = ListSessionsResponse()
                request = ListSessionsRequest(
                    include_closed=args.all, tags=args.tag, app_id=args.app
                )
                while True:  # one page at a time, until the last
                    page = await stub.ListSessions(request, metadata=metadata, timeout=10)
                    sessions.sessions.extend(page.sessions)
                    if not page.next_page_token:
                        break
                    request.page_token = page.next_page_token
                workers = ListWorkersResponse()
                worker_request = ListWorkersRequest()
                while True:
                    wpage = await stub.ListWorkers(worker_request, metadata=metadata, timeout=10)
                    workers.workers.extend(wpage.workers)
                    if not wpage.next_page_token:
                        break
                    worker_request.page_token = wpage.next_page_token
                return stats, sessions, workers
            except grpc.RpcError as exc:
                raise from_rpc_error(exc) from None

    stats, sessions, workers = asyncio.run(fetch())
    if args.json:
        from google.protobuf.json_format import MessageToDict

        print(
            json.dumps(
                {
                    k: MessageToDict(v)
                    for k, v in (("stats", stats), ("sessions", sessions), ("workers", workers))
                },
                indent=2,
            )
        )
        return 0
    _print_status(settings.queue_manager, stats, sessions, workers)
    return 0


_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
"""Characters a terminal must not receive raw from the grid: controls (ESC, NUL, ...), format
characters (bidi overrides such as U+202E, zero-width ones) and line/paragraph separators."""


def shown(text: str) -> str:
    r"""``text`` safe for a terminal: control, format and separator characters escaped.

    ESC becomes ``\x1b``, RLO ``\u202e``; when anything is escaped, so is a backslash, so
    the output cannot be mistaken for the name it escapes. Printable text comes back as it is.
    """
    if text.isprintable():  # C-speed common case (also False for spaces such as U+00A0)
        return text
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif unicodedata.category(char) in _UNSAFE_CATEGORIES:
            code = ord(char)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            else:
                out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


def _labels(items: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(items)) or "-"


def _print_status(address: str, stats: Any, sessions: Any, workers: Any) -> None:
    """The human report of ``alpcrun status``: every name from the grid goes through shown."""
    print(
        f"alpcrun {shown(stats.version)} at {address}: up {stats.uptime_seconds:.0f}s, "
        f"{stats.workers} workers ({stats.idle_workers} idle), {stats.pending_tasks} tasks queued, "
        f"{stats.completed_tasks} completed, {stats.failed_tasks} failed, "
        f"{stats.preemptions} preemptions"
    )
    print(
        f"\n{'SESSION':28} {'APP':14} {'PRIO':>4} {'QUEUED':>8} {'INFLIGHT':>8} {'DONE':>9} "
        f"{'FAILED':>7} {'WORKERS':>7} {'WANTED':>6} {'PREEMPTED':>9} TAGS"
    )
    waiting = []
    for info in sessions.sessions:
        s, st = info.session, info.stats
        sid = shown(s.id)
        print(
            f"{sid:28} {shown(s.attributes.app_id)[:14]:14} {s.attributes.priority:>4} "
            f"{st.pending_tasks:>8} "
            f"{st.inflight_tasks:>8} {st.completed_tasks:>9} {st.failed_tasks:>7} "
            f"{st.bound_workers:>7} {st.wanted_workers:>6} {st.preemptions:>9} "
            f"{shown(','.join(s.attributes.tags)) or '-'}"
        )
        if st.waiting_code:
            waiting.append(f"{sid:28} {shown(st.waiting_code):18} {shown(st.waiting_reason)}")
    if waiting:
        print(f"\n{'WAITING SESSION':28} {'WHY':18} DETAIL")
        print("\n".join(waiting))
    print(
        f"\n{'WORKER':28} {'NODE':16} {'POD':16} {'STATE':8} {'SESSION':28} {'INFLIGHT':>8} LABELS"
    )
    for w in workers.workers:
        state = {1: "idle", 2: "bound", 3: "draining"}.get(w.state, "?")
        print(
            f"{shown(w.id):28} {shown(w.node)[:16]:16} {shown(w.pod)[:16]:16} {state:8} "
            f"{shown(w.session_id) or '-':28} {w.inflight_batches:>8} "
            f"{shown(_labels(w.labels.items()))}"
        )


def config_show(args: argparse.Namespace) -> int:
    """``alpcrun config show``: the effective settings (flags > env > file > defaults)."""
    classes: dict[str, type[_Base]] = {
        "queue-manager": QueueManagerSettings,
        "worker": WorkerSettings,
        "client": ClientSettings,
        "central-cache": CentralCacheSettings,
        "node-agent": NodeAgentSettings,
    }
    cls = classes[args.process]
    settings = load_settings(
        cls,
        config_file=args.config,
        log_level=args.log_level,
        log_json=args.log_json,
        api_key=args.api_key,
        api_key_file=args.api_key_file,
    )
    print(yaml.safe_dump({cls.section: settings.masked()}, sort_keys=False), end="")
    return 0
