"""TLS material of a process: certificate files read and checked once, at start.

Settings name files (``tls_cert``, ``tls_key``, ``ca_cert``); :func:`server_tls` and
:func:`client_tls` read them into frozen :class:`ServerTls` / :class:`ClientTls` values that
``alpcrun.proto.server`` and ``alpcrun.proto.channel`` turn into gRPC credentials. Every
problem — a missing or unreadable file, a file that is not PEM, a key that does not match its
certificate — is a :class:`~alpcrun.errors.ConfigError` naming the setting, its environment
variable and the path, so a misconfigured process exits at start with one clear line.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from alpcrun.errors import ConfigError


class TlsSettings(Protocol):
    """The TLS settings of every process (see ``alpcrun.config``)."""

    @property
    def tls(self) -> bool:
        """Serve and dial TLS."""

    @property
    def tls_cert(self) -> str | None:
        """PEM certificate chain file."""

    @property
    def tls_key(self) -> str | None:
        """PEM private key file of ``tls_cert``."""

    @property
    def ca_cert(self) -> str | None:
        """PEM CA certificates file."""


class ServerTlsSettings(TlsSettings, Protocol):
    """The TLS settings of a server process."""

    @property
    def tls_client_auth(self) -> bool:
        """Require client certificates signed by ``ca_cert`` (mutual TLS)."""


class ClientTlsSettings(TlsSettings, Protocol):
    """The TLS settings of a process that dials alpcrun servers."""

    @property
    def tls_server_name(self) -> str | None:
        """Name expected in the servers' certificates instead of the host dialled."""


@dataclass(frozen=True)
class ServerTls:
    """What a TLS server presents and, with client authentication, whom it accepts."""

    cert_chain: bytes
    """PEM certificate chain of the server (leaf first)."""
    private_key: bytes
    """PEM private key of the leaf certificate."""
    client_ca: bytes | None = None
    """PEM CA certificates client certificates must chain to; set: client certificates are
    required (mutual TLS)."""


@dataclass(frozen=True)
class ClientTls:
    """How a client verifies the server and, for mutual TLS, which certificate it presents."""

    root_certs: bytes | None = None
    """PEM CA certificates the server's certificate must chain to; None: the system roots."""
    cert_chain: bytes | None = None
    """PEM client certificate chain presented when the server asks for one."""
    private_key: bytes | None = None
    """PEM private key of ``cert_chain``."""
    server_name: str | None = None
    """Name expected in the server's certificate instead of the host of the address dialled."""


def _label(settings: TlsSettings, field: str) -> str:
    config = getattr(settings, "model_config", None) or {}
    return f"{field} ({config.get('env_prefix', '')}{field.upper()})"


def _read(settings: TlsSettings, field: str, path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{_label(settings, field)}: cannot read {path}: {reason}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{_label(settings, field)}: {path} is not a PEM file")
    return data


def _no_password() -> bytes:
    # An encrypted key would otherwise make OpenSSL prompt on the terminal; gRPC cannot use
    # one anyway, so an empty password turns it into a clear error.
    return b""


def _check_pair(settings: TlsSettings, cert: str, key: str) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key, password=_no_password)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            f"{_label(settings, 'tls_key')}: {key} is not an unencrypted PEM private key "
            f"matching {_label(settings, 'tls_cert')} {cert} ({exc})"
        ) from None


def _check_ca(settings: TlsSettings, path: str) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{_label(settings, 'ca_cert')}: {path} holds no usable CA certificate ({exc})"
        ) from None


def _read_pair(settings: TlsSettings) -> tuple[bytes, bytes] | None:
    cert, key = settings.tls_cert, settings.tls_key
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        have, lack = ("tls_cert", "tls_key") if key is None else ("tls_key", "tls_cert")
        raise ConfigError(
            f"{_label(settings, have)} is set but {_label(settings, lack)} is not: "
            "a certificate needs its key"
        )
    chain, private_key = _read(settings, "tls_cert", cert), _read(settings, "tls_key", key)
    _check_pair(settings, cert, key)
    return chain, private_key


def _read_ca(settings: TlsSettings) -> bytes | None:
    if settings.ca_cert is None:
        return None
    data = _read(settings, "ca_cert", settings.ca_cert)
    _check_ca(settings, settings.ca_cert)
    return data


def server_tls(settings: ServerTlsSettings) -> ServerTls | None:
    """The server side of ``settings``: None when ``tls`` is off.

    Raises:
        alpcrun.errors.ConfigError: A file is missing, unreadable or invalid, ``tls_cert`` or
            ``tls_key`` is unset, or ``tls_client_auth`` is on without ``tls`` or ``ca_cert``.
    """
    if not settings.tls:
        if settings.tls_client_auth:
            raise ConfigError(
                f"{_label(settings, 'tls_client_auth')} needs {_label(settings, 'tls')}: "
                "client certificates are only checked over TLS"
            )
        return None
    pair = _read_pair(settings)
    if pair is None:
        raise ConfigError(
            f"{_label(settings, 'tls')} is on: set {_label(settings, 'tls_cert')} and "
            f"{_label(settings, 'tls_key')} to the server certificate and key"
        )
    client_ca = None
    if settings.tls_client_auth:
        client_ca = _read_ca(settings)
        if client_ca is None:
            raise ConfigError(
                f"{_label(settings, 'tls_client_auth')} is on: set {_label(settings, 'ca_cert')} "
                "to the CA that signs the client certificates"
            )
    return ServerTls(cert_chain=pair[0], private_key=pair[1], client_ca=client_ca)


def client_tls(settings: ClientTlsSettings) -> ClientTls | None:
    """The client side of ``settings``: None when ``tls`` is off.

    Raises:
        alpcrun.errors.ConfigError: A file is missing, unreadable or invalid.
    """
    if not settings.tls:
        return None
    pair = _read_pair(settings)
    return ClientTls(
        root_certs=_read_ca(settings),
        cert_chain=pair[0] if pair else None,
        private_key=pair[1] if pair else None,
        server_name=settings.tls_server_name,
    )
