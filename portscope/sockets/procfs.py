"""The /proc/net fallback: tcp, tcp6, udp, udp6, udplite, udplite6, sctp/eps, sctp/assocs.

Used when sock_diag is refused or missing. procfs cannot tell whether the kernel
chose a port, so `auto_bound` is AUTO_UNKNOWN here and the facade decides the
ephemeral side by the host's range. Lines that do not parse, or whose values the
kernel cannot print (a port above 65535, a negative uid, an unknown state...), are
skipped and counted in `table.warnings`, never fatal: procfs is read while the
kernel changes it. Every row passes `_Sink.add`, which does the range checks.
"""
from __future__ import annotations

import _socket as socket  # the C module: socket.py builds IntEnums of every constant at import (~3 ms)
import sys
from array import array

from .. import netns as _netns
from ..errors import NotPermitted, SystemReadError
from .table import (
    AUTO_UNKNOWN,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    PROTO_UDPLITE,
    TCP_LISTEN,
    SocketTable,
)

TYPE_CHECKING = False     # typing's would import typing on `portscope port N`'s path
if TYPE_CHECKING:
    from typing import Collection

    from ..ports import PortRange

# (proto code, family, file under /proc/net)
INET_FILES = {
    "tcp": ((PROTO_TCP, 4, "tcp"), (PROTO_TCP, 6, "tcp6")),
    "udp": ((PROTO_UDP, 4, "udp"), (PROTO_UDP, 6, "udp6")),
    "udplite": ((PROTO_UDPLITE, 4, "udplite"), (PROTO_UDPLITE, 6, "udplite6")),
}

# enum sctp_state (include/net/sctp/constants.h) -> the TCP state name ss users know
SCTP_ASSOC_STATE = {
    0: 7,   # CLOSED -> CLOSE
    1: 2,   # COOKIE_WAIT -> SYN_SENT
    2: 2,   # COOKIE_ECHOED -> SYN_SENT
    3: 1,   # ESTABLISHED
    4: 4,   # SHUTDOWN_PENDING -> FIN_WAIT1
    5: 4,   # SHUTDOWN_SENT -> FIN_WAIT1
    6: 8,   # SHUTDOWN_RECEIVED -> CLOSE_WAIT
    7: 9,   # SHUTDOWN_ACK_SENT -> LAST_ACK
}

# The states each file's state column can hold; anything else is a malformed line.
# tcp, tcp6: include/net/tcp_states.h, TCP_ESTABLISHED 1 .. TCP_BOUND_INACTIVE 13. The
# seq files print request sockets as SYN_RECV (3) and time-wait ones by their substate,
# so 12 (NEW_SYN_RECV) and 13 are not expected there, but they are kernel states.
TCP_STATES = frozenset(range(1, 14))
# udp, udplite (4 and 6): sk_state is TCP_ESTABLISHED once connected, TCP_CLOSE otherwise
UDP_STATES = frozenset((1, 7))
# sctp/eps SST is sk_state, enum sctp_sock_state: ESTABLISHED 1, ESTABLISHING (SYN_SENT) 2,
# CLOSED 7, CLOSING 8 (CLOSE_WAIT; TCP_CLOSING 11 in older kernels), LISTENING 10
SCTP_SOCK_STATES = frozenset((1, 2, 7, 8, 10, 11))
# sctp/assocs ST goes through SCTP_ASSOC_STATE; a code outside it maps to None, rejected
SCTP_ASSOC_STATES = frozenset(SCTP_ASSOC_STATE.values())

# bits of the table's uid and inode columns (kernel: u32 uid, unsigned long inode)
_COLUMNS = SocketTable(backend="")
UID_BITS = 8 * _COLUMNS.uid.itemsize
INODE_BITS = 8 * _COLUMNS.inode.itemsize
del _COLUMNS

_LITTLE = sys.byteorder == "little"


def _v4(hexaddr: str) -> bytes:
    # the kernel prints the __be32 as a host-order %08X word
    b = bytes.fromhex(hexaddr)
    if len(b) != 4:
        raise ValueError(hexaddr)
    return b[::-1] if _LITTLE else b


def _v6(hexaddr: str) -> bytes:
    b = bytes.fromhex(hexaddr)
    if len(b) != 16:
        raise ValueError(hexaddr)
    if not _LITTLE:
        return b
    w = array("I", b)
    w.byteswap()
    return w.tobytes()


def _text_addr(s: str) -> tuple[int, bytes]:
    """A dotted or colon address from sctp files -> (family, raw)."""
    s = s.lstrip("*")
    if ":" in s:
        raw = socket.inet_pton(socket.AF_INET6, s)
        return 6, raw
    return 4, socket.inet_pton(socket.AF_INET, s)


class _Sink:
    """Appends rows to a SocketTable: range checks, then the state / port filters."""

    __slots__ = ("t", "states", "sport", "skipped")

    def __init__(self, table: SocketTable, states: set[int] | None, sport):
        self.t = table
        self.states = states
        self.sport = sport
        self.skipped = 0

    def add(self, proto, family, state, laddr, lport, raddr, rport, uid, inode, valid_states) -> int:
        """The row's index; -1 when filtered out or malformed (then counted in `skipped`).

        The one place parsed values are range-checked, before anything is stored:
        int() takes "-1" and any length, the arrays do not (OverflowError).
        `x >> n` is 0 exactly when 0 <= x < 2**n (a negative x shifts to -1): half the
        cost of the chained comparisons, per line of a 100k-line file.
        """
        if (lport | rport) >> 16 or uid >> UID_BITS or inode >> INODE_BITS or state not in valid_states:
            self.skipped += 1
            return -1
        if state == TCP_LISTEN:
            # kept even when LISTEN is filtered out: it tells accepted sockets from clients
            self.t.listen_ports.add((proto, lport))
        if self.states is not None and state not in self.states:
            return -1
        if self.sport is not None and not (self.sport.low <= lport <= self.sport.high):
            return -1
        return self.t.append(proto, family, state, laddr, lport, raddr, rport, uid, inode, AUTO_UNKNOWN)


def parse_inet(text: str, proto: int, family: int, sink: _Sink) -> None:
    """Rows of /proc/net/{tcp,udp,udplite}[6]."""
    conv = _v4 if family == 4 else _v6
    valid = TCP_STATES if proto == PROTO_TCP else UDP_STATES
    addr_cache: dict[str, bytes] = {}
    lines = text.splitlines()
    for line in lines[1:]:
        f = line.split()
        if not f:
            continue
        try:
            if len(f) < 10 or not f[0].endswith(":"):
                raise ValueError
            la, lp = f[1].split(":")
            ra, rp = f[2].split(":")
            laddr = addr_cache.get(la)
            if laddr is None:
                laddr = addr_cache[la] = conv(la)
            raddr = addr_cache.get(ra)
            if raddr is None:
                raddr = addr_cache[ra] = conv(ra)
            lport = int(lp, 16)
            rport = int(rp, 16)
            state = int(f[3], 16)
            uid = int(f[7])
            inode = int(f[9])
        except (ValueError, IndexError):
            sink.skipped += 1
            continue
        sink.add(proto, family, state, laddr, lport, raddr, rport, uid, inode, valid)


def _columns(header: str, *names: str) -> list[int]:
    """Indices of named columns: older kernels lack HBKT (and the trailing memory columns)."""
    cols = header.split()
    return [cols.index(n) for n in names]


def _addr_list(tokens: list[str]) -> list[tuple[int, bytes]]:
    """Addresses of one side, primary (`*`) first; all of one family."""
    parsed = [_text_addr(a) for a in tokens]
    star = next((k for k, a in enumerate(tokens) if a.startswith("*")), 0)
    parsed.insert(0, parsed.pop(star))
    return parsed


def parse_sctp_eps(text: str, sink: _Sink, families: Collection[int] = (4, 6)) -> None:
    """/proc/net/sctp/eps: one endpoint per line with all its local addresses."""
    lines = text.splitlines()
    if not lines:
        return
    try:
        i_sst, i_lport, i_uid, i_inode, i_laddrs = _columns(lines[0], "SST", "LPORT", "UID", "INODE", "LADDRS")
    except ValueError:
        sink.skipped += len(lines)
        return
    for line in lines[1:]:
        f = line.split()
        if not f:
            continue
        try:
            if len(f) <= i_laddrs:
                raise ValueError
            sst = int(f[i_sst])
            lport = int(f[i_lport])
            uid = int(f[i_uid])
            inode = int(f[i_inode])
            addrs = _addr_list(f[i_laddrs:])
        except (ValueError, OSError):
            sink.skipped += 1
            continue
        family = addrs[0][0]
        if family not in families:
            continue
        zero = bytes(4 if family == 4 else 16)
        i = sink.add(PROTO_SCTP, family, sst, addrs[0][1], lport, zero, 0, uid, inode, SCTP_SOCK_STATES)
        if i >= 0 and len(addrs) > 1:
            sink.t.extra_local[i] = [a for _, a in addrs]


def parse_sctp_assocs(text: str, sink: _Sink, families: Collection[int] = (4, 6)) -> None:
    """/proc/net/sctp/assocs: multi-homed; `*` marks the primary path on each side."""
    lines = text.splitlines()
    if not lines:
        return
    try:
        i_st, i_uid, i_inode, i_lport, i_rport, i_laddrs = _columns(
            lines[0], "ST", "UID", "INODE", "LPORT", "RPORT", "LADDRS")
    except ValueError:
        sink.skipped += len(lines)
        return
    for line in lines[1:]:
        # a TAB precedes HBINT: everything before it is ids and address lists
        f = line.split("\t", 1)[0].split()
        if not f:
            continue
        try:
            if "<->" not in f or len(f) <= i_laddrs:
                raise ValueError
            arrow = f.index("<->")
            st = int(f[i_st])
            uid = int(f[i_uid])
            inode = int(f[i_inode])
            lport = int(f[i_lport])
            rport = int(f[i_rport])
            lraw = f[i_laddrs:arrow]
            rraw = f[arrow + 1:]
            # without the TAB (older kernels) the remote list ends at the first plain number
            for k, tok in enumerate(rraw):
                if tok.isdigit():
                    rraw = rraw[:k]
                    break
            if not lraw or not rraw:
                raise ValueError
            laddrs = _addr_list(lraw)
            raddrs = _addr_list(rraw)
        except (ValueError, OSError):
            sink.skipped += 1
            continue
        family = laddrs[0][0]
        if family not in families:
            continue
        i = sink.add(PROTO_SCTP, family, SCTP_ASSOC_STATE.get(st), laddrs[0][1], lport, raddrs[0][1], rport,
                     uid, inode, SCTP_ASSOC_STATES)
        if i >= 0:
            if len(laddrs) > 1:
                sink.t.extra_local[i] = [a for _, a in laddrs]
            if len(raddrs) > 1:
                sink.t.extra_remote[i] = [a for _, a in raddrs]


def _read(name: str, root: str | None) -> str | None:
    path = f"{root}/{name}" if root else _netns.proc_net_path(name)
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        raise NotPermitted(f"cannot read {path}: permission denied")
    except OSError as e:
        raise SystemReadError(f"cannot read {path}: {e.strerror or e}")


def read_table(protos: Collection[str], families: Collection[int], states: set[int] | None,
               sport: PortRange | None, root: str | None = None) -> SocketTable:
    """Sockets of the calling thread's network namespace, from /proc/net.

    root: a directory laid out like /proc/net (recorded samples in tests).
    """
    table = SocketTable(backend="procfs")
    sink = _Sink(table, states, sport)
    for p in protos:
        if p == "sctp":
            for name, fn in (("sctp/eps", parse_sctp_eps), ("sctp/assocs", parse_sctp_assocs)):
                text = _read(name, root)
                if text is not None:
                    before = sink.skipped
                    fn(text, sink, families)
                    if sink.skipped > before:
                        table.warnings.append(f"/proc/net/{name}: skipped {sink.skipped - before} malformed line(s)")
            continue
        for code, fam, name in INET_FILES[p]:
            if fam not in families:
                continue
            text = _read(name, root)
            if text is None:
                continue
            before = sink.skipped
            parse_inet(text, code, fam, sink)
            if sink.skipped > before:
                table.warnings.append(f"/proc/net/{name}: skipped {sink.skipped - before} malformed line(s)")
    return table
