"""Address syntax shared by settings and clients: ``host:port`` and ``unix:PATH``."""

from __future__ import annotations


def parse_address(address: str) -> tuple[str, int] | str:
    """``host:port`` as (host, port), ``unix:PATH`` as PATH; ValueError for anything else."""
    if address.startswith("unix:"):
        path = address[len("unix:") :]
        if not path:
            raise ValueError(f"no path in {address!r}")
        return path
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port or unix:PATH")
    return host.strip("[]"), int(port)


__all__ = ["parse_address"]
