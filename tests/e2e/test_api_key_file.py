"""``--api-key-file``: real processes take their key from a file, never from the command line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from alpcrun.cache.client import SharedDataClient
from alpcrun.errors import PermissionDenied, SessionNotFound
from alpcrun.proto.channel import insecure_channel

from .conftest import KEY, ROOT, Grid, free_port, list_workers, wait_healthy

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "alpcrun.cli.main"]


def _key_file(tmp_path: Path, text: str = KEY + "\n") -> Path:
    path = tmp_path / "api-key"
    path.write_text(text)
    path.chmod(0o600)
    return path


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _status(grid: Grid, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "status", "--queue-manager", grid.address, "--json", *extra],
        cwd=ROOT,
        env=grid.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _cache_refuses_only_wrong_keys(address: str, *, node: bool) -> None:
    async with insecure_channel(address) as channel:
        right = SharedDataClient(channel, api_key=KEY, node=node)
        wrong = SharedDataClient(channel, api_key="not-the-key", node=node)
        with pytest.raises(SessionNotFound):  # past the key check
            await right.get("no-such-session", 1)
        with pytest.raises(PermissionDenied):
            await wrong.get("no-such-session", 1)


def test_every_process_reads_its_key_from_the_file_and_not_the_command_line(
    grid: Grid, tmp_path: Path
) -> None:
    """Queue manager, worker, status, central cache and node agent started with
    --api-key-file use the file's key (its newline dropped; it beats ALPCRUNCH_API_KEY), and
    the key is in no process's /proc/PID/cmdline."""
    key_file = _key_file(tmp_path)
    grid.env_extra["ALPCRUNCH_API_KEY"] = "not-the-key"  # the file must win over it
    qm = grid.start_queue_manager("--api-key-file", str(key_file))
    worker = grid.start_worker("tests.e2e.workers:EchoWorker", "--api-key-file", str(key_file))
    grid.wait_workers(1)  # lists with KEY: the queue manager took the file's key
    cc_port, na_port = free_port(), free_port()
    cc_addr, na_addr = f"127.0.0.1:{cc_port}", f"127.0.0.1:{na_port}"
    common = ("--host", "127.0.0.1", "--metrics-port", "0", "--api-key-file", str(key_file))
    central = grid._spawn([*CLI, "central-cache", "--port", str(cc_port), *common])
    node = grid._spawn(
        [
            *CLI,
            "node-agent",
            "--port",
            str(na_port),
            "--read-port",
            "off",
            "--central-cache-addr",
            cc_addr,
            *common,
        ]
    )
    wait_healthy(cc_addr)
    wait_healthy(na_addr)
    asyncio.run(_cache_refuses_only_wrong_keys(cc_addr, node=False))
    asyncio.run(_cache_refuses_only_wrong_keys(na_addr, node=True))

    with_file = _status(grid, "--api-key-file", str(key_file))
    assert with_file.returncode == 0, with_file.stderr
    assert next(w.id for w in list_workers(grid.address, KEY)) in with_file.stdout
    without = _status(grid)  # only the wrong ALPCRUNCH_API_KEY
    assert without.returncode != 0
    assert "PERMISSION_DENIED" in without.stderr or "invalid api_key" in without.stderr

    for proc in (qm, worker, central, node):
        assert proc.poll() is None, grid.output(proc)
        args = _cmdline(proc.pid)
        assert str(key_file) in args
        assert not any(KEY in arg for arg in args), args


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "No such file or directory"), ("", "is empty"), ("\n", "is empty")],
    ids=["missing", "empty", "only a newline"],
)
@pytest.mark.parametrize(
    "command",
    [
        ["queue-manager", "--port", "0", "--metrics-port", "0"],
        ["worker", "tests.e2e.workers:EchoWorker"],
        ["status"],
        ["central-cache", "--port", "0", "--metrics-port", "0"],
    ],
    ids=lambda c: c[0],
)
def test_an_unusable_key_file_stops_the_command_naming_the_file(
    tmp_path: Path, command: list[str], content: str | None, message: str
) -> None:
    """A key file that is missing, empty or only a newline stops the command at start with
    exit status 2 and an error naming the file and what is wrong with it."""
    path = tmp_path / "api-key"
    if content is not None:
        path.write_text(content)
    proc = subprocess.run(
        [*CLI, *command, "--api-key-file", str(path)],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert f"api_key_file {path}" in proc.stderr, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
