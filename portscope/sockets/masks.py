"""Row masks over a columnar table: one byte per row, 0 or 1.

Combining masks with big-integer operations and bytes.translate keeps the per-row work
in C, which is what lets the pressure model and the exporter aggregate 100k sockets
without a Python loop per socket.
"""
from __future__ import annotations

_NOT = bytes([1] + [0] * 255)          # 0 -> 1, anything else -> 0


def and_(*masks: bytes) -> bytes:
    """Row-wise AND of 0/1 byte masks (one big-int operation, not a loop)."""
    v = int.from_bytes(masks[0], "little")
    for x in masks[1:]:
        v &= int.from_bytes(x, "little")
    return v.to_bytes(len(masks[0]), "little")


def or_(a: bytes, b: bytes) -> bytes:
    """Row-wise OR of two 0/1 byte masks."""
    return (int.from_bytes(a, "little") | int.from_bytes(b, "little")).to_bytes(len(a), "little")


def not_(mask: bytes) -> bytes:
    """Row-wise NOT of a 0/1 byte mask."""
    return mask.translate(_NOT)


def is_(values: bytes, *codes: int) -> bytes:
    """0/1 mask of the rows whose byte value is one of codes."""
    tab = bytearray(256)
    for c in codes:
        tab[c] = 1
    return values.translate(tab)
