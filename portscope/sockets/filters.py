"""Decisions over whole columns of a SocketTable: which side is ephemeral, and row filters.

Kept apart from the backends so netlink, procfs and psutil tables are judged by
the same rules (the contract tests rely on it).
"""
from __future__ import annotations

import ipaddress
from array import array
from collections import Counter
from typing import TYPE_CHECKING

from ..errors import BadInput

if TYPE_CHECKING:
    from ..ports import PortRange, PortSet
from .table import (
    AUTO_NO,
    AUTO_UNKNOWN,
    AUTO_YES,
    EPH_LOCAL,
    EPH_NONE,
    EPH_REMOTE,
    METHOD_KERNEL,
    METHOD_RANGE,
    PROTO_NAMES,
    STATE_NAMES,
    TCP_LISTEN,
    SocketTable,
)


# one byte per row packs ephemeral | method << 2 | auto_bound << 4, so a single
# bytes(map(...)) pass builds three columns
def _pack(eph, method, auto):
    return eph | method << 2 | auto << 4


def port_mask(ephemeral: PortRange, reserved: PortSet | None = None) -> bytearray:
    """65536 flags: 1 where the kernel may hand the port out automatically."""
    mask = bytearray(65536)
    mask[ephemeral.low:ephemeral.high + 1] = b"\x01" * ephemeral.size
    if reserved is not None:
        for r in getattr(reserved, "ranges", ()) or ():
            mask[r.low:r.high + 1] = bytes(r.size)
    return mask


def mark_ephemeral(table: SocketTable, ephemeral: PortRange, reserved: PortSet | None = None) -> None:
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
    # listener ports as one flag byte per port, a bit per protocol: no tuple per row
    pbit = _PROTO_BIT
    lis = bytearray(65536)
    for proto, port in table.listen_ports:
        lis[port] |= pbit[proto]
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
            if lis[lp] & pbit[proto]:     # accepted: shares its listener's port
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
        if lis[lp] & pbit[proto]:
            return r_remote if mask[rp] else r_none
        if mask[lp]:
            return r_local
        if mask[rp]:
            return r_remote
        return r_none

    # the common rows (kernel-chosen ports: clients, and accepted sockets) inline, without
    # a call; the same decisions as the first branch of one()
    packed = bytes([(k_local if not lis[lp] & pbit[pr] else acc_remote if mask[rp] else acc_none)
                    if ab == AUTO_YES else one(pr, st, lp, rp, ab)
                    for pr, st, lp, rp, ab in zip(table.proto, table.state, table.local_port,
                                                  table.remote_port, table.auto_bound)])
    table.ephemeral = array("B", packed.translate(_EPH))
    table.method = array("B", packed.translate(_METHOD))
    table.auto_bound = array("B", packed.translate(_AUTO))


_PROTO_BIT = bytes({6: 1, 17: 2, 136: 4, 132: 8}.get(i, 16) for i in range(256))
_EPH = bytes(i & 3 for i in range(256))
_METHOD = bytes(i >> 2 & 3 for i in range(256))
_AUTO = bytes(i >> 4 & 3 for i in range(256))


# --- row selection (conns filters) ---------------------------------------------------

_V4_MAPPED = bytes(10) + b"\xff\xff"


def parse_net(text: str, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or CIDR network for --src / --dst; BadInput otherwise."""
    s = str(text).strip()
    try:
        return ipaddress.ip_network(s, strict=False)
    except ValueError:
        raise BadInput(f"{what} must be an IP address or network (e.g. 10.0.0.0/8), got {text!r}")


def _addr_test(net):
    """raw bytes -> bool; IPv4 networks also match v4-mapped IPv6 addresses."""
    lo = int(net.network_address)
    bits = net.max_prefixlen - net.prefixlen
    want = lo >> bits
    v4 = net.version == 4
    size = 4 if v4 else 16
    frombytes = int.from_bytes

    def test(raw: bytes) -> bool:
        if len(raw) != size:
            if v4 and len(raw) == 16 and raw[:12] == _V4_MAPPED:
                raw = raw[12:]
            else:
                return False
        return frombytes(raw, "big") >> bits == want
    return test


def select(table: SocketTable, *, port: PortRange | None = None,
           src: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None,
           dst: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None, ephemeral: str | None = None,
           listening: bool = False) -> list[int] | None:
    """Row indices passing every filter; None when no filter is set (all rows).

    port: PortRange matched against either side; src / dst: ip_network matched
    against the local / remote address; ephemeral: "any" | "local" | "remote";
    listening: LISTEN sockets and unconnected UDP (what `ss -l` shows).
    """
    tests = []
    if port is not None:
        lo, hi = port.low, port.high
        lp, rp = table.local_port, table.remote_port
        tests.append(lambda i: lo <= lp[i] <= hi or lo <= rp[i] <= hi)
    if src is not None:
        t, la = _addr_test(src), table.local_addr
        tests.append(lambda i: t(la[i]))
    if dst is not None:
        t2, ra = _addr_test(dst), table.remote_addr
        tests.append(lambda i: t2(ra[i]))
    if ephemeral is not None:
        eph = table.ephemeral
        if len(eph) != len(table):
            raise ValueError("select(ephemeral=...) needs a classified table")
        want = {"any": (EPH_LOCAL, EPH_REMOTE), "local": (EPH_LOCAL,), "remote": (EPH_REMOTE,)}[ephemeral]
        tests.append(lambda i: eph[i] in want)
    if listening:
        st, rpt = table.state, table.remote_port
        tests.append(lambda i: st[i] == TCP_LISTEN or (st[i] == 7 and rpt[i] == 0))
    if not tests:
        return None
    return [i for i in range(len(table)) if all(t(i) for t in tests)]


def counts(table: SocketTable, rows: list[int] | None = None) -> dict:
    """{"total", "by_proto", "by_state", "by_proto_state"} without building any row."""
    if rows is None:
        pairs = Counter(zip(table.proto, table.state))
    else:
        p, s = table.proto, table.state
        pairs = Counter((p[i], s[i]) for i in rows)
    return counts_of(pairs)


def counts_of(pairs: Counter) -> dict:
    """counts() from {(proto code, state code): sockets}, however they were counted."""
    by_ps: dict[str, dict[str, int]] = {}
    by_p: Counter = Counter()
    by_s: Counter = Counter()
    for (pc, sc), n in sorted(pairs.items()):
        pn = PROTO_NAMES.get(pc, str(pc))
        sn = STATE_NAMES.get(sc, str(sc))
        d = by_ps.setdefault(pn, {})
        d[sn] = d.get(sn, 0) + n
        by_p[pn] += n
        by_s[sn] += n
    return {"total": sum(by_p.values()), "by_proto": dict(by_p), "by_state": dict(by_s),
            "by_proto_state": by_ps}


SORT_KEYS = ("proto", "state", "local", "remote", "lport", "rport", "pid", "uid", "inode", "ephemeral")


def sort_rows(table: SocketTable, rows: list[int], key: str) -> list[int]:
    """`rows` ordered by one of SORT_KEYS (`conns --sort`)."""
    t = table
    keyfn = {
        "proto": lambda i: (t.proto[i], t.state[i]),
        "state": lambda i: (t.state[i], t.proto[i]),
        "local": lambda i: (t.family[i], t.local_addr[i], t.local_port[i]),
        "remote": lambda i: (t.family[i], t.remote_addr[i], t.remote_port[i]),
        "lport": lambda i: t.local_port[i],
        "rport": lambda i: t.remote_port[i],
        "pid": lambda i: t.pid[i] if t.pid is not None else -1,
        "uid": lambda i: t.uid[i],
        "inode": lambda i: t.inode[i],
        "ephemeral": lambda i: t.ephemeral[i] if len(t.ephemeral) else 0,
    }[key]
    return sorted(rows, key=keyfn)
