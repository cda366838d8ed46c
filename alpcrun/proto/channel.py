"""gRPC channels and options: message size bounds, keepalive, TLS, no unbounded anything.

Every client side of alpcrun (SDKs, CLI, the caches' channels) dials with :func:`open_channel`.
"""

from __future__ import annotations

import grpc
import grpc.aio

from alpcrun.constants import MAX_MESSAGE_BYTES
from alpcrun.tls import ClientTls

Options = list[tuple[str, int | str]]


def server_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> Options:
    """Options for every alpcrun grpc.aio server."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.so_reuseport", 0),
        # A fixed receive window: with BDP probing, gRPC grows each stream's window to what
        # the link can carry (tens of MiB on loopback), and a client stream the queue manager
        # stops reading for backpressure would still fill it, outside every byte bound. A
        # pending read still opens the window to the whole message.
        ("grpc.http2.bdp_probe", 0),
    ]


def channel_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> Options:
    """Options for every alpcrun client channel (SDKs and CLI)."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.enable_retries", 0),
        # Reconnect within ~2 s of a restarted server instead of gRPC's default of up to 120 s.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]


def insecure_channel(address: str, max_message_bytes: int = MAX_MESSAGE_BYTES) -> grpc.aio.Channel:
    """Open a plaintext grpc.aio channel to ``address`` with alpcrun's options."""
    return open_channel(address, max_message_bytes=max_message_bytes)


def channel_credentials(tls: ClientTls) -> grpc.ChannelCredentials:
    """Credentials that verify the server and, for mutual TLS, present a client certificate.

    The server must chain to ``tls.root_certs`` (or the system roots); ``tls.cert_chain`` is
    sent when the server asks for a client certificate.
    """
    return grpc.ssl_channel_credentials(
        root_certificates=tls.root_certs,
        private_key=tls.private_key,
        certificate_chain=tls.cert_chain,
    )


def open_channel(
    address: str, *, tls: ClientTls | None = None, max_message_bytes: int = MAX_MESSAGE_BYTES
) -> grpc.aio.Channel:
    """Open a grpc.aio channel to ``address`` with alpcrun's options.

    Args:
        address: ``host:port``, or ``unix:PATH`` for a node agent's socket.
        tls: Dial TLS with this material; None: plaintext. ``unix:`` addresses are always
            plaintext: the socket never leaves the node and its file permissions guard it.
        max_message_bytes: Largest message sent or received.
    """
    options = channel_options(max_message_bytes)
    if tls is None or address.startswith("unix:"):
        return grpc.aio.insecure_channel(address, options=options)
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.aio.secure_channel(address, channel_credentials(tls), options=options)
