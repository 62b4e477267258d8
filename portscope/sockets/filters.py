"""Decisions over whole columns of a SocketTable: which side is ephemeral, and row filters.

Kept apart from the backends so netlink, procfs and psutil tables are judged by
the same rules (the contract tests rely on it).
"""
from __future__ import annotations

from array import array
from collections import Counter

from ..errors import BadInput
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

TYPE_CHECKING = False     # typing's would import typing on `portscope port N`'s path
if TYPE_CHECKING:
    import ipaddress
    from typing import Sequence

    from ..ports import PortRange, PortSet


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
    lis = bytearray(65536)                  # listener ports: a bit per protocol
    for proto, port in table.listen_ports:
        lis[port] |= _PROTO_BIT[proto]
    keys = decision_keys(port_mask(ephemeral, reserved), lis, table.proto, table.state,
                         table.local_port, table.remote_port, table.auto_bound)
    packed = keys.translate(_DECIDE)
    table.ephemeral = array("B", packed.translate(_EPH))
    table.method = array("B", packed.translate(_METHOD))
    table.auto_bound = array("B", packed.translate(_AUTO))


def decision_keys(mask: bytes | bytearray, lis: bytes | bytearray, proto: Sequence[int], state: Sequence[int],
                  local_port: Sequence[int], remote_port: Sequence[int], auto_bound: Sequence[int]) -> bytes:
    """Per row, one byte holding every fact the ephemeral decision reads (see _decide):
    built column by column in C (two lookups per row, the rest whole-column byte
    translations and big-integer ORs), so no Python code runs per row.

    mask: port_mask(); lis: per port, _PROTO_BIT of every protocol listening on it.
    """
    n = len(proto)
    if not n:
        return b""
    # list.__getitem__ is the cheapest per-row lookup map() can call (bytes' is twice that)
    lflags = bytes(bytearray(map(list(_local_flags(mask, lis)).__getitem__, local_port)))
    rflags = bytes(bytearray(map(list(_remote_flags(mask)).__getitem__, remote_port)))
    frombytes = int.from_bytes
    # a listener on the local port for this row's own protocol: the AND of two byte
    # columns (no carry crosses a byte), each nonzero byte then made 2
    listened = (frombytes(lflags.translate(_LIS_BITS), "big") & frombytes(bytes(proto).translate(_PROTO_BIT), "big"))
    key = (frombytes(lflags.translate(_BIT0), "big") | frombytes(listened.to_bytes(n, "big").translate(_NONZERO2), "big")
           | frombytes(rflags, "big") | frombytes(bytes(state).translate(_LISTEN16), "big")
           | frombytes(bytes(auto_bound).translate(_AUTO32), "big"))
    return key.to_bytes(n, "big")


def _local_flags(mask, lis) -> bytes:
    """Per port: bit 0 in the range, bits 1-5 the listeners' protocol bits."""
    n = len(mask)
    return (int.from_bytes(mask, "big") | int.from_bytes(bytes(lis).translate(_SHL1), "big")).to_bytes(n, "big")


def _remote_flags(mask) -> bytes:
    """Per port: bit 2 in the range, bit 3 port 0 (unconnected)."""
    flags = bytearray(bytes(mask).translate(_BIT2))
    flags[0] |= 8
    return bytes(flags)


def _decide(key: int) -> int:
    """The packed decision (ephemeral | method << 2 | auto_bound << 4) for one decision key."""
    in_range_l, listened, in_range_r, unconnected = key & 1, key >> 1 & 1, key >> 2 & 1, key >> 3 & 1
    listen, ab = key >> 4 & 1, key >> 5 & 3
    if ab == AUTO_YES:
        if listened:          # accepted: shares its listener's port
            return _pack(EPH_REMOTE, METHOD_RANGE, AUTO_NO) if in_range_r else _pack(EPH_NONE, METHOD_KERNEL, AUTO_NO)
        return _pack(EPH_LOCAL, METHOD_KERNEL, AUTO_YES)
    if ab == AUTO_NO:
        # the program chose the local port; the peer's side by range
        if not listen and not unconnected and in_range_r:
            return _pack(EPH_REMOTE, METHOD_RANGE, AUTO_NO)
        return _pack(EPH_NONE, METHOD_KERNEL, AUTO_NO)
    u = AUTO_UNKNOWN
    if listen:
        return _pack(EPH_NONE, METHOD_RANGE, u)
    if unconnected:
        return _pack(EPH_LOCAL if in_range_l else EPH_NONE, METHOD_RANGE, u)
    if listened:
        return _pack(EPH_REMOTE if in_range_r else EPH_NONE, METHOD_RANGE, u)
    if in_range_l:
        return _pack(EPH_LOCAL, METHOD_RANGE, u)
    if in_range_r:
        return _pack(EPH_REMOTE, METHOD_RANGE, u)
    return _pack(EPH_NONE, METHOD_RANGE, u)


_PROTO_BIT = bytes({6: 1, 17: 2, 136: 4, 132: 8}.get(i, 16) for i in range(256))
_EPH = bytes(i & 3 for i in range(256))
_METHOD = bytes(i >> 2 & 3 for i in range(256))
_AUTO = bytes(i >> 4 & 3 for i in range(256))
_BIT0 = bytes(i & 1 for i in range(256))
_BIT2 = bytes((i & 1) << 2 for i in range(256))
_SHL1 = bytes(i << 1 & 255 for i in range(256))
_LIS_BITS = bytes(i >> 1 for i in range(256))
_NONZERO2 = bytes([0]) + bytes([2]) * 255
_LISTEN16 = bytes(16 if i == TCP_LISTEN else 0 for i in range(256))
_AUTO32 = bytes((i if i <= AUTO_UNKNOWN else AUTO_UNKNOWN) << 5 for i in range(256))
_DECIDE = bytes(_decide(k & 127) for k in range(256))


# --- row selection (conns filters) ---------------------------------------------------

_V4_MAPPED = bytes(10) + b"\xff\xff"


def parse_net(text: str, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or CIDR network for --src / --dst; BadInput otherwise."""
    import ipaddress  # only --src/--dst need it: off every other command's start-up
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
