"""gRPC channel and server options: message size bounds, keepalive, no unbounded anything."""

from __future__ import annotations

import grpc
import grpc.aio

from alpcrun.constants import MAX_MESSAGE_BYTES

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
    return grpc.aio.insecure_channel(address, options=channel_options(max_message_bytes))
