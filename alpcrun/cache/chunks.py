"""Shared-data values as streams of chunks: split on the way out, checked on the way in."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator

from alpcrun.errors import InvalidArgument
from alpcrun.proto import SharedDataChunk, SharedDataHeader

DEFAULT_CHUNK_BYTES = 1 << 20
"""Data bytes per chunk: far below any gRPC message limit, large enough to amortise a message."""

HeaderCheck = Callable[[SharedDataHeader], Awaitable[None] | None]
"""Sees a stream's header before any data is accepted; raises to refuse. May be a coroutine."""


def split(
    header: SharedDataHeader, value: bytes, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[SharedDataChunk]:
    """Yield ``value`` as chunks, the first one carrying ``header`` (one chunk if empty)."""
    view = memoryview(value)
    yield SharedDataChunk(header=header, data=bytes(view[:chunk_bytes]))
    for start in range(chunk_bytes, len(value), chunk_bytes):
        yield SharedDataChunk(data=bytes(view[start : start + chunk_bytes]))


async def join(
    stream: AsyncIterable[SharedDataChunk],
    check_header: HeaderCheck,
) -> tuple[SharedDataHeader, bytes]:
    """Read a whole chunk stream; returns (header, value). See :func:`collect`."""
    header, parts = await collect(stream, check_header)
    return header, parts[0] if len(parts) == 1 else b"".join(parts)


async def collect(
    stream: AsyncIterable[SharedDataChunk],
    check_header: HeaderCheck,
) -> tuple[SharedDataHeader, list[bytes]]:
    """Read a whole chunk stream; returns (header, the chunks' data in order).

    ``check_header`` (a function or a coroutine function) sees the header before any data is
    accepted: it bounds the size, or reserves room for it, asks whether the session may store,
    and raises to refuse. Raises :class:`InvalidArgument` when the first chunk has no header,
    a later one has one, or the data does not add up to ``header.size_bytes`` (more, or fewer
    when the stream ends).
    """
    parts: list[bytes] = []
    header: SharedDataHeader | None = None
    got = 0
    async for chunk in stream:
        if header is None:
            if not chunk.HasField("header"):
                raise InvalidArgument("the first chunk must carry the header", field="header")
            header = chunk.header
            checked = check_header(header)
            if inspect.isawaitable(checked):
                await checked
        elif chunk.HasField("header"):
            raise InvalidArgument("only the first chunk may carry a header", field="header")
        got += len(chunk.data)
        if got > header.size_bytes:
            raise InvalidArgument(
                f"more data than the header's size_bytes ({header.size_bytes})", field="data"
            )
        parts.append(chunk.data)
    if header is None:
        raise InvalidArgument("empty chunk stream: no header", field="header")
    if got != header.size_bytes:
        raise InvalidArgument(
            f"the stream ended after {got} of {header.size_bytes} bytes", field="data"
        )
    return header, parts
