"""Decisions over whole columns of a SocketTable: which side is ephemeral, and row filters.

Kept apart from the backends so netlink, procfs and psutil tables are judged by
the same rules (the contract tests rely on it).
"""
from __future__ import annotations

from array import array

from .table import (
    AUTO_NO, AUTO_YES, EPH_LOCAL, EPH_NONE, EPH_REMOTE, METHOD_KERNEL, METHOD_RANGE,
    TCP_LISTEN, SocketTable,
)

# packed (ephemeral, method) so one bytes() call per table builds both columns
_K_LOCAL = EPH_LOCAL | METHOD_KERNEL << 4
_K_NONE = EPH_NONE | METHOD_KERNEL << 4
_R_LOCAL = EPH_LOCAL | METHOD_RANGE << 4
_R_REMOTE = EPH_REMOTE | METHOD_RANGE << 4
_R_NONE = EPH_NONE | METHOD_RANGE << 4


def port_mask(ephemeral, reserved=None) -> bytearray:
    """65536 flags: 1 where the kernel may hand the port out automatically."""
    mask = bytearray(65536)
    mask[ephemeral.low:ephemeral.high + 1] = b"\x01" * ephemeral.size
    if reserved is not None:
        for r in getattr(reserved, "ranges", ()) or ():
            mask[r.low:r.high + 1] = bytes(r.size)
    return mask


def classify(table: SocketTable, ephemeral, reserved=None) -> None:
    """Fill table.ephemeral and table.method.

    The kernel decides when it can (sock_diag AUTO: the program did not bind the
    port, so it came from the range); TIME_WAIT and request sockets carry no bind
    lock, so they, and every procfs/psutil row, are judged by the host's range,
    telling accepted sockets (local port = a listener's) from clients.
    """
    mask = port_mask(ephemeral, reserved)
    lis = table.listen_ports

    def one(proto, state, lp, rp, ab):
        if ab == AUTO_YES:
            return _K_LOCAL
        if ab == AUTO_NO:
            # the program chose the local port; the peer's side by range
            if state != TCP_LISTEN and rp and mask[rp]:
                return _R_REMOTE
            return _K_NONE
        if state == TCP_LISTEN:
            return _R_NONE
        if rp == 0:
            return _R_LOCAL if mask[lp] else _R_NONE
        if (proto, lp) in lis:            # accepted: shares its listener's port
            return _R_REMOTE if mask[rp] else _R_NONE
        if mask[lp]:
            return _R_LOCAL
        if mask[rp]:
            return _R_REMOTE
        return _R_NONE

    packed = bytes(map(one, table.proto, table.state, table.local_port, table.remote_port,
                       table.auto_bound))
    table.ephemeral = array("B", packed.translate(_LOW_NIBBLE))
    table.method = array("B", packed.translate(_HIGH_NIBBLE))


_LOW_NIBBLE = bytes(i & 0xF for i in range(256))
_HIGH_NIBBLE = bytes(i >> 4 for i in range(256))
