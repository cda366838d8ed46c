"""``python -m workers_sdk MODULE:CLASS``: load a Worker class, build settings, run until signalled.

Settings come from flags, then ``ALPCRUNCH_WORKER_*`` environment variables, then the YAML
file (``--config`` or ``ALPCRUNCH_CONFIG``).

Stopping: SIGTERM or SIGINT starts a graceful drain (report DRAINING, take no new batch,
finish and return the batches held, exit 0). A second SIGTERM or SIGINT kills the process
at once, by the signal itself (exit status 128 + signal number in a shell), even when a
handler blocks the event loop. With ``ALPCRUNCH_PARENT_PID`` set (as ``alpcrun local``
does) the worker receives SIGTERM when that parent dies, so it never outlives it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import signal
import sys
from types import FrameType
from typing import Any

from alpcrun.closed_pipe import closed_stdout
from alpcrun.config import WorkerSettings, load_settings
from alpcrun.errors import AlpcrunError, ConfigError
from alpcrun.lifeline import exit_with_parent_from_env
from alpcrun.logs import setup_logging
from alpcrun.tls_flags import add_client_flags
from alpcrun.tls_flags import overrides as tls_overrides
from workers_sdk.runner import WorkerRunner
from workers_sdk.worker import Worker

logger = logging.getLogger("workers_sdk")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def load_worker_class(spec: str) -> type[Worker]:
    """Import ``MODULE:CLASS`` and check that it names a concrete ``Worker`` subclass.

    The current directory is put on ``sys.path`` first, so a module of the project being run
    is found.

    Raises:
        alpcrun.errors.ConfigError: The spec is malformed, the module or class is missing, or
            the class is not a concrete ``Worker`` subclass.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"expected MODULE:CLASS (e.g. mymodule:MyWorker), got {spec!r}")
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import worker module {module_name!r}: {exc}") from exc
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, Worker)):
        raise ConfigError(f"{spec} is not a workers_sdk.Worker subclass")
    if inspect.isabstract(obj):
        raise ConfigError(f"{spec} is abstract: it does not implement handle()")
    return obj


def run_worker(worker: type[Worker] | Worker, settings: WorkerSettings) -> None:
    """Run a worker until SIGTERM/SIGINT, then drain and return (blocking).

    Args:
        worker: A ``Worker`` subclass (instantiated with no arguments) or an instance.
        settings: The worker settings (see :func:`alpcrun.config.load_settings`).

    Raises:
        alpcrun.errors.AuthError: The queue manager refused the API key.
    """
    instance = worker() if isinstance(worker, type) else worker
    asyncio.run(_run_with_signals(WorkerRunner(instance, settings)))


async def _run_with_signals(runner: WorkerRunner) -> None:
    """Run ``runner`` with SIGTERM/SIGINT wired to a drain, and a second signal to a kill.

    The handlers are plain ``signal.signal`` ones, not ``loop.add_signal_handler``: they run
    in the main thread between two bytecodes, so a second signal kills the process even
    while an async ``handle()`` blocks the event loop.
    """
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)

    def drain(signum: int) -> None:
        name = signal.Signals(signum).name
        logger.info("%s: draining; send SIGTERM or SIGINT again to exit at once", name)
        runner.request_stop()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # The next SIGTERM/SIGINT takes the default action: the kernel ends the process.
        for other in signals:
            signal.signal(other, signal.SIG_DFL)
        loop.call_soon_threadsafe(drain, signum)

    previous: dict[signal.Signals, Any] = {}
    # Outside the main thread signal.signal raises: the embedding program handles signals.
    with contextlib.suppress(ValueError):
        for sig in signals:
            previous[sig] = signal.signal(sig, on_signal)
    try:
        await runner.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _parse_labels(items: list[str]) -> dict[str, str] | None:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--label takes KEY=VALUE, got {item!r}")
        labels[key] = value
    return labels or None


_EPILOG = """\
stopping:
  SIGTERM or SIGINT drains: report DRAINING, finish the batches held, send their
  results, exit 0 (within drain_timeout, default 30s). A second signal ends the
  process at once. With ALPCRUNCH_PARENT_PID set, the worker drains when that
  parent process dies.

exit status:
  0 drained and stopped, 1 worker failed (e.g. API key refused), 2 usage or config error,
  141 stdout was a pipe its reader had closed
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers_sdk",
        description="Run an alpcrun worker: connect to the queue manager and process tasks.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("worker", metavar="MODULE:CLASS", help="the Worker subclass to run")
    parser.add_argument("--queue-manager", metavar="ADDR", help="queue manager host:port")
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help="API key (or ALPCRUNCH_API_KEY); other local users can read a key given here in "
        "the process list, so prefer --api-key-file or the environment",
    )
    parser.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="read the API key from FILE once at start, trailing newline dropped (or "
        "ALPCRUNCH_API_KEY_FILE)",
    )
    parser.add_argument("--concurrency", type=int, metavar="N", help="batches processed at once")
    parser.add_argument("--threads", type=int, metavar="N", help="threads for a sync handle()")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="worker label matched by session worker selectors (repeatable)",
    )
    add_client_flags(parser, "ALPCRUNCH_WORKER_")
    parser.add_argument("--config", metavar="FILE", help="YAML config file")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m workers_sdk``; returns the process exit code.

    Returns:
        0 after a clean drain, 1 when the worker failed (e.g. refused API key), 2 for a
        usage or configuration error (bad flag, config file, TLS file, or MODULE:CLASS),
        141 when stdout was a pipe its reader had closed (quietly, without a traceback).
    """
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a write still buffered fails here, not at interpreter exit
    except BrokenPipeError:
        return closed_stdout()


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    exit_with_parent_from_env()
    try:
        settings = load_settings(
            WorkerSettings,
            config_file=args.config,
            queue_manager=args.queue_manager,
            api_key=args.api_key,
            api_key_file=args.api_key_file,
            concurrency=args.concurrency,
            threads=args.threads,
            labels=_parse_labels(args.label),
            log_level=args.log_level,
            **tls_overrides(args),
        )
        setup_logging(settings.log_level, json_lines=settings.log_json)
        worker_cls = load_worker_class(args.worker)
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    logger.info("starting %s against %s", args.worker, settings.queue_manager)
    try:
        run_worker(worker_cls, settings)
    except ConfigError as exc:  # e.g. a TLS file, read when the worker starts
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except AlpcrunError as exc:
        logger.error("worker failed: %s: %s", type(exc).__name__, exc)
        return EXIT_ERROR
    return EXIT_OK


__all__ = ["load_worker_class", "main", "run_worker"]
