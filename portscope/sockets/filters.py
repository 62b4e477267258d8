"""Decisions over whole columns of a SocketTable: which side is ephemeral, and row filters.

Kept apart from the backends so netlink, procfs and psutil tables are judged by
the same rules (the contract tests rely on it).
"""
from __future__ import annotations

from array import array

from .table import (
    AUTO_NO, AUTO_UNKNOWN, AUTO_YES, EPH_LOCAL, EPH_NONE, EPH_REMOTE, METHOD_KERNEL, METHOD_RANGE,
    TCP_LISTEN, SocketTable,
)

# one byte per row packs ephemeral | method << 2 | auto_bound << 4, so a single
# bytes(map(...)) pass builds three columns
def _pack(eph, method, auto):
    return eph | method << 2 | auto << 4


def port_mask(ephemeral, reserved=None) -> bytearray:
    """65536 flags: 1 where the kernel may hand the port out automatically."""
    mask = bytearray(65536)
    mask[ephemeral.low:ephemeral.high + 1] = b"\x01" * ephemeral.size
    if reserved is not None:
        for r in getattr(reserved, "ranges", ()) or ():
            mask[r.low:r.high + 1] = bytes(r.size)
    return mask


def classify(table: SocketTable, ephemeral, reserved=None) -> None:
    """Fill table.ephemeral and table.method (and correct table.auto_bound).

    The kernel decides when it can (sock_diag AUTO: the program did not bind the
    port, so it came from the range). Two kernel quirks are handled here:
    accepted sockets are cloned from their listener with the bind lock cleared,
    so AUTO says yes for them; they are told apart by sharing a listener's port
    (an automatic port is never one a listener holds), marked AUTO_NO and not
    ephemeral locally. TIME_WAIT and request sockets carry no bind lock at all,
    so they, and every procfs/psutil row, are judged by the host's range.
    """
    mask = port_mask(ephemeral, reserved)
    lis = table.listen_ports
    k_local = _pack(EPH_LOCAL, METHOD_KERNEL, AUTO_YES)
    acc_remote = _pack(EPH_REMOTE, METHOD_RANGE, AUTO_NO)
    acc_none = _pack(EPH_NONE, METHOD_KERNEL, AUTO_NO)
    n_remote = acc_remote
    n_none = acc_none
    u = AUTO_UNKNOWN
    r_none, r_local, r_remote = _pack(EPH_NONE, METHOD_RANGE, u), _pack(EPH_LOCAL, METHOD_RANGE, u), \
        _pack(EPH_REMOTE, METHOD_RANGE, u)

    def one(proto, state, lp, rp, ab):
        if ab == AUTO_YES:
            if (proto, lp) in lis:
                return acc_remote if mask[rp] else acc_none
            return k_local
        if ab == AUTO_NO:
            # the program chose the local port; the peer's side by range
            if state != TCP_LISTEN and rp and mask[rp]:
                return n_remote
            return n_none
        if state == TCP_LISTEN:
            return r_none
        if rp == 0:
            return r_local if mask[lp] else r_none
        if (proto, lp) in lis:            # accepted: shares its listener's port
            return r_remote if mask[rp] else r_none
        if mask[lp]:
            return r_local
        if mask[rp]:
            return r_remote
        return r_none

    packed = bytes(map(one, table.proto, table.state, table.local_port, table.remote_port,
                       table.auto_bound))
    table.ephemeral = array("B", packed.translate(_EPH))
    table.method = array("B", packed.translate(_METHOD))
    table.auto_bound = array("B", packed.translate(_AUTO))


_EPH = bytes(i & 3 for i in range(256))
_METHOD = bytes(i >> 2 & 3 for i in range(256))
_AUTO = bytes(i >> 4 & 3 for i in range(256))
