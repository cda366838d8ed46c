"""Throwaway certificate authorities and certificates for the TLS tests (trustme)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Pki:
    """PEM files of a test CA, a server certificate for 127.0.0.1/localhost and a client one."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path
    """A CA that signed none of the certificates above."""

    def server(self, **extra: object) -> dict[str, object]:
        """Settings of a TLS server using this PKI."""
        return {
            "tls": True,
            "tls_cert": str(self.server_cert),
            "tls_key": str(self.server_key),
            "ca_cert": str(self.ca_cert),
            **extra,
        }

    def client(self, **extra: object) -> dict[str, object]:
        """Settings of a TLS client trusting this PKI's CA."""
        return {"tls": True, "ca_cert": str(self.ca_cert), **extra}

    def env(self, prefix: str, *, server: bool) -> dict[str, str]:
        """The same as environment variables with ``prefix`` (e.g. ``ALPCRUNCH_QM_``)."""
        values = self.server() if server else self.client()
        return {
            f"{prefix}{k.upper()}": str(v).lower() if v is True else str(v)
            for k, v in values.items()
        }


def _write_leaf(cert: trustme.LeafCert, directory: Path, name: str) -> tuple[Path, Path]:
    chain, key = directory / f"{name}.crt", directory / f"{name}.key"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    return chain, key


def make_pki(directory: Path) -> Pki:
    """Create a CA, a server and a client certificate under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, other = trustme.CA(), trustme.CA()
    ca_cert, other_ca_cert = directory / "ca.crt", directory / "other-ca.crt"
    ca.cert_pem.write_to_path(str(ca_cert))
    other.cert_pem.write_to_path(str(other_ca_cert))
    server_cert, server_key = _write_leaf(
        ca.issue_cert("127.0.0.1", "localhost", "alpcrun-node-agent"), directory, "server"
    )
    client_cert, client_key = _write_leaf(ca.issue_cert("alpcrun-worker"), directory, "client")
    return Pki(
        ca_cert=ca_cert,
        server_cert=server_cert,
        server_key=server_key,
        client_cert=client_cert,
        client_key=client_key,
        other_ca_cert=other_ca_cert,
    )
