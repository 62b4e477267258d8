"""Is any TCP or UDP socket bound to one port here? Asked of the kernel, without the socket table.

`portscope port N` mostly asks about a free port, and a free port's answer needs no
table: only whether the kernel has a socket on it. The socket table (portscope.sockets)
costs a dozen modules at start-up, a third of the interpreter's own start-up, before it
walks the kernel's hash once per protocol and family. This module sends the same walks
that table's plain read (`snapshot(..., sport=N, classify=False)`) sends: TCP over both
families in one legacy TCPDIAG_GETSOCK dump, UDP once per family, every state `ss -a`
shows and, for TCP, BOUND_INACTIVE (a socket bound but neither listening nor connected
holds the port too), the local port tested in the kernel (INET_DIAG_REQ_BYTECODE), and only
counts the replies. Structures: include/uapi/linux/inet_diag.h, sock_diag.h, netlink.h.

`any_bound()` is False only when every dump ended cleanly with no reply, True when one
returned a socket, and None when that cannot be told (no sock_diag, an error reply, a
protocol this kernel does not dump): the caller then reads the table as before, which
knows every fallback.
"""
from __future__ import annotations

import _socket as socket  # the C module: socket.py builds IntEnums of every constant at import (~3 ms)
import sys

from .netns import entered

TYPE_CHECKING = False     # typing's would import typing on `portscope port N`'s path
if TYPE_CHECKING:
    from typing import Iterable

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
TCPDIAG_GETSOCK = 18      # the pre-sock_diag request: family AF_UNSPEC walks IPv4 and IPv6 at once
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_DUMP_INTR = 0x10
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_NOCOOKIE = b"\xff" * 8
BC_S_GE, BC_S_LE = 2, 3
ALL_STATES = sum(1 << s for s in range(1, 13))     # 1..12, as `ss -a`
# and 13, BOUND_INACTIVE (Linux 6.8+; older kernels ignore the bit): a socket bound but not
# yet listening or connected holds its port too, and a daemon about to start is one
TCP_STATES = ALL_STATES | 1 << 13
PROTO_CODES = {"tcp": 6, "udp": 17}
RECV_BYTES = 1 << 16


def _u16(n: int) -> bytes:
    return n.to_bytes(2, sys.byteorder)


def _u32(n: int) -> bytes:
    return n.to_bytes(4, sys.byteorder)


def port_bytecode(port: int) -> bytes:
    """INET_DIAG_REQ_BYTECODE accepting only local port `port`: sport >= port, then sport <= port;
    each test goes on (yes=8: past its operand) or rejects (no: past the program's end)."""
    ops = b""
    for k, code in enumerate((BC_S_GE, BC_S_LE)):
        reject = 16 - 8 * k + 4
        ops += bytes((code, 8)) + _u16(reject) + bytes(2) + _u16(port)
    return ops


def request(family: int, proto: int, port: int, seq: int) -> bytes:
    """One dump request: family 0 (TCP only) the legacy inet_diag_req, else inet_diag_req_v2."""
    addr = bytes(16)
    sock_id = _u16(0) + _u16(0) + addr + addr + _u32(0) + INET_DIAG_NOCOOKIE    # inet_diag_sockid
    states = TCP_STATES if proto == PROTO_CODES["tcp"] else ALL_STATES
    if family == 0:
        body = bytes(4) + sock_id + _u32(states) + _u32(0)                      # family, lens, ext, pad
        kind = TCPDIAG_GETSOCK
    else:
        body = bytes((family, proto, 0, 0)) + _u32(states) + sock_id
        kind = SOCK_DIAG_BY_FAMILY
    bc = port_bytecode(port)
    body += _u16(4 + len(bc)) + _u16(INET_DIAG_REQ_BYTECODE) + bc
    return _u32(16 + len(body)) + _u16(kind) + _u16(NLM_F_REQUEST | NLM_F_DUMP) + _u32(seq) + _u32(0) + body


class _Undecided(Exception):
    pass


def _any_reply(sock: socket.socket, seq: int) -> bool:
    """Does dump `seq` return a socket? True at its first reply (the rest of the dump is left
    unread: closing the socket drops it), False at its NLMSG_DONE; _Undecided on an error
    reply or a cut dump."""
    order = sys.byteorder
    while True:
        buf = sock.recv(RECV_BYTES)
        if not buf:
            raise _Undecided
        pos = 0
        while pos + 16 <= len(buf):
            length = int.from_bytes(buf[pos:pos + 4], order)
            if length < 16 or pos + length > len(buf):
                raise _Undecided
            if int.from_bytes(buf[pos + 8:pos + 12], order) == seq:
                kind = int.from_bytes(buf[pos + 4:pos + 6], order)
                if kind == NLMSG_ERROR or int.from_bytes(buf[pos + 6:pos + 8], order) & NLM_F_DUMP_INTR:
                    raise _Undecided
                if kind != NLMSG_DONE:
                    return True
                if length >= 20 and int.from_bytes(buf[pos + 16:pos + 20], order, signed=True) < 0:
                    raise _Undecided
                return False
            pos += (length + 3) & ~3


def any_bound(port: int, protos: Iterable[str] = ("tcp", "udp"), netns: str | None = None) -> bool | None:
    """Does any socket of `protos` (tcp, udp; IPv4 and IPv6) hold local port `port` in `netns`
    (None: this thread's namespace)? None when the kernel's answer cannot be read here."""
    plan = []
    for p in dict.fromkeys(protos):
        code = PROTO_CODES.get(p)
        if code is None:
            return None
        plan += [(0, code)] if p == "tcp" else [(socket.AF_INET, code), (socket.AF_INET6, code)]
    if not sys.platform.startswith("linux"):
        return None
    with entered(netns):
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
        except (AttributeError, OSError):
            return None
        try:
            sock.settimeout(5)
            for seq, (family, code) in enumerate(plan, 1):
                sock.send(request(family, code, port, seq))
                if _any_reply(sock, seq):
                    return True
            return False
        except (OSError, _Undecided):
            return None
        finally:
            sock.close()
