"""Read-only, zero-copy views of a payload mapped from a descriptor the node agent handed over.

A same-node reader receives a read-only file descriptor (a sealed memfd of the RAM tier or a
disk-tier file) and maps it: the view's buffer *is* the mapping, so reading a payload of any
size copies nothing. NumPy arrays over it are read-only. Closing the mapping while a view of it
is still alive is impossible (Python refuses); :meth:`MappedPayload.close` then leaves the
mapping to be unmapped when the last view goes.
"""

from __future__ import annotations

import mmap
import os
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt


class MappedPayload:
    """A read-only mapping of one payload.

    Args:
        fd: A read-only descriptor of the payload (closed here once mapped).
        size: The payload's length in bytes.
    """

    def __init__(self, fd: int, size: int) -> None:
        try:
            self._mapping: mmap.mmap | None = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        self.size = size

    def _live(self) -> mmap.mmap:
        if self._mapping is None:
            raise ValueError("the payload's mapping is closed")
        return self._mapping

    def memoryview(self) -> memoryview:
        """The payload's bytes as a read-only ``memoryview`` over the mapping."""
        return memoryview(self._live())

    def array(self, dtype: npt.DTypeLike = np.uint8, shape: Any = None) -> npt.NDArray[Any]:
        """A read-only NumPy array over the mapping (``shape`` defaults to flat)."""
        arr = np.frombuffer(self._live(), dtype=dtype)
        return arr if shape is None else arr.reshape(shape)

    def close(self) -> bool:
        """Unmap now if no view is alive; return whether it was unmapped."""
        mapping, self._mapping = self._mapping, None
        if mapping is None:
            return True
        try:
            mapping.close()
        except BufferError:  # views still exported: unmapped when the last one goes
            return False
        return True

    def __enter__(self) -> MappedPayload:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["MappedPayload"]
