"""Length-prefixed frames of the plain framed protocols (read path, payload handoff), sans I/O.

A frame is a 4-byte big-endian length and that many bytes (a protobuf message). A reply
frame may be followed by a run of raw bytes (the value it describes). :class:`FrameBuffer`
takes bytes as they arrive and hands out whole frames, each bounded by ``max_frame``, and
raw runs of a length the caller names; it never performs I/O.
"""

from __future__ import annotations

import struct

from alpcrun.errors import ResourceExhausted

_LENGTH = struct.Struct(">I")
HEADER_BYTES = _LENGTH.size
"""Bytes of the length prefix."""


def frame(message: bytes) -> bytes:
    """``message`` with its length prefix."""
    return _LENGTH.pack(len(message)) + message


class FrameBuffer:
    """Bytes received and not consumed yet; frames and raw runs are taken from the front.

    Args:
        max_frame: Longest frame accepted; a longer length prefix raises
            :class:`~alpcrun.errors.ResourceExhausted` (the stream cannot be trusted after it).
    """

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buf += data

    def frame(self) -> bytes | None:
        """The next whole frame's content, or None until all of it has arrived."""
        buf = self._buf
        if len(buf) < HEADER_BYTES:
            return None
        (size,) = _LENGTH.unpack_from(buf)
        if size > self.max_frame:
            raise ResourceExhausted(
                f"frame of {size} bytes is longer than the limit of {self.max_frame} bytes"
            )
        end = HEADER_BYTES + size
        if len(buf) < end:
            return None
        out = bytes(buf[HEADER_BYTES:end])
        del buf[:end]
        return out

    def discard(self, size: int) -> int:
        """Drop up to ``size`` bytes from the front; returns how many were dropped."""
        dropped = min(size, len(self._buf))
        del self._buf[:dropped]
        return dropped

    def raw(self, size: int) -> bytes | None:
        """The next ``size`` bytes, or None until they have all arrived."""
        buf = self._buf
        if len(buf) < size:
            return None
        with memoryview(buf) as view, view[:size] as part:
            out = bytes(part)  # one copy, also for a large value
        del buf[:size]
        return out
