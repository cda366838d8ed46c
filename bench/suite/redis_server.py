"""A private ``redis-server`` for one driver run, and the process handling the drivers share.

Standard library only (imported by the Celery, Taskiq and arq drivers in their own virtual
environments). The server listens on a free loopback port, keeps nothing on disk
(``--save '' --appendonly no``, its working directory a temporary one) and is stopped, with
everything else a driver started, on every way out: normal return, exception, SIGTERM, SIGINT
or SIGHUP (turned into :class:`SystemExit` by :func:`exit_on_signals`), and the driver's own
death (children get SIGTERM through ``PR_SET_PDEATHSIG`` on Linux).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType

_USUAL_PATHS = ("/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/sbin/redis-server")
_PR_SET_PDEATHSIG = 1
try:  # resolved here, not in the forked child (no dlopen between fork and exec)
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):
    _PRCTL = None


def _die_with_parent() -> None:
    """In a child before exec: receive SIGTERM when the process that started it dies."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def start_group(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new process group (stopped with :func:`stop_group`)."""
    preexec = _die_with_parent if _PRCTL is not None else None
    return subprocess.Popen(
        list(argv),
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL if stdout is None else stdout,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=preexec,
    )


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    return _signal_group(pgid, 0)


def stop_group(proc: subprocess.Popen[bytes] | None, *, grace: float = 5.0) -> None:
    """Stop a process started by :func:`start_group` and everything in its process group.

    SIGTERM to the group, up to ``grace`` seconds for it to go, then SIGKILL to whatever is left.
    """
    if proc is None:
        return
    pgid = proc.pid  # the leader of its own session and group
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(pgid):
            break
        time.sleep(0.05)
    else:
        _signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)
    # children that outlived their leader are still in the group
    if _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)


def exit_on_signals() -> None:
    """Turn SIGTERM and SIGHUP into ``SystemExit`` (SIGINT already raises) so ``finally`` runs."""

    def _exit(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit)


def _bulk_end(reply: bytes) -> int:
    """Length of a complete RESP bulk-string reply whose header is in ``reply``."""
    header, _, _ = reply.partition(b"\r\n")
    if not header.startswith(b"$"):
        return len(reply)
    return len(header) + 2 + max(0, int(header[1:])) + 2


def ignore_signals() -> None:
    """While cleaning up: a second SIGTERM, SIGINT or SIGHUP must not cut the cleanup short."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_version(executable: str = "redis-server") -> str:
    """The version of ``redis-server`` (``redis-server --version``), or ``unknown``."""
    try:
        out = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return "unknown"
    match = re.search(r"v=(\S+)", out)
    return match.group(1) if match else "unknown"


class RedisServer:
    """``redis-server`` on a free loopback port, no persistence; a context manager.

    >>> with RedisServer() as server:
    ...     url = server.url  # redis://127.0.0.1:<port>/0
    """

    def __init__(
        self,
        executable: str | None = None,
        *,
        options: dict[str, str] | None = None,
        start_timeout: float = 20.0,
    ) -> None:
        self.options = dict(options or {})
        """More ``redis.conf`` settings (name without dashes: value)."""
        self.executable = (
            executable
            or shutil.which("redis-server")
            or next((p for p in _USUAL_PATHS if os.path.exists(p)), "redis-server")
        )
        self.start_timeout = start_timeout
        self.port = 0
        self.version = "unknown"
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.version = redis_version(self.executable)
        self._dir = tempfile.mkdtemp(prefix="bench-redis-")
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            self.proc = start_group([self.executable, *self._options(self._dir)])
            if self._wait_ready():
                return self
            stop_group(self.proc, grace=1.0)
            self.proc = None
        self.stop()
        raise RuntimeError(f"redis-server did not start (see {self.executable})")

    def _options(self, workdir: str) -> list[str]:
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",  # no RDB snapshots
            "appendonly": "no",  # no AOF
            "dir": workdir,
            "daemonize": "no",
            "protected-mode": "yes",
            "loglevel": "warning",
            "logfile": os.path.join(workdir, "redis.log"),
            "maxclients": "10000",
            **self.options,
        }
        return [word for name, value in options.items() for word in (f"--{name}", value)]

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            if self.command("PING") == "+PONG":
                return True
            time.sleep(0.05)
        return False

    def command(self, *words: str, timeout: float = 2.0) -> str | None:
        """Send one command (RESP array of bulk strings), return the first reply line or None."""
        parts = [f"*{len(words)}\r\n".encode()]
        for word in words:
            data = word.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(b"".join(parts))
                reply = b""
                while not reply.endswith(b"\r\n"):
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
        except OSError:
            return None
        return reply.split(b"\r\n", 1)[0].decode(errors="replace")

    def info(self) -> dict[str, str]:
        """``INFO`` as a dict (empty when the server does not answer)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as sock:
                sock.sendall(b"*1\r\n$4\r\nINFO\r\n")
                reply = b""
                while b"\r\n" not in reply or len(reply) < _bulk_end(reply):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
        except OSError:
            return {}
        lines = reply.decode(errors="replace").split("\r\n")[1:]
        return dict(line.split(":", 1) for line in lines if ":" in line and line[0] != "#")

    def summary(self) -> str:
        """Keys left, peak memory and connections, for the driver's log at the end of a run."""
        info = self.info()
        return (
            f"redis-server: {self.integer('DBSIZE')} keys left, used_memory_peak "
            f"{info.get('used_memory_peak_human', '?')}, connections "
            f"{info.get('total_connections_received', '?')}"
        )

    def integer(self, *words: str) -> int:
        """A command whose reply is an integer (``SCARD``, ``DBSIZE``...); -1 on failure."""
        reply = self.command(*words)
        if reply is None or not reply.startswith(":"):
            return -1
        return int(reply[1:])

    def wait_members(
        self,
        key: str,
        count: int,
        procs: Sequence[subprocess.Popen[bytes]],
        *,
        timeout: float = 60.0,
    ) -> None:
        """Wait until the set ``key`` has ``count`` members (workers add themselves when ready).

        Raises ``RuntimeError`` when a process in ``procs`` exits first or on timeout.
        """
        deadline = time.monotonic() + timeout
        while self.integer("SCARD", key) < count:
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker {proc.args!r} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.integer('SCARD', key)} of {count} workers ready")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory."""
        proc, self.proc = self.proc, None
        stop_group(proc, grace=5.0)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
