"""TLS flags of the ``alpcrun`` commands and ``python -m workers_sdk``, each with an env var."""

from __future__ import annotations

import argparse
from typing import Any

_FIELDS = ("tls", "tls_cert", "tls_key", "ca_cert", "tls_server_name", "tls_client_auth")


def add_server_flags(p: argparse.ArgumentParser, prefix: str, dials: str = "") -> None:
    """Add the TLS flags of a server process whose environment prefix is ``prefix``.

    Args:
        p: The subcommand's parser.
        prefix: Its environment prefix, e.g. ``ALPCRUNCH_QM_``.
        dials: The server it dials, if any (adds ``--tls-server-name``).
    """
    also = f" and dial the {dials} over TLS" if dials else ""
    p.add_argument(
        "--tls", action="store_true", default=None, help=f"serve TLS{also} ({prefix}TLS=true)"
    )
    p.add_argument("--tls-cert", metavar="FILE", help=f"PEM certificate chain ({prefix}TLS_CERT)")
    p.add_argument("--tls-key", metavar="FILE", help=f"PEM private key ({prefix}TLS_KEY)")
    ca = f"PEM CA of the {dials} and, with --tls-client-auth, " if dials else "PEM CA "
    p.add_argument(
        "--ca-cert", metavar="FILE", help=f"{ca}of client certificates ({prefix}CA_CERT)"
    )
    p.add_argument(
        "--tls-client-auth",
        action="store_true",
        default=None,
        help=f"require client certificates signed by --ca-cert ({prefix}TLS_CLIENT_AUTH)",
    )
    if dials:
        p.add_argument(
            "--tls-server-name",
            metavar="NAME",
            help=f"name expected in the {dials}'s certificate ({prefix}TLS_SERVER_NAME)",
        )


def add_client_flags(p: argparse.ArgumentParser, prefix: str = "ALPCRUNCH_CLIENT_") -> None:
    """Add the TLS flags of a command that dials alpcrun servers."""
    p.add_argument(
        "--tls",
        action="store_true",
        default=None,
        help=f"dial the servers over TLS ({prefix}TLS=true)",
    )
    p.add_argument(
        "--ca-cert",
        metavar="FILE",
        help=f"PEM CA the server certificate must chain to (default: system roots; "
        f"{prefix}CA_CERT)",
    )
    p.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help=f"name expected in the server certificate ({prefix}TLS_SERVER_NAME)",
    )
    p.add_argument(
        "--tls-cert",
        metavar="FILE",
        help=f"PEM client certificate, for servers that require one ({prefix}TLS_CERT)",
    )
    p.add_argument("--tls-key", metavar="FILE", help=f"PEM key of --tls-cert ({prefix}TLS_KEY)")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The TLS settings given as flags (absent ones are None, so they do not override)."""
    return {name: getattr(args, name, None) for name in _FIELDS if hasattr(args, name)}
