"""Each system's interpreter: its own virtual environment under ``.bench/venvs``, Debian packages.

alpcrun and the gRPC baseline run with the project's own interpreter; every peer gets a virtual
environment made with ``uv`` from the running interpreter, reused while a stamp file in it
matches its requirement list.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.suite.systems import System

REPO_ROOT = Path(__file__).resolve().parents[2]
VENVS = REPO_ROOT / ".bench" / "venvs"
STAMP = "bench-requirements.json"
COMMANDS = {"redis-server": "redis-server", "rabbitmq-server": "rabbitmq-server"}
"""The command whose presence tells that a Debian package is installed (default: its name)."""
INSTALL_TIMEOUT_S = 900


class EnvError(RuntimeError):
    """A system's environment could not be made (the reason is the message)."""


def uv_command() -> list[str]:
    """``uv`` next to the running interpreter, else ``python -m uv``."""
    uv = Path(sys.executable).parent / "uv"
    return [str(uv)] if uv.exists() else [sys.executable, "-m", "uv"]


def venv_python(venv: Path) -> Path:
    """The interpreter of a virtual environment."""
    return venv / "bin" / "python"


def stamp_text(requirements: tuple[str, ...]) -> str:
    """What the stamp file holds for these requirements and the running interpreter."""
    return json.dumps({"python": sys.executable, "requirements": sorted(requirements)})


def _run(cmd: list[str], log: Path) -> None:
    with log.open("ab") as out:
        out.write(("$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        try:
            done = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EnvError(f"{cmd[0]} failed: {exc} (see {log})") from exc
    if done.returncode != 0:
        raise EnvError(f"`{' '.join(cmd[:3])} ...` exited with {done.returncode} (see {log})")


def ensure_python(system: System, *, install: bool, log: Path) -> Path:
    """The interpreter that runs ``system``'s driver, making its environment when needed."""
    if system.requirements is None:
        return Path(sys.executable)
    venv = VENVS / system.name
    python = venv_python(venv)
    stamp = venv / STAMP
    want = stamp_text(system.requirements)
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    if python.exists() and satisfied(python, system.requirements):
        stamp.write_text(want)  # made by hand or by an older run: reuse it as it is
        return python
    if not install:
        raise EnvError(f"no up-to-date environment in {venv} and --no-install was given")
    VENVS.mkdir(parents=True, exist_ok=True)
    if not python.exists():
        _run([*uv_command(), "venv", "--clear", "--python", sys.executable, str(venv)], log)
    _run([*uv_command(), "pip", "install", "--python", str(python), *system.requirements], log)
    stamp.write_text(want)
    return python


_CHECK = """
import importlib.metadata as m, json, sys
for name, version in json.loads(sys.argv[1]):
    try:
        found = m.version(name)
    except m.PackageNotFoundError:
        sys.exit(1)
    if version and found != version:
        sys.exit(1)
"""


def satisfied(python: Path, requirements: tuple[str, ...]) -> bool:
    """Whether ``python`` has every requirement at its pinned version (``name==x`` or ``name``)."""
    pins = []
    for req in requirements:
        name, _, version = req.partition("==")
        pins.append((name.split("[", 1)[0].strip(), version.strip()))
    try:
        done = subprocess.run(
            [str(python), "-c", _CHECK, json.dumps(pins)], capture_output=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def ensure_apt(system: System, *, install: bool, log: Path) -> None:
    """Install ``system``'s Debian packages whose command is missing (``apt-get``, as root)."""
    missing = [p for p in system.apt if shutil.which(COMMANDS.get(p, p)) is None]
    if not missing:
        return
    if not install:
        raise EnvError(f"missing {', '.join(missing)} and --no-install was given")
    if os.geteuid() != 0:
        raise EnvError(
            f"missing {', '.join(missing)}: run as root, or `sudo apt-get install -y "
            f"{' '.join(missing)}` first"
        )
    env_apt = ["env", "DEBIAN_FRONTEND=noninteractive"]
    _run([*env_apt, "apt-get", "update"], log)
    _run([*env_apt, "apt-get", "install", "-y", *missing], log)
    still = [p for p in missing if shutil.which(COMMANDS.get(p, p)) is None]
    if still:
        raise EnvError(f"apt-get installed {', '.join(still)} but its command is not on PATH")


def driver_env(python: Path, marker: str, run_id: str) -> dict[str, str]:
    """The environment of a driver: repository on PYTHONPATH, its venv first on PATH, marker."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env[marker] = run_id
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("ALPCRUNCH_CONFIG", None)
    if python != Path(sys.executable):
        venv = python.parent.parent
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = os.pathsep.join((str(python.parent), env.get("PATH", "")))
    return env
