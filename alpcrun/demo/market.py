"""The demo's market data as session shared data, and the small tasks that refer to it.

With shared data, the portfolio's market data (kind, spot, strike, rate, vol, maturity of
every option) is uploaded once per session; each task then carries only an option index,
a path count and a seed, and workers read the option from ``task.shared_data()``.

Market data, ``struct`` ``<BI`` header then ``<B5d`` per option (little-endian)::

    version (1) uint8 · count uint32 · count x (kind uint8, spot, strike, rate, vol,
    maturity_years float64)

Reference task, :data:`REF_TASK_SIZE` = 17 bytes, ``struct`` ``<BIIQ``::

    version (2) uint8 · option index uint32 · paths uint32 (even) · seed uint64
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from alpcrun.demo.pricing import Option, OptionKind

MARKET_VERSION = 1
"""Version byte of the market data."""
REF_TASK_VERSION = 2
"""Version byte of a reference task (1 is the self-contained task of ``pricing``)."""

_HEADER = struct.Struct("<BI")
_OPTION = struct.Struct("<B5d")
_REF = struct.Struct("<BIIQ")
REF_TASK_SIZE = _REF.size
"""Size in bytes of a reference task."""


def encode_market(portfolio: Sequence[Option]) -> bytes:
    """Encode the market data of every option (quantities are not sent)."""
    parts = [_HEADER.pack(MARKET_VERSION, len(portfolio))]
    for o in portfolio:
        parts.append(_OPTION.pack(o.kind.value, o.spot, o.strike, o.rate, o.vol, o.maturity_years))
    return b"".join(parts)


def decode_market(data: bytes) -> list[Option]:
    """Decode :func:`encode_market` output.

    Raises:
        ValueError: Wrong version or size, or invalid option fields.
    """
    if len(data) < _HEADER.size:
        raise ValueError("market data too short")
    version, count = _HEADER.unpack_from(data)
    if version != MARKET_VERSION:
        raise ValueError(f"unsupported market data version {version}")
    if len(data) != _HEADER.size + count * _OPTION.size:
        raise ValueError(f"market data of {len(data)} bytes does not hold {count} options")
    return [
        Option(OptionKind(kind), spot, strike, rate, vol, maturity)
        for kind, spot, strike, rate, vol, maturity in _OPTION.iter_unpack(data[_HEADER.size :])
    ]


def encode_ref_task(index: int, paths: int, seed: int) -> bytes:
    """Encode a task pricing ``paths`` paths of option ``index`` of the shared market data."""
    return _REF.pack(REF_TASK_VERSION, index, paths, seed)


def is_ref_task(payload: bytes) -> bool:
    """Whether ``payload`` is a reference task."""
    return len(payload) == REF_TASK_SIZE and payload[0] == REF_TASK_VERSION


def decode_ref_task(payload: bytes) -> tuple[int, int, int]:
    """Decode a reference task into (option index, paths, seed).

    Raises:
        ValueError: Not a reference task, or odd ``paths``.
    """
    if not is_ref_task(payload):
        raise ValueError("not a reference task")
    _version, index, paths, seed = _REF.unpack(payload)
    if paths < 2 or paths % 2:
        raise ValueError(f"paths must be a positive even number, got {paths}")
    return index, paths, seed
