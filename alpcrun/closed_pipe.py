"""Ending a command quietly when its reader closes the pipe (``alpcrun status | head -1``).

Python ignores SIGPIPE, so a write into a pipe nobody reads any more raises
``BrokenPipeError``; the command entry points catch it, call :func:`closed_stdout` and exit
with :data:`EXIT_BROKEN_PIPE` instead of printing a traceback.
"""

from __future__ import annotations

import os
import sys

EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: the status a shell reports for a command stopped by a closed pipe."""


def closed_stdout() -> int:
    """Point stdout at the null device and return :data:`EXIT_BROKEN_PIPE`.

    What is still buffered for stdout is then flushed there when the interpreter exits,
    instead of failing a second time with an "Exception ignored" message.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced stdout (tests): nothing to redirect
        return EXIT_BROKEN_PIPE
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE
