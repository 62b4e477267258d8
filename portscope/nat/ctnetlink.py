"""NETLINK_NETFILTER (ctnetlink) requests with the standard library only.

Three requests of the conntrack subsystem (NFNL_SUBSYS_CTNETLINK = 1):
IPCTNL_MSG_CT_GET_STATS_CPU (4, a dump: one reply per possible CPU, res_id = the
CPU), IPCTNL_MSG_CT_GET_STATS (5, one reply: entries of this namespace and the
global nf_conntrack_max) and IPCTNL_MSG_CT_GET (1) with NLM_F_DUMP: the table.
Every message is nlmsghdr (16 B) + struct nfgenmsg {u8 family; u8 version;
be16 res_id} (4 B) + attributes whose numbers are big-endian.

nfnetlink refuses every message from a sender without CAP_NET_ADMIN in the
namespace that owns the socket (nfnetlink_rcv_msg), so EPERM here means exactly
that capability. Layouts: include/uapi/linux/netfilter/nfnetlink.h,
nfnetlink_conntrack.h, net/netfilter/nf_conntrack_netlink.c.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
import sys
from array import array
from typing import Callable, Iterator

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_GET_STATS_CPU = 4
IPCTNL_MSG_CT_GET_STATS = 5
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_MULTI, NLM_F_DUMP_FILTERED = 0x2, 0x20
NLMSG_ERROR, NLMSG_DONE = 2, 3
# enum ctattr_type: a dump request carrying CTA_STATUS and CTA_STATUS_MASK gets only the
# entries whose status & mask == status (Linux 5.15, "ctnetlink: allow to filter dump by
# status bits"); older kernels ignore the two attributes and send every entry
CTA_STATUS, CTA_STATUS_MASK = 3, 26

# enum ctattr_stats_cpu: the counters GET_STATS_CPU returns (all be32)
CTA_STATS = {
    2: "found", 4: "invalid", 8: "insert", 9: "insert_failed", 10: "drop",
    11: "early_drop", 12: "error", 13: "search_restart", 14: "clash_resolve",
    15: "chain_toolong",
}
STAT_NAMES = ("found", "invalid", "insert", "insert_failed", "drop", "early_drop", "error",
              "search_restart", "clash_resolve", "chain_toolong")
# enum ctattr_stats_global
CTA_STATS_GLOBAL_ENTRIES, CTA_STATS_GLOBAL_MAX_ENTRIES = 1, 2

HDR = struct.Struct("=IHHII")
NFGEN = struct.Struct("=BBH")         # family, version, res_id (res_id is big-endian)
ATTR = struct.Struct("=HH")
NLA_TYPE_MASK = 0x3FFF                # strips NLA_F_NESTED / NLA_F_NET_BYTEORDER
RECV_BYTES = 1 << 20


class CtnetlinkError(Exception):
    """ctnetlink is not usable here; `errno` says why (EPERM: no CAP_NET_ADMIN)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


def _why(code: int | None) -> str:
    if code is None:
        return "unknown error"
    return f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"


def open_socket() -> socket.socket:
    """A NETLINK_NETFILTER socket in the calling thread's network namespace."""
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
    except (AttributeError, OSError) as e:
        code = getattr(e, "errno", None)
        raise CtnetlinkError(_why(code) if code else str(e), code)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BYTES)
    except OSError:
        pass
    return s


def request(msg: int, flags: int, seq: int, family: int = 0, attributes: bytes = b"") -> bytes:
    """nlmsghdr + nfgenmsg for one ctnetlink message type, then `attributes` (encoded)."""
    body = NFGEN.pack(family, 0, 0) + attributes
    return HDR.pack(16 + len(body), (NFNL_SUBSYS_CTNETLINK << 8) | msg, flags, seq, 0) + body


def be32_attr(typ: int, value: int) -> bytes:
    """One netlink attribute holding a big-endian u32 (as every ctnetlink number is)."""
    return ATTR.pack(8, typ) + struct.pack(">I", value)


def attrs(buf: bytes | bytearray | memoryview, off: int, end: int) -> dict[int, tuple[int, int]]:
    """{type: (payload offset, payload length)} of the attributes in buf[off:end]."""
    out: dict[int, tuple[int, int]] = {}
    while off + 4 <= end:
        ln, typ = ATTR.unpack_from(buf, off)
        if ln < 4 or off + ln > end:
            raise CtnetlinkError("malformed netlink attribute")
        out[typ & NLA_TYPE_MASK] = (off + 4, ln - 4)
        off += (ln + 3) & ~3
    return out


def messages(sock: socket.socket, seq: int, buf: bytearray) -> Iterator[tuple[int, bytearray, int, int]]:
    """Yield (type, chunk, offset, length) of every reply to request `seq` until the
    dump ends (NLMSG_DONE) or, for a plain request, the first answer arrives.
    Raises CtnetlinkError with the kernel's errno on NLMSG_ERROR."""
    while True:
        try:
            n = sock.recv_into(buf)
        except OSError as e:
            raise CtnetlinkError(_why(e.errno), e.errno)
        if n == 0:
            raise CtnetlinkError("netlink socket closed mid-dump")
        off = 0
        more = True
        while off + 16 <= n:
            length, kind, flags, mseq, _ = HDR.unpack_from(buf, off)
            if length < 16 or off + length > n:
                raise CtnetlinkError("malformed netlink message")
            if mseq == seq:
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    err = struct.unpack_from("=i", buf, off + 16)[0]
                    if err < 0:
                        raise CtnetlinkError(_why(-err), -err)
                    return                         # an ACK
                yield kind, buf, off, length
                more = bool(flags & 0x2)           # NLM_F_MULTI: a dump goes on
            off += (length + 3) & ~3
        if not more:
            return


def read_stats(sock: socket.socket) -> tuple[dict[str, int], int, int | None, int | None]:
    """(per-CPU counters summed, number of CPUs, entries, max) of this namespace.

    Counters a kernel does not send (clash_resolve before 5.10, chain_toolong
    before 5.15) are left out of the dict rather than reported as zero."""
    buf = bytearray(RECV_BYTES)
    sums: dict[str, int] = {}
    cpus = 0
    sock.send(request(IPCTNL_MSG_CT_GET_STATS_CPU, NLM_F_REQUEST | NLM_F_DUMP, 1))
    for _, b, off, length in messages(sock, 1, buf):
        cpus += 1
        for typ, (p, ln) in attrs(b, off + 20, off + length).items():
            name = CTA_STATS.get(typ)
            if name and ln >= 4:
                sums[name] = sums.get(name, 0) + struct.unpack_from(">I", b, p)[0]
    entries = maximum = None
    sock.send(request(IPCTNL_MSG_CT_GET_STATS, NLM_F_REQUEST | NLM_F_ACK, 2))
    for _, b, off, length in messages(sock, 2, buf):
        a = attrs(b, off + 20, off + length)
        if CTA_STATS_GLOBAL_ENTRIES in a:
            entries = struct.unpack_from(">I", b, a[CTA_STATS_GLOBAL_ENTRIES][0])[0]
        if CTA_STATS_GLOBAL_MAX_ENTRIES in a:
            maximum = struct.unpack_from(">I", b, a[CTA_STATS_GLOBAL_MAX_ENTRIES][0])[0]
    return sums, cpus, entries, maximum


def dump_table(sock: socket.socket, family: int = 0) -> dict[int, bytearray]:
    """Raw replies of a table dump, grouped by message length: {length: bytearray}.

    family 0 (AF_UNSPEC) dumps IPv4 and IPv6 in one walk. Grouping by length is
    what lets table.py read each field of a whole group with one strided view."""
    groups: dict[int, bytearray] = {}

    def keep(blob, length: int) -> None:
        g = groups.get(length)
        if g is None:
            g = groups[length] = bytearray()
        g += blob

    dump_groups(sock, keep, family)
    return groups


def dump_groups(sock: socket.socket, consume: Callable[[memoryview | bytes, int], None], family: int = 0,
                status: int | None = None) -> None:
    """Stream a table dump: call consume(blob, length) for each run of replies of one
    length as the chunks arrive, so nothing but the caller's own tally outlives a chunk.

    `blob` holds whole replies of `length` bytes back to back and is valid only during the
    call (it may be a view of the receive buffer). A received chunk whose replies all have
    one length, type and flags (the common case: one kind of flow) is checked in C with
    strided views and passed whole; other chunks are split by length first. `status`:
    ask the kernel for only the entries with those status bits set (the caller must still
    check them: kernels before 5.15 send everything). A kernel that refuses the filter is
    asked again without it."""
    attributes = b"" if status is None else be32_attr(CTA_STATUS, status) + be32_attr(CTA_STATUS_MASK, status)
    buf = bytearray(RECV_BYTES)
    mv = memoryview(buf)
    seq = 3
    try:
        sock.send(request(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, family, attributes))
        first = True
        while True:
            try:
                n = sock.recv_into(buf)
            except OSError as e:
                raise CtnetlinkError(_why(e.errno), e.errno)
            if n == 0:
                raise CtnetlinkError("netlink socket closed mid-dump")
            length = int.from_bytes(mv[0:4], sys.byteorder)
            if length >= 20 and not length & 3 and not n % length:
                # strided reads of a memoryview go element by element: a copy and an
                # array make the checks (and the consumer's reads) C loops
                data = mv[:n].tobytes()
                if _uniform(data, n, length, seq):
                    consume(data, length)
                    first = False
                    continue
            try:
                if _split(mv, n, seq, consume):
                    return
            except CtnetlinkError as e:
                if not (first and attributes and e.errno in (errno.EINVAL, errno.EOPNOTSUPP)):
                    raise
                attributes = b""            # this kernel will not filter: the caller filters
                seq += 1
                sock.send(request(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, family))
            first = False
    finally:
        mv.release()


_patterns: dict[tuple[int, int, int, int], tuple[bytes, bytes]] = {}


def _uniform(data: bytes, n: int, length: int, seq: int) -> bool:
    """Is the chunk exactly n/length ctnetlink replies of one length, type, flags and seq?"""
    words = array("I")
    words.frombytes(data)
    step = length // 4
    kind = int.from_bytes(data[4:6], sys.byteorder)
    flags = int.from_bytes(data[6:8], sys.byteorder)
    if kind >> 8 != NFNL_SUBSYS_CTNETLINK or not flags & NLM_F_MULTI:
        return False
    k = n // length
    pat = _patterns.get((length, k, kind, flags))
    if pat is None:
        if len(_patterns) > 64:
            _patterns.clear()
        pat = _patterns[(length, k, kind, flags)] = (struct.pack("=I", length) * k,
                                                     struct.pack("=HH", kind, flags) * k)
    return (words[0::step].tobytes() == pat[0] and words[1::step].tobytes() == pat[1]
            and words[2::step].tobytes() == struct.pack("=I", seq) * k)


def _split(mv: memoryview, n: int, seq: int, consume: Callable[[memoryview | bytes, int], None]) -> bool:
    """Replies of a mixed chunk, passed on grouped by length; True at the dump's end."""
    offsets: dict[int, list[int]] = {}
    done = False
    off = 0
    while off + 16 <= n:
        length, kind, flags, mseq, _ = HDR.unpack_from(mv, off)
        if length < 16 or off + length > n:
            raise CtnetlinkError("malformed netlink message")
        if mseq == seq:
            if kind == NLMSG_DONE:
                done = True
                break
            if kind == NLMSG_ERROR:
                err = struct.unpack_from("=i", mv, off + 16)[0]
                if err < 0:
                    raise CtnetlinkError(_why(-err), -err)
                done = True
                break
            if kind >> 8 == NFNL_SUBSYS_CTNETLINK:
                o = offsets.get(length)
                if o is None:
                    offsets[length] = [off]
                else:
                    o.append(off)
        off += (length + 3) & ~3
    for length, offs in offsets.items():
        if len(offs) == 1:
            consume(mv[offs[0]:offs[0] + length], length)
        elif length & 3 == 0 and offs[-1] - offs[0] == (len(offs) - 1) * length:
            consume(mv[offs[0]:offs[-1] + length], length)      # already back to back
        else:
            consume(b"".join([mv[o:o + length] for o in offs]), length)
    return done
