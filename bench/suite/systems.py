"""The systems the suite measures: how to install each and which driver runs it.

Read by the orchestrator (``python -m bench``) in the project's own environment; the drivers run
in each system's own virtual environment under ``.bench/venvs/<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DRIVERS = Path(__file__).resolve().parent / "drivers"


@dataclass(frozen=True)
class System:
    """One system under test."""

    name: str
    """Short name used on the command line and in the tables."""
    label: str
    """Name shown in the table."""
    requirements: tuple[str, ...] | None
    """Pinned PyPI requirements of its own virtual environment; None: the project's own one."""
    apt: tuple[str, ...] = ()
    """Debian packages it needs (installed with apt-get when their command is missing)."""
    netns: bool = False
    """Run the driver in its own network namespace (only loopback)."""
    peer: bool = True
    """A peer (False: alpcrun itself or the gRPC baseline)."""

    @property
    def driver(self) -> Path:
        """The driver script."""
        return DRIVERS / f"drive_{self.name}.py"


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System("alpcrun", "alpcrun", None, peer=False),
        System("grpc", "grpc.aio echo (limit)", None, peer=False),
        System("ray", "Ray", ("ray==2.60.0",), netns=True),
        System("dask", "Dask distributed", ("dask[distributed]==2026.8.0",)),
        System("scaler", "OpenGRIS Scaler", ("opengris-scaler==2.9.0",)),
        System("celery", "Celery (redis)", ("celery[redis]==5.7.0",), apt=("redis-server",)),
        System(
            "taskiq",
            "Taskiq (redis)",
            ("taskiq==0.13.0", "taskiq-redis==1.2.4"),
            apt=("redis-server",),
        ),
        System("arq", "arq (redis)", ("arq==0.28.0",), apt=("redis-server",)),
    )
}
"""Every system, in the order they run. Pins are the versions last measured (bench/README.md)."""
