"""``alpcrun dlq``: list, inspect, resubmit and discard a session's dead letters.

Exit codes: 0 done; 1 the call failed, or a named task id was not a dead letter; 2 usage
(bad flags, or resubmit/discard without task ids and without ``--all``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from alpcrun.errors import AlpcrunError
from alpcrun.tls_flags import add_client_flags
from alpcrun.tls_flags import overrides as tls_overrides

if TYPE_CHECKING:
    from alpcrun.client import AsyncDeadLetters, DeadLetterInfo

T = TypeVar("T")
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
PREVIEW_CHARS = 80
"""Characters of a UTF-8 payload shown by ``inspect``."""
PREVIEW_BYTES = 32
"""Bytes of a binary payload shown (as hex) by ``inspect``."""

_DESCRIPTION = """\
A dead letter is a task that failed for good: it used up the session's max_attempts, or its
handler raised NonRetryableError. The queue manager keeps its input payload and last error
until the letter is resubmitted or discarded (or the session is reaped).

reason codes: error (the handler raised), worker_lost (its worker disconnected or stopped
heartbeating), timeout (it ran past task_timeout), non_retryable (never retried).

exit codes: 0 done; 1 failed, or a named task id is not a dead letter; 2 usage.
"""

_EPILOG = """\
examples:
  alpcrun dlq list SESSION                          the first 100 letters, oldest first
  alpcrun dlq list SESSION --after TASK_ID --json   the next page, as JSON
  alpcrun dlq inspect SESSION TASK_ID --payload-out in.bin
  alpcrun dlq resubmit SESSION TASK_ID TASK_ID      queue two tasks again
  alpcrun dlq resubmit SESSION --all --reset-attempts
  alpcrun dlq discard SESSION --all                 drop every letter of the session
"""


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add the ``dlq`` command and its actions to the ``alpcrun`` parser.

    Args:
        sub: The subparsers of the top-level parser.
        common: Adds the options every command takes (config file, logging, API key).
    """
    dlq = sub.add_parser(
        "dlq",
        help="list, inspect, resubmit or discard a session's dead letters",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)

    def action(name: str, text: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=text, description=text)
        common(p)
        p.add_argument("--queue-manager", help="queue manager address (default localhost:1337)")
        add_client_flags(p)
        p.add_argument(
            "--timeout",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help="how long to wait for the queue manager (default 10)",
        )
        p.add_argument("session", metavar="SESSION", help="the session id")
        return p

    ls = action("list", "list dead letters, oldest first, one page at a time")
    ls.add_argument(
        "--limit", type=int, default=100, metavar="N", help="letters per page (default 100)"
    )
    ls.add_argument(
        "--after", default="", metavar="TASK_ID", help="start after this task id (the next page)"
    )
    ls.add_argument("--json", action="store_true", help="print JSON")

    ins = action("inspect", "show one dead letter: its error, attempts and payload")
    ins.add_argument("task_id", metavar="TASK_ID", help="the dead-lettered task's id")
    ins.add_argument("--payload-out", metavar="FILE", help="write the task's input payload to FILE")

    res = action("resubmit", "queue dead letters again (they leave the dead-letter queue)")
    res.add_argument("task_ids", nargs="*", metavar="TASK_ID", help="the tasks to resubmit")
    res.add_argument("--all", action="store_true", help="resubmit every dead letter of the session")
    res.add_argument(
        "--reset-attempts",
        action="store_true",
        help="give each task max_attempts again (default: one more attempt at least)",
    )

    dis = action("discard", "drop dead letters for good")
    dis.add_argument("task_ids", nargs="*", metavar="TASK_ID", help="the tasks to discard")
    dis.add_argument("--all", action="store_true", help="discard every dead letter of the session")


def run(args: argparse.Namespace) -> int:
    """Run ``alpcrun dlq ACTION``; returns the exit code."""
    prog = f"alpcrun dlq {args.dlq_command}"
    if args.dlq_command in ("resubmit", "discard"):
        if args.task_ids and args.all:
            print(f"{prog}: error: give task ids or --all, not both", file=sys.stderr)
            return EXIT_USAGE
        if not args.task_ids and not args.all:
            print(
                f"{prog}: error: name the task ids, or pass --all to {args.dlq_command} "
                "every dead letter of the session",
                file=sys.stderr,
            )
            return EXIT_USAGE
    if args.dlq_command == "list" and not 1 <= args.limit <= 10_000:
        print(f"{prog}: error: --limit must be 1..10000", file=sys.stderr)
        return EXIT_USAGE
    actions: dict[str, Callable[[argparse.Namespace], int]] = {
        "list": _list,
        "inspect": _inspect,
        "resubmit": _resubmit,
        "discard": _discard,
    }
    try:
        return actions[args.dlq_command](args)
    except (AlpcrunError, OSError) as exc:  # OSError: --payload-out could not be written
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _call(args: argparse.Namespace, request: Callable[[AsyncDeadLetters], Awaitable[T]]) -> T:
    """Make one request on the session's dead-letter queue and return its answer."""
    from alpcrun.client import AsyncClient, AsyncDeadLetters
    from alpcrun.config import ClientSettings, load_settings
    from alpcrun.logs import setup_logging

    settings = load_settings(
        ClientSettings,
        config_file=args.config,
        log_level=args.log_level,
        log_json=args.log_json,
        api_key=args.api_key,
        api_key_file=args.api_key_file,
        queue_manager=args.queue_manager,
        reconnect_timeout=args.timeout,
        **tls_overrides(args),
    )
    setup_logging(settings.log_level, json_lines=settings.log_json)

    async def main() -> T:
        async with AsyncClient(settings=settings) as client:
            return await request(AsyncDeadLetters.for_session(client, args.session))

    return asyncio.run(main())


def _letter_dict(letter: DeadLetterInfo) -> dict[str, Any]:
    return {
        "task_id": letter.task_id,
        "batch_id": letter.batch_id,
        "reason": letter.reason,
        "error_type": letter.error_type,
        "message": letter.message,
        "attempts": letter.attempts,
        "dead_at": letter.dead_at.isoformat(),
    }


def _list(args: argparse.Namespace) -> int:
    page = _call(args, lambda dlq: dlq.list(limit=args.limit, after=args.after))
    if args.json:
        out = {
            "session_id": args.session,
            "total": page.total,
            "next_after": page.next_after,
            "letters": [_letter_dict(letter) for letter in page.letters],
        }
        print(json.dumps(out, indent=2))
        return EXIT_OK
    if not page.letters:
        after = f" after {args.after}" if args.after else ""
        print(f"no dead letters in session {args.session}{after} ({page.total} in all)")
        return EXIT_OK
    width = max(4, *(len(letter.task_id) for letter in page.letters))
    print(
        f"{'TASK':{width}} {'REASON':13} {'TYPE':20} {'ATTEMPTS':>8} {'DEAD AT (UTC)':19}  MESSAGE"
    )
    for letter in page.letters:
        message = letter.message.splitlines()[0] if letter.message else ""
        print(
            f"{letter.task_id:{width}} {letter.reason:13} {letter.error_type[:20]:20} "
            f"{letter.attempts:>8} {letter.dead_at:%Y-%m-%d %H:%M:%S}  {message[:60]}"
        )
    shown = len(page.letters)
    print(f"\n{shown} of {page.total} dead letters of session {args.session}", end="")
    print(f"; next page: --after {page.next_after}" if page.next_after else "")
    return EXIT_OK


def preview(payload: bytes) -> str:
    """A short, printable description of a payload: its size and start, as text or hex."""
    size = f"{len(payload)} bytes"
    if not payload:
        return size
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\n\r\t" for c in text):
        more = "..." if len(text) > PREVIEW_CHARS else ""
        return f"{size}, utf-8: {text[:PREVIEW_CHARS]!r}{more}"
    more = " ..." if len(payload) > PREVIEW_BYTES else ""
    return f"{size}, hex: {payload[:PREVIEW_BYTES].hex(' ')}{more}"


def _inspect(args: argparse.Namespace) -> int:
    letter = _call(args, lambda dlq: dlq.get(args.task_id))
    payload = letter.payload or b""
    message = "\n           ".join(letter.message.splitlines()) or "-"
    rows = (
        ("task", letter.task_id),
        ("session", letter.session_id),
        ("batch", letter.batch_id),
        ("reason", letter.reason),
        ("type", letter.error_type or "-"),
        ("message", message),
        ("attempts", str(letter.attempts)),
        ("dead at", letter.dead_at.isoformat()),
        ("payload", preview(payload)),
    )
    for name, value in rows:
        print(f"{name:10} {value}")
    if args.payload_out:
        Path(args.payload_out).write_bytes(payload)
        print(f"payload written to {args.payload_out}")
    return EXIT_OK


def _report_missing(args: argparse.Namespace, missing: tuple[str, ...]) -> int:
    if not missing:
        return EXIT_OK
    print(
        f"alpcrun dlq {args.dlq_command}: error: not dead letters of session {args.session}: "
        + ", ".join(missing),
        file=sys.stderr,
    )
    return EXIT_ERROR


def _resubmit(args: argparse.Namespace) -> int:
    ids = None if args.all else args.task_ids
    outcome = _call(args, lambda dlq: dlq.resubmit(ids, reset_attempts=args.reset_attempts))
    reset = " (attempts reset)" if args.reset_attempts else ""
    print(f"resubmitted {outcome.count} dead letters of session {args.session}{reset}")
    return _report_missing(args, outcome.not_found)


def _discard(args: argparse.Namespace) -> int:
    outcome = _call(args, lambda dlq: dlq.discard(None if args.all else args.task_ids))
    print(f"discarded {outcome.count} dead letters of session {args.session}")
    return _report_missing(args, outcome.not_found)
