"""``alpcrun`` entry point: parses the command line and dispatches to one subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import alpcrun.cli.payload as payload_cli
import alpcrun.cli.scaler as scaler_cli
from alpcrun import __version__, tls_flags
from alpcrun.cli import cache, dlq
from alpcrun.cli.cache import add_cpu_affinity_flag
from alpcrun.closed_pipe import closed_stdout
from alpcrun.errors import AlpcrunError
from alpcrun.lifeline import exit_with_parent_from_env

_EPILOG = """\
examples:
  alpcrun demo                               run the Monte Carlo demo on a local grid
  alpcrun local --workers 4                  start a local grid and keep it running
  alpcrun queue-manager --api-key-file F     run the queue manager (port 1337)
  alpcrun central-cache --api-key-file F     run the central shared-data cache (port 2337)
  alpcrun node-agent --api-key-file F        run the node-local shared-data cache (port 3337)
  alpcrun worker mymodule:MyWorker           run a worker (see workers_sdk.Worker)
  alpcrun status                             show sessions, workers and queue depths
  alpcrun dlq list SESSION                   list a session's dead letters (failed tasks)
  alpcrun scaler --deployment NAME          scale a worker Deployment to the workers wanted
  alpcrun config show --process worker       print the effective configuration
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML config file (or ALPCRUNCH_CONFIG)")
    p.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="logging level"
    )
    p.add_argument("--log-json", action="store_true", default=None, help="log JSON lines")
    add_api_key_flags(p, "API key (or ALPCRUNCH_API_KEY)")


def add_api_key_flags(p: argparse.ArgumentParser, text: str) -> None:
    """``--api-key`` and ``--api-key-file``; the help says why the file is better."""
    p.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"{text}; other local users can read a key given here in the process list, so "
        "prefer --api-key-file or the environment",
    )
    p.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="read the API key from FILE once at start, trailing newline dropped (or "
        "ALPCRUNCH_API_KEY_FILE)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for --help tests)."""
    parser = argparse.ArgumentParser(
        prog="alpcrun",
        description="alpcrun: a Kubernetes-native task grid.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"alpcrun {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    qm = sub.add_parser("queue-manager", help="run the queue manager")
    _common(qm)
    qm.add_argument("--host", help="listen address (default 0.0.0.0)")
    qm.add_argument("--port", type=int, help="gRPC port (default 1337; 0 picks one)")
    qm.add_argument("--metrics-port", type=int, help="Prometheus port (default 9337; 0 picks one)")
    qm.add_argument(
        "--auth-disabled", action="store_true", default=None, help="accept calls without a key"
    )
    qm.add_argument("--scheduler-interval", help="scheduler tick, e.g. 1s")
    qm.add_argument("--worker-timeout", help="heartbeat age after which a worker is lost, e.g. 60s")
    qm.add_argument(
        "--journal",
        metavar="FILE",
        help="SQLite journal: state survives a crash and is recovered on start "
        "(or ALPCRUNCH_QM_JOURNAL; default: memory only); locked while in use, and a damaged "
        "one is refused",
    )
    qm.add_argument(
        "--journal-salvage",
        action="store_true",
        default=None,
        help="start on a damaged journal with what can still be read: the damaged files are "
        "kept aside and every loss is logged (or ALPCRUNCH_QM_JOURNAL_SALVAGE=true)",
    )
    qm.add_argument("--shutdown-grace", help="on SIGTERM, time in-flight work may take, e.g. 10s")
    add_cpu_affinity_flag(qm)
    tls_flags.add_server_flags(qm, "ALPCRUNCH_QM_")

    wk = sub.add_parser(
        "worker", help="run a worker: alpcrun worker MODULE:CLASS [options]", add_help=False
    )
    wk.add_argument("args", nargs=argparse.REMAINDER, help="arguments of python -m workers_sdk")

    for name, text in (
        ("local", "start a local grid and keep it running"),
        ("demo", "run the demo"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
        p.add_argument(
            "--concurrency", type=int, default=2, help="batches per worker at once (default 2)"
        )
        p.add_argument(
            "--port", type=int, default=1337 if name == "local" else 0, help="queue manager port"
        )
        add_api_key_flags(p, "API key of the grid (default: a random one)")
        if name == "local":
            p.add_argument(
                "--worker", default=None, help="MODULE:CLASS of the workers (default: demo worker)"
            )
        else:
            p.add_argument(
                "--options", type=int, default=100, help="options in the portfolio (default 100)"
            )
            p.add_argument("--chunks", type=int, default=100, help="tasks per option (default 100)")
            p.add_argument(
                "--paths", type=int, default=2000, help="Monte Carlo paths per task (default 2000)"
            )

    st = sub.add_parser("status", help="show sessions, workers and queue depths")
    _common(st)
    st.add_argument("--queue-manager", help="queue manager address (default localhost:1337)")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.add_argument(
        "--tag", action="append", default=[], help="only sessions with this tag (repeatable)"
    )
    st.add_argument("--app", default="", help="only sessions of this app id")
    st.add_argument("--all", action="store_true", help="include closed sessions still retained")
    tls_flags.add_client_flags(st)

    dlq.add_parser(sub, _common)
    payload_cli.add_parser(sub, _common)
    scaler_cli.add_parser(sub, _common)
    cache.add_parsers(sub, _common)

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = cfg_sub.add_parser("show", help="print the effective configuration (secrets masked)")
    _common(show)
    show.add_argument(
        "--process",
        choices=["queue-manager", "worker", "client", "central-cache", "node-agent"],
        default="queue-manager",
        help="whose settings to show (default queue-manager)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``alpcrun`` command; returns the exit code.

    Output into a pipe whose reader has gone (``alpcrun status | head -1``) ends the command
    quietly with exit status 141 (128 + SIGPIPE, what a shell reports for a command a closed
    pipe stopped), without a ``BrokenPipeError`` traceback.
    """
    exit_with_parent_from_env()
    try:
        try:
            args_list = list(sys.argv[1:] if argv is None else argv)
            if args_list[:1] == ["worker"]:
                from workers_sdk.cli import main as worker_main

                return worker_main(args_list[1:])
            args = build_parser().parse_args(args_list)
            from alpcrun.cli import commands

            try:
                return commands.run(args)
            except AlpcrunError as exc:
                print(f"alpcrun: error: {exc}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                return 130
        finally:
            sys.stdout.flush()  # a write still buffered fails here, not at interpreter exit
    except BrokenPipeError:
        return closed_stdout()


if __name__ == "__main__":
    sys.exit(main())
