"""NETLINK_SOCK_DIAG dump: the fast path (stdlib socket + struct only).

One dump per (protocol, family); state masks and the local-port range go to the
kernel (idiag_states and INET_DIAG_REQ_BYTECODE), so unwanted sockets never
cross into Python. The kernel's AUTO test (port not bound by the program) splits
each dump in two complementary halves, auto and not-auto: together they return
each socket exactly once, so the auto-bound column costs one extra request, not
a second copy of the table.

Parsing avoids per-socket objects beyond one tuple: one precompiled struct per
message, columns built with zip() and array(), ports byteswapped in bulk.
Structures: include/uapi/linux/inet_diag.h, sock_diag.h, netlink.h.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
import sys
from array import array

from .table import (
    AUTO_NO, AUTO_UNKNOWN, AUTO_YES, PROTO_CODES, TCP_LISTEN, SocketTable,
)

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_NOCOOKIE = 0xFFFFFFFF

# bytecode op codes (enum in inet_diag.h)
BC_JMP, BC_S_GE, BC_S_LE, BC_AUTO = 1, 2, 3, 6

# every state ss shows with -a: 1..12 (NEW_SYN_RECV is 12); not 13 BOUND_INACTIVE
ALL_STATES = sum(1 << s for s in range(1, 13))

_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_LITTLE = sys.byteorder == "little"

_HDR = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBxI" "HH16s16sI8s")            # inet_diag_req_v2, 56 bytes
_OP = struct.Struct("=BBH")
_ATTR = struct.Struct("=HH")
# nlmsghdr (len, type) + inet_diag_msg (family, state, sport, dport, src, dst, uid, inode)
_MSG4 = struct.Struct("=IH10x" "BB2x" "HH" "4s12x" "4s12x" "24x" "II")
_MSG6 = struct.Struct("=IH10x" "BB2x" "HH" "16s" "16s" "24x" "II")
assert _MSG4.size == _MSG6.size == 88 and _REQ.size == 56

RECV_BYTES = 1 << 20          # the kernel fills at most ~32 KiB per dump skb; room to spare


class NetlinkRefused(Exception):
    """sock_diag is not available to us (EPERM, unsupported protocol family, ...)."""


class ProtocolMissing(Exception):
    """This kernel's sock_diag does not serve the protocol (module absent)."""


def bytecode(sport=None, auto: bool | None = None) -> bytes:
    """INET_DIAG_REQ_BYTECODE program: accept iff sport in range and AUTO == auto.

    Each test jumps to the next op on success and past the end (len+4: reject)
    on failure; the kernel accepts only when the program ends exactly at len.
    """
    ops: list[tuple[int, int, int]] = []       # (code, yes, no); no filled below
    if sport is not None:
        ops += [(BC_S_GE, 8, -1), (0, 0, sport.low), (BC_S_LE, 8, -1), (0, 0, sport.high)]
    if auto is True:
        ops.append((BC_AUTO, 4, -1))
    elif auto is False:
        # AUTO true -> fall into a JMP that leaves past the end (reject); false -> skip it
        ops += [(BC_AUTO, 4, -2), (BC_JMP, 4, -1)]
    total = 4 * len(ops)
    out = bytearray()
    for k, (code, yes, no) in enumerate(ops):
        remaining = total - 4 * k
        if no == -1 and code != 0:
            no = remaining + 4          # reject
        elif no == -2:
            no = remaining             # to the end: accept
        out += _OP.pack(code, yes, no)
    return bytes(out)


def _request(family: int, proto: int, states: int, bc: bytes, seq: int) -> bytes:
    req = _REQ.pack(_FAMILY[family], proto, 0, states, 0, 0, bytes(16), bytes(16), 0,
                    struct.pack("=II", INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE))
    if bc:
        req += _ATTR.pack(4 + len(bc), INET_DIAG_REQ_BYTECODE) + bc
    return _HDR.pack(16 + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + req


def open_socket() -> socket.socket:
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
    except (AttributeError, OSError) as e:   # EPERM, EPROTONOSUPPORT, EAFNOSUPPORT, seccomp
        raise NetlinkRefused(_why(e))
    return s


def _why(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno:
        return f"{errno.errorcode.get(e.errno, e.errno)}: {os.strerror(e.errno)}"
    return str(e) or type(e).__name__


def dump(sock: socket.socket, family: int, proto: int, states: int, bc: bytes, seq: int,
         buf: bytearray) -> list[tuple]:
    """One dump -> list of (len, type, family, state, sport, dport, src, dst, uid, inode)."""
    try:
        sock.send(_request(family, proto, states, bc, seq))
    except OSError as e:
        raise NetlinkRefused(_why(e))
    unpack = (_MSG4 if family == 4 else _MSG6).unpack_from
    rows: list[tuple] = []
    append = rows.append
    limit = len(buf) - 128         # unpack_from reads 88 bytes even at a 20-byte DONE
    while True:
        try:
            n = sock.recv_into(buf, limit)
        except OSError as e:
            raise NetlinkRefused(_why(e))
        if n == 0:
            raise NetlinkRefused("netlink socket closed mid-dump")
        off = 0
        while off < n:
            t = unpack(buf, off)
            if t[1] == SOCK_DIAG_BY_FAMILY:
                append(t)
            elif t[1] == NLMSG_DONE:
                err = struct.unpack_from("=i", buf, off + 16)[0] if t[0] >= 20 else 0
                if err < 0:
                    _raise(-err)
                return rows
            elif t[1] == NLMSG_ERROR:
                err = struct.unpack_from("=i", buf, off + 16)[0]
                if err < 0:
                    _raise(-err)
            off += (t[0] + 3) & ~3
            if t[0] < 16:
                raise NetlinkRefused("malformed netlink message")


def _raise(code: int):
    if code in (errno.ENOENT, errno.EOPNOTSUPP, errno.EPROTONOSUPPORT, errno.EINVAL):
        raise ProtocolMissing(errno.errorcode.get(code, str(code)))
    raise NetlinkRefused(f"{errno.errorcode.get(code, code)}: {os.strerror(code)}")


def _append(table: SocketTable, rows: list[tuple], proto: int, family: int, auto: int) -> None:
    if not rows:
        return
    _, _, _, states, sports, dports, srcs, dsts, uids, inodes = zip(*rows)
    n = len(rows)
    table.proto.extend(bytes((proto,)) * n)
    table.family.extend(bytes((family,)) * n)
    table.state.extend(bytes(states))
    table.local_addr.extend(srcs)
    table.remote_addr.extend(dsts)
    sp = array("H", sports)
    dp = array("H", dports)
    if _LITTLE:                    # ports arrive in network order
        sp.byteswap()
        dp.byteswap()
    table.local_port.extend(sp)
    table.remote_port.extend(dp)
    table.uid.extend(uids)
    table.inode.extend(inodes)
    if auto == AUTO_YES:
        # TIME_WAIT and request sockets carry no bind lock, so AUTO says yes for
        # all of them: the kernel cannot tell there
        table.auto_bound.extend(bytes(AUTO_UNKNOWN if s in (3, 6, 12) else AUTO_YES for s in states))
    else:
        table.auto_bound.extend(bytes((auto,)) * n)


def read_table(protos, families, states: set[int] | None, sport, auto: bool = True) -> SocketTable:
    """Sockets of the calling thread's network namespace via sock_diag.

    Raises NetlinkRefused when sock_diag is unusable (the facade then reads procfs).
    Protocols this kernel does not serve (no sctp_diag, no UDP-Lite) are skipped.
    """
    mask = ALL_STATES if states is None else sum(1 << s for s in states)
    table = SocketTable(backend="netlink")
    sock = open_socket()
    buf = bytearray(RECV_BYTES)
    seq = 0
    try:
        for p in protos:
            code = PROTO_CODES[p]
            for fam in families:
                halves = ((True, AUTO_YES), (False, AUTO_NO)) if auto else ((None, AUTO_UNKNOWN),)
                try:
                    for want, col in halves:
                        seq += 1
                        rows = dump(sock, fam, code, mask, bytecode(sport, want), seq, buf)
                        _append(table, rows, code, fam, col)
                except ProtocolMissing:
                    if p in ("tcp", "udp"):
                        raise NetlinkRefused(f"sock_diag does not serve {p} (tcp_diag/udp_diag missing)")
                    continue
            if auto and code == PROTO_CODES["tcp"]:
                seq = _listeners(table, sock, families, buf, seq)
    finally:
        sock.close()
    return table


def _listeners(table, sock, families, buf, seq) -> int:
    """(tcp, port) of every listener, so accepted TIME_WAIT rows are told from clients.

    A LISTEN-only dump walks only the kernel's small listening hash, so it is
    cheaper than scanning our own columns, and it ignores the row filters.
    """
    tcp = PROTO_CODES["tcp"]
    ls = table.listen_ports
    for fam in families:
        seq += 1
        for t in dump(sock, fam, tcp, 1 << TCP_LISTEN, b"", seq, buf):
            ls.add((tcp, socket.ntohs(t[4])))
    return seq
