"""NETLINK_SOCK_DIAG dump: the fast path (stdlib socket + struct only).

One dump per (protocol, family) -- for TCP over both families, one legacy
TCPDIAG_GETSOCK dump that walks the socket hash once for IPv4 and IPv6. State
masks and the local-port range go to the kernel (idiag_states and
INET_DIAG_REQ_BYTECODE), so unwanted sockets never cross into Python. The
kernel's AUTO test (port not bound by the program) splits each dump in two
complementary halves, auto and not-auto: together they return each socket exactly
once, so the auto-bound column costs one extra walk, not a second copy of the table.

Parsing avoids per-socket objects beyond one tuple: one precompiled struct per
message, columns built with zip() and array(), ports byteswapped in bulk.
Structures: include/uapi/linux/inet_diag.h, sock_diag.h, netlink.h.
"""
from __future__ import annotations

import _socket as socket  # the C module: socket.py builds IntEnums of every constant at import (~3 ms)
import errno
import functools
import operator
import os
import struct
import sys
from array import array
from collections import Counter

from .masks import and_, is_, or_
from .table import (
    AUTO_NO,
    AUTO_UNKNOWN,
    AUTO_YES,
    PROTO_CODES,
    TCP_LISTEN,
    SocketTable,
)

TYPE_CHECKING = False     # typing's would import typing on `portscope port N`'s path
if TYPE_CHECKING:
    from typing import Collection, Iterable, Iterator, Literal

    from ..ports import PortRange

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_NOCOOKIE = 0xFFFFFFFF

# bytecode op codes (enum in inet_diag.h)
BC_JMP, BC_S_GE, BC_S_LE, BC_D_GE, BC_D_LE, BC_AUTO = 1, 2, 3, 4, 5, 6

# every state ss shows with -a: 1..12 (NEW_SYN_RECV is 12); not 13 BOUND_INACTIVE
ALL_STATES = sum(1 << s for s in range(1, 13))
_NO_BIND_LOCK = (1 << 3) | (1 << 6) | (1 << 12)     # SYN_RECV, TIME_WAIT, NEW_SYN_RECV
_UNCONNECTED_STATES = (1 << 10) | (1 << 13)         # LISTEN, BOUND_INACTIVE: no remote port
_BOUND_INACTIVE = 1 << 13

_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_LITTLE = sys.byteorder == "little"
_ORDER: Literal["little", "big"] = "little" if _LITTLE else "big"

_HDR = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBxI" "HH16s16sI8s")            # inet_diag_req_v2, 56 bytes
# struct inet_diag_req (the pre-sock_diag TCPDIAG_GETSOCK request), 60 bytes: the
# kernel dumps it with family AF_UNSPEC, i.e. IPv4 and IPv6 in ONE walk of the
# socket hash instead of two (each walk costs ~25 ms at 100k sockets, even empty)
_LEGACY_REQ = struct.Struct("=BBBB" "HH16s16sI8s" "II")
TCPDIAG_GETSOCK = 18
BOTH = 0                      # "family" of a legacy dump: every record says its own
_OP = struct.Struct("=BBH")
_ATTR = struct.Struct("=HH")
# nlmsghdr (16) + inet_diag_msg (72): family @16, state @17, sport @20, dport @22,
# src @24, dst @40, uid @80, inode @84
HEAD = 88
assert _REQ.size == 56 and _LEGACY_REQ.size == 60

RECV_BYTES = 1 << 20          # the kernel fills at most ~32 KiB per dump skb; room to spare


class NetlinkRefused(Exception):
    """sock_diag is not available to us (EPERM, unsupported protocol family, ...)."""


class ProtocolMissing(Exception):
    """This kernel's sock_diag does not serve the protocol (module absent)."""


def bytecode(sport: PortRange | None = None, auto: bool | None = None, *, unconnected: bool = False,
             outside: bool = False) -> bytes:
    """INET_DIAG_REQ_BYTECODE program: accept iff sport in range and AUTO == auto.

    With `outside`, every socket whose sport is outside the range is accepted too (the
    census of read_table counts them, then drops them).

    With `unconnected`, the sockets without a remote port (listeners, bound-only) go with
    the auto half: auto=True accepts AUTO or dport 0, auto=False accepts not AUTO and a
    dport; the two halves still return each socket exactly once.
    Each test jumps to the next op on success and past the end (len+4: reject)
    on failure; the kernel accepts only when the program ends exactly at len (and its
    audit wants every op on the chain of `yes` jumps, so alternatives jump on `no`).
    """
    ops: list[tuple[int, int, int]] = []       # (code, yes, no); no filled below
    if sport is not None:
        past = -2 if outside else -1           # a port outside the range: accept, else reject
        ops += [(BC_S_GE, 8, past), (0, 0, sport.low), (BC_S_LE, 8, past), (0, 0, sport.high)]
    if unconnected and auto is not None:
        # AUTO true -> the JMP: accept (auto=True) or reject; false -> the dport test
        ops += [(BC_AUTO, 4, 8), (BC_JMP, 4, -2 if auto else -1)]
        ops += [(BC_D_LE, 8, -1), (0, 0, 0)] if auto else [(BC_D_GE, 8, -1), (0, 0, 1)]
    elif auto is True:
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
    """family 4 or 6: inet_diag_req_v2; family BOTH (TCP only): the legacy request."""
    cookie = struct.pack("=II", INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE)
    if family == BOTH:
        req = _LEGACY_REQ.pack(0, 0, 0, 0, 0, 0, bytes(16), bytes(16), 0, cookie, states, 0)
        kind = TCPDIAG_GETSOCK
    else:
        req = _REQ.pack(_FAMILY[family], proto, 0, states, 0, 0, bytes(16), bytes(16), 0, cookie)
        kind = SOCK_DIAG_BY_FAMILY
    if bc:
        req += _ATTR.pack(4 + len(bc), INET_DIAG_REQ_BYTECODE) + bc
    return _HDR.pack(16 + len(req), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + req


def open_socket() -> socket.socket:
    """A NETLINK_SOCK_DIAG socket; NetlinkRefused (so the caller falls back to procfs) if refused."""
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
         buf: bytearray) -> dict[int, bytearray]:
    """One dump -> {stride: blob}: the replies, grouped so that every record in a blob
    starts at a multiple of its stride (inet_diag_msg at offset 16 of each record)."""
    out: dict[int, bytearray] = {}
    for stride, chunk in dump_chunks(sock, family, proto, states, bc, seq, buf):
        blob = out.get(stride)
        if blob is None:
            blob = out[stride] = bytearray()
        blob += chunk
    return out


BATCH_BYTES = 1 << 20          # replies parsed per batch: the table grows, the raw dump never sits whole


def dump_batches(sock: socket.socket, family: int, proto: int, states: int, bc: bytes, seq: int,
                 buf: bytearray) -> Iterator[tuple[int, int, bytes]]:
    """One dump in pieces, as (rank, stride, records): each stride's records go out every
    BATCH_BYTES and what is left at the end, so the reader parses them into columns while
    the dump goes on and memory holds the table, not the replies. `rank` is the order in
    which the dump first showed that stride; dump()'s row order is every record of rank 0,
    then of rank 1, ... (append_dump() puts them back in that order).

    Every stride streams, not only the first one seen: the first chunk of a TCP dump
    usually mixes listeners with other replies and comes through dump_chunks()'s head copy
    (stride HEAD), so the bulk of the dump is not the first stride seen.
    """
    ranks: dict[int, int] = {}
    # chunks joined once per batch: a bytearray grown chunk by chunk is copied again at
    # every reallocation (several times a batch's bytes; 5% of a pressure run at 100k)
    pending: dict[int, list[bytes]] = {}
    held: dict[int, int] = {}
    for stride, chunk in dump_chunks(sock, family, proto, states, bc, seq, buf):
        parts = pending.get(stride)
        if parts is None:
            ranks.setdefault(stride, len(ranks))
            parts = pending[stride] = []
            held[stride] = 0
        parts.append(bytes(chunk))       # (a view of the receive buffer: copied before the next)
        held[stride] += len(chunk)
        if held[stride] >= BATCH_BYTES:
            del pending[stride]
            yield ranks[stride], stride, b"".join(parts)
    for stride, parts in pending.items():
        yield ranks[stride], stride, b"".join(parts)


def append_dump(table: SocketTable, batches: Iterable[tuple[int, int, bytes]], proto: int, family: int,
                auto: int, seen: dict[bytes, bytes] | None = None, unconnected_unknown: bool = False) -> None:
    """Parse dump_batches() onto `table` in dump()'s row order: rank 0's batches straight
    onto it (they come first, in order), every other rank's into a table of its own as they
    arrive, appended by rank at the end (columns copied in C)."""
    parts: dict[int, SocketTable] = {}
    for rank, stride, blob in batches:
        if rank == 0:
            _append(table, {stride: blob}, proto, family, auto, seen, unconnected_unknown)
            continue
        part = parts.get(rank)
        if part is None:
            part = parts[rank] = SocketTable(backend=table.backend)
        _append(part, {stride: blob}, proto, family, auto, seen, unconnected_unknown)
    for rank in sorted(parts):
        table.extend(parts[rank])


def dump_chunks(sock: socket.socket, family: int, proto: int, states: int, bc: bytes, seq: int,
                buf: bytearray) -> Iterator[tuple[int, bytes | bytearray | memoryview]]:
    """One dump as it arrives: (stride, records) per received chunk, every record of a
    chunk `stride` bytes long (inet_diag_msg at offset 16). The chunk is only valid until
    the next one is asked for (it may be a view of `buf`): callers that aggregate while
    reading (counts) never hold more than one.

    Within one dump the kernel's replies nearly always have one size (the same
    attributes for every socket of a kind), so a received chunk is checked for that
    in C (strided views of its length and type words) and passed on whole. Only chunks
    that mix sizes, or end the dump, go through a Python loop that copies each
    reply's fixed 88-byte head into a stride-88 chunk.
    """
    try:
        sock.send(_request(family, proto, states, bc, seq))
    except OSError as e:
        raise NetlinkRefused(_why(e))
    kind_ok = TCPDIAG_GETSOCK if family == BOTH else SOCK_DIAG_BY_FAMILY
    mv = memoryview(buf)
    fb = int.from_bytes
    bo = sys.byteorder
    tb = 4 if _LITTLE else 5       # the low byte of nlmsg_type (all our types are < 256)
    limit = len(buf) - 128         # a head is copied even at a short final message
    sizes: dict[int, int] = {}     # reply length -> replies seen in mixed chunks
    try:
        while True:
            try:
                n = sock.recv_into(buf, limit)
            except OSError as e:
                raise NetlinkRefused(_why(e))
            if n == 0:
                raise NetlinkRefused("netlink socket closed mid-dump")
            if _uniform(mv, n, kind_ok):
                yield fb(mv[0:4], bo), mv[:n]
                continue
            if len(sizes) >= 2:
                parts = _split_two(mv[:n], sizes, kind_ok)
                if parts is not None:
                    yield from parts
                    continue
            heads = bytearray()
            off = 0
            done = False
            while off < n:
                length = fb(mv[off:off + 4], bo)
                if buf[off + tb] == kind_ok:
                    heads += mv[off:off + HEAD]
                    sizes[length] = sizes.get(length, 0) + 1
                else:
                    kind = struct.unpack_from("=H", buf, off + 4)[0]
                    if kind in (NLMSG_DONE, NLMSG_ERROR):
                        err = struct.unpack_from("=i", buf, off + 16)[0] if length >= 20 else 0
                        if err < 0:
                            _raise(-err)
                        if kind == NLMSG_DONE:
                            done = True
                            break
                if length < 16:
                    raise NetlinkRefused("malformed netlink message")
                off += (length + 3) & ~3
            if heads:
                yield HEAD, heads
            if done:
                return
    finally:
        mv.release()


def _split_two(mv: memoryview, sizes: dict[int, int], kind: int) -> list[tuple[int, bytes]] | None:
    """A chunk mixing replies of two lengths (full sockets and TIME_WAIT ones, interleaved in
    the kernel's hash) as two uniform blobs, in C: bytes.split() on the header words of the
    rarer of the two lengths `sizes` has seen most (the reply-by-reply loop costs ~1 us a
    reply: a third of a pressure read at 100k when TIME_WAIT is mixed in). None when that does
    not give exactly uniform replies of the two lengths (header-like bytes inside a reply, a
    control message): the caller's loop then parses the chunk reply by reply."""
    (common, _), (rare, _) = sorted(sizes.items(), key=lambda kv: -kv[1])[:2]
    if (rare | common) & 3 or min(rare, common) < HEAD:
        return None
    raw = mv.tobytes()
    seq_pid = raw[8:16]
    sep = struct.pack("=IHH", rare, kind, 2)
    pieces = raw.split(sep)
    r = rare - 8
    rest = pieces[1:]
    rare_blob = sep + sep.join([p[:r] for p in rest]) if rest else b""
    common_blob = pieces[0] + b"".join([p[r:] for p in rest])
    if len(rare_blob) != len(rest) * rare or len(common_blob) % common:
        return None
    out: list[tuple[int, bytes]] = []
    for length, blob in ((common, common_blob), (rare, rare_blob)):
        if blob:
            # the sequence and port id of every reply as well: a split inside a reply
            # (header-like bytes in an address) cannot pass
            k = len(blob) // length
            words = memoryview(blob).cast("I")
            step = length // 4
            if not (_uniform(memoryview(blob), len(blob), kind)
                    and words[2::step].tobytes() == seq_pid[:4] * k
                    and words[3::step].tobytes() == seq_pid[4:] * k):
                return None
            out.append((length, blob))
    return out


_patterns: dict[tuple[int, int, int], tuple[bytes, bytes]] = {}


def _uniform(mv: memoryview, n: int, kind: int) -> bool:
    """Is buf[:n] exactly n/L diag replies of one length L (no DONE, no error)?"""
    length = int.from_bytes(mv[0:4], sys.byteorder)
    if length < HEAD or length & 3 or n % length:
        return False
    k = n // length
    pat = _patterns.get((length, k, kind))
    if pat is None:
        # type and flags (NLM_F_MULTI) words of every reply
        pat = _patterns[(length, k, kind)] = (struct.pack("=I", length) * k, struct.pack("=HH", kind, 2) * k)
    words = mv[:n].cast("I")
    step = length // 4
    return words[0::step].tobytes() == pat[0] and words[1::step].tobytes() == pat[1]


def _raise(code: int):
    if code in (errno.ENOENT, errno.EOPNOTSUPP, errno.EPROTONOSUPPORT, errno.EINVAL):
        raise ProtocolMissing(errno.errorcode.get(code, str(code)))
    raise NetlinkRefused(f"{errno.errorcode.get(code, code)}: {os.strerror(code)}")


def _cut(blob, stride: int, code: Literal["H", "I"], offset: int) -> array:
    """The field at byte `offset` of every `stride`-byte record, via a strided view."""
    a = array(code)
    size = a.itemsize
    a.frombytes(memoryview(blob).cast(code)[offset // size::stride // size].tobytes())
    return a


def _append(table: SocketTable, blobs: dict[int, bytes] | dict[int, bytearray], proto: int, family: int, auto: int,
            seen: dict[bytes, bytes] | None = None, unconnected_unknown: bool = False) -> None:
    for stride, raw in blobs.items():
        blob = bytes(raw)               # slices of bytes are bytes: the address column
        size = len(blob)
        n = size // stride
        if not n:
            continue
        states = blob[17::stride]
        table.proto.frombytes(bytes((proto,)) * n)
        first = operator.itemgetter(0)
        if family == BOTH:
            fams = blob[16::stride].translate(_FAMILY_CODE)
            v4 = fams.count(4)
            w = 4 if v4 == n else 16
        else:
            fams = bytes((family,)) * n
            v4 = n if family == 4 else 0
            w = 4 if family == 4 else 16
        table.family.frombytes(fams)
        table.state.frombytes(states)
        # one object per distinct address (`seen`, shared by one read), not per row: few
        # addresses repeat over many sockets, and a 4-byte bytes object costs 37 bytes
        if seen is None:
            seen = {}
        for offset, column in ((24, table.local_addr), (40, table.remote_addr)):
            if w == 4:
                # IPv4: the address as one integer per row (a strided view, in C), each
                # distinct one turned back into its 4 bytes once
                words = _cut(blob, stride, "I", offset)
                known = {v: seen.setdefault(b, b) for v in set(words) for b in (v.to_bytes(4, _ORDER),)}
                if len(known) == 1:       # one address for the whole batch (a busy client)
                    column.extend([*known.values()] * len(words))
                else:
                    column.extend(map(known.__getitem__, words))
                continue
            addrs: list[bytes] = list(map(first, _addr_struct(stride, offset, w).iter_unpack(blob)))
            if v4:                     # a legacy dump mixing families: IPv4 uses 4 bytes
                addrs = [a[:4] if f == 4 else a for a, f in zip(addrs, fams)]
            column.extend(map(seen.setdefault, addrs, addrs))
        sp = _cut(blob, stride, "H", 20)
        dp = _cut(blob, stride, "H", 22)
        if _LITTLE:                    # ports arrive in network order
            sp.byteswap()
            dp.byteswap()
        table.local_port.extend(sp)
        table.remote_port.extend(dp)
        table.uid.extend(_cut(blob, stride, "I", 80))
        # the column is 64-bit: the 32-bit inodes go into the low words of zeroed
        # 8-byte slots (a strided copy in C, not a Python int per row)
        wide = bytearray(8 * n)
        memoryview(wide).cast("I")[0 if _LITTLE else 1::2] = _cut(blob, stride, "I", 84)
        table.inode.frombytes(wide)
        if auto == AUTO_YES and unconnected_unknown:
            # the walk took every socket without a remote port, AUTO or not (bytecode
            # `unconnected`): for those the kernel did not say
            dpb = dp.tobytes()
            zero = and_(is_(dpb[0::2], 0), is_(dpb[1::2], 0)).translate(_HIGH_BIT)
            table.auto_bound.frombytes(or_(states, zero).translate(_AUTO_OF_STATE))
        elif auto == AUTO_YES:
            # TIME_WAIT and request sockets carry no bind lock, so AUTO says yes for
            # all of them: the kernel cannot tell there
            table.auto_bound.frombytes(states.translate(_AUTO_OF_STATE))
        elif auto == AUTO_IN_RECORD:
            table.auto_bound.frombytes(blob[0::stride])
        else:
            table.auto_bound.frombytes(bytes((auto,)) * n)


@functools.lru_cache(maxsize=64)
def _addr_struct(stride: int, offset: int, width: int) -> struct.Struct:
    """One address per record, as bytes, for iter_unpack (C speed, no Python loop)."""
    return struct.Struct(f"={offset}x{width}s{stride - offset - width}x")


AUTO_IN_RECORD = 255        # _append: byte 0 of each record is its AUTO_* code (tcpiter's records)
_FAMILY_CODE = bytes(4 if i == socket.AF_INET else 6 if i == socket.AF_INET6 else 0 for i in range(256))
# 128 | state: a row the kernel did not test (dport 0 in an `unconnected` walk)
_AUTO_OF_STATE = bytes(AUTO_UNKNOWN if s in (3, 6, 12) or s >= 128 else AUTO_YES for s in range(256))
_HIGH_BIT = bytes([0, 128] + [0] * 254)


def read_table(protos: Collection[str], families: Collection[int], states: set[int] | None,
               sport: PortRange | None, auto: bool = True, *, model_auto: bool = False,
               census: bool = False, inodes: bool = True) -> SocketTable:
    """Sockets of the calling thread's network namespace via sock_diag.

    Raises NetlinkRefused when sock_diag is unusable (the facade then reads procfs).
    Protocols this kernel does not serve (no UDP-Lite) are skipped. SCTP is not
    asked here: the facade reads it from /proc/net/sctp (see sockets/__init__.py).
    model_auto (with auto): the AUTO bit only where the pressure model reads it, TCP
    sockets with a remote port; the others (listeners, bound-only, every UDP socket)
    come AUTO_UNKNOWN, which saves the UDP AUTO=no walks and the second bind-hash walk
    for BOUND_INACTIVE (~15 ms at 100k sockets).
    census (with model_auto, TCP over both families, every state): skip the not-AUTO walk
    when it can return nothing: the first walk also takes the sockets outside `sport`
    (counted, then dropped), and if it saw as many full TCP sockets as the kernel's
    per-namespace count (sockstat's TCP and TCP6 `inuse`, read before and after), none
    was left for the second. Every walk crosses the whole socket hash, which all
    namespaces share, so this halves the cost of a namespace that holds few sockets.
    inodes=False: TCP rows read by the BPF iterator may carry inode 0 (it then skips two
    cache misses per socket); for readers that never look at inodes, such as pressure.
    """
    mask = ALL_STATES if states is None else sum(1 << s for s in states)
    table = SocketTable(backend="netlink")
    seen: dict[bytes, bytes] = {}
    sock = open_socket()
    buf = bytearray(RECV_BYTES)
    seq = 0
    tcp = PROTO_CODES["tcp"]
    # census reads (--all-netns: many namespaces, most of them small, in one shared hash)
    # stay with sock_diag: its one counted walk beat the iterator's walk plus the bind-hash
    # walk there (README, Performance: "the BPF TCP iterator")
    via_iter = (auto and not census and "tcp" in protos
                and os.environ.get("PORTSCOPE_TCP_READER", "") != "sock_diag")
    if via_iter and os.geteuid() != 0:
        # said here, before importing ctypes and the loader for nothing
        table.notes.append("TCP read with sock_diag: not root (a BPF iterator needs CAP_BPF and CAP_PERFMON)")
        via_iter = False
    if via_iter:
        from . import tcpiter  # ctypes and the BPF loader: only for reads that want the AUTO bit
    try:
        for p, code, fams in _walk_plan(protos, families):
            if via_iter and code == tcp:
                # its own table, appended once whole: a read that fails half-way leaves
                # nothing behind for the sock_diag walks below
                part = SocketTable(backend="netlink")
                try:
                    seq = _tcp_by_iterator(part, sock, buf, seq, mask, sport, families, fams,
                                           model_auto, seen, inodes)
                    table.extend(part)
                    continue
                except tcpiter.Unavailable as e:
                    table.notes.append(f"TCP read with sock_diag: {e}")
                except ProtocolMissing:
                    # the listeners' and bound-only sockets' dumps: as for the walks below
                    if _missing(p, fams[0]):
                        return read_table(protos, families, states, sport, auto, model_auto=model_auto,
                                          inodes=inodes)
                    continue
            for fam in fams:
                # every extra dump is a whole walk of the socket hash (~25 ms at 100k
                # even when it returns nothing), so: all sockets that pass AUTO, then
                # the few that do not; TIME_WAIT and request sockets always pass
                # AUTO, and stay out of the second walk's bytecode
                parts: list[tuple[int, bool | None, int]]
                split = model_auto and code == tcp
                if auto and split:
                    # dport-0 sockets (listeners, BOUND_INACTIVE) all in the first walk
                    parts = [(mask, True, AUTO_YES),
                             (mask & ~_NO_BIND_LOCK & ~_UNCONNECTED_STATES, False, AUTO_NO)]
                elif auto and not model_auto:
                    parts = [(mask, True, AUTO_YES), (mask & ~_NO_BIND_LOCK, False, AUTO_NO)]
                else:
                    parts = [(mask, None, AUTO_UNKNOWN)]
                tally = (_Census(sport) if census and auto and split and fam == BOTH
                         and (mask & ALL_STATES) == ALL_STATES else None)
                try:
                    for m, want, col in parts:
                        if tally is not None and want is False and tally.complete():
                            continue        # the not-AUTO walk would return nothing
                        if m:
                            seq += 1
                            counting = tally is not None and want is True
                            bc = bytecode(sport, want, unconnected=split, outside=counting)
                            batches = dump_batches(sock, fam, code, m, bc, seq, buf)
                            if counting and tally is not None:
                                tally.start()
                                batches = tally.through(batches)
                            append_dump(table, batches, code, fam, col, seen, split)
                            if counting and tally is not None:
                                tally.stop()
                except ProtocolMissing:
                    if _missing(p, fam):
                        return read_table(protos, families, states, sport, auto, model_auto=model_auto,
                                          inodes=inodes)
                    continue
            if auto and code == tcp:
                seq = _listeners(table, sock, fams, buf, seq)
    finally:
        sock.close()
    return table


def _tcp_by_iterator(table: SocketTable, sock: socket.socket, buf: bytearray, seq: int, mask: int,
                     sport: PortRange | None, families: Collection[int], fams: tuple[int, ...],
                     model_auto: bool, seen: dict[bytes, bytes], inodes: bool = True) -> int:
    """read_table's TCP with the BPF iterator (tcpiter.py): one walk, every row with its
    AUTO code, then what the iterator cannot see from sock_diag: BOUND_INACTIVE sockets
    (the bind hash) and the listeners' ports. tcpiter.Unavailable when it cannot run; the
    rows it added to `table` are then the caller's to drop. ProtocolMissing as for
    read_table's walks."""
    from . import tcpiter
    tcp = PROTO_CODES["tcp"]
    family = 0 if set(families) >= {4, 6} else _FAMILY[next(iter(families))]
    r = tcpiter.reader(mask & ALL_STATES, (sport.low, sport.high) if sport is not None else None,
                       family, model_auto, inodes)
    if mask & ALL_STATES:
        for blob in r.batches():
            _append(table, {HEAD: blob}, tcp, BOTH, AUTO_IN_RECORD, seen)
    if mask & _BOUND_INACTIVE:
        bc_parts: list[tuple[bool | None, int]] = ([(None, AUTO_UNKNOWN)] if model_auto
                                                  else [(True, AUTO_YES), (False, AUTO_NO)])
        # (a kernel before BOUND_INACTIVE ignores the bit: no rows, no error)
        for fam in fams:
            for want, col in bc_parts:
                seq += 1
                batches = dump_batches(sock, fam, tcp, _BOUND_INACTIVE, bytecode(sport, want), seq, buf)
                append_dump(table, batches, tcp, fam, col, seen)
    return _listeners(table, sock, fams, buf, seq)


def tcp_in_use() -> int | None:
    """Full TCP sockets of the calling thread's namespace, IPv4 and IPv6 (sockstat's
    `inuse`: every hashed socket, listeners included; not TIME_WAIT, request or
    bound-only sockets), or None if the kernel does not say."""
    total = 0
    for name, key in (("sockstat", "TCP:"), ("sockstat6", "TCP6:")):
        try:
            with open(f"/proc/thread-self/net/{name}") as f:
                text = f.read()
        except FileNotFoundError:
            if name == "sockstat6":          # no IPv6 in this kernel: no TCP6 sockets
                continue
            return None
        except OSError:
            return None
        for line in text.splitlines():
            w = line.split()
            if w and w[0] == key and len(w) >= 3 and w[1] == "inuse" and w[2].isdigit():
                total += int(w[2])
                break
        else:
            return None
    return total


class _Census:
    """The first (AUTO) walk of a census read: counts the full sockets it returns, drops
    those outside the port range from the rows, and says whether the kernel's own count
    matched (then no not-AUTO socket was left behind)."""

    def __init__(self, sport: PortRange | None) -> None:
        self.sport = sport
        self.full = 0
        self.sure = True           # no row the count cannot place (SYN_RECV)
        self.before: int | None = None
        self.after: int | None = None

    def start(self) -> None:
        self.before = tcp_in_use()

    def stop(self) -> None:
        self.after = tcp_in_use()

    def complete(self) -> bool:
        """True when every full socket of the namespace came back in the first walk."""
        return self.sure and self.before is not None and self.before == self.after == self.full

    def take(self, blobs: dict[int, bytearray]) -> dict[int, bytearray]:
        out: dict[int, bytearray] = {}
        for stride, blob in blobs.items():
            states = bytes(blob[17::stride])
            # TIME_WAIT rows say timer 3 (no full socket says it); bound-only rows CLOSE
            # (or BOUND_INACTIVE); a request socket and a full SYN_RECV one both say
            # SYN_RECV: the count cannot tell them apart, so the second walk runs
            if states.count(3):
                self.sure = False
            self.full += (len(states) - bytes(blob[18::stride]).count(3)
                          - states.count(7) - states.count(13))
            out[stride] = self._in_range(blob, stride)
        return out

    def through(self, batches: Iterable[tuple[int, int, bytes]]) -> Iterator[tuple[int, int, bytes]]:
        """dump_batches() as the census counts and trims them (take() per batch)."""
        for rank, stride, blob in batches:
            yield rank, stride, bytes(self.take({stride: bytearray(blob)})[stride])

    def _in_range(self, blob: bytearray, stride: int) -> bytearray:
        if self.sport is None or not blob:
            return blob
        sp = _cut(blob, stride, "H", 20)
        if _LITTLE:
            sp.byteswap()
        lo, hi = self.sport.low, self.sport.high
        if min(sp) >= lo and max(sp) <= hi:
            return blob
        mv = memoryview(blob)
        return bytearray(b"".join(mv[i * stride:(i + 1) * stride] for i, p in enumerate(sp) if lo <= p <= hi))


_legacy_ok = True


def _legacy_off() -> None:
    global _legacy_ok
    _legacy_ok = False


def _walk_plan(protos: Collection[str], families: Collection[int]) -> Iterator[tuple[str, int, tuple[int, ...]]]:
    """(name, code, families to dump) per protocol asked; SCTP is left to the facade
    (/proc/net/sctp). TCP over both families is ONE legacy dump while the kernel has it
    (read lazily: _missing() may turn it off mid-read)."""
    tcp = PROTO_CODES["tcp"]
    for p in protos:
        if p == "sctp":
            continue
        code = PROTO_CODES[p]
        both = code == tcp and set(families) == {4, 6} and _legacy_ok
        yield p, code, (BOTH,) if both else tuple(families)


def _missing(p: str, fam: int) -> bool:
    """What a ProtocolMissing from dumping `p` means: True when it was the legacy dump (off
    from now on: the caller starts again per family), False for an optional protocol (skip
    it); NetlinkRefused when the kernel does not serve TCP or UDP at all."""
    if fam == BOTH:
        _legacy_off()
        return True
    if p in ("tcp", "udp"):
        raise NetlinkRefused(f"sock_diag does not serve {p} (tcp_diag/udp_diag missing)")
    return False


def _listeners(table, sock, families, buf, seq) -> int:
    """(tcp, port) of every listener, so accepted TIME_WAIT rows are told from clients.

    A LISTEN-only dump walks only the kernel's small listening hash, so it is
    cheaper than scanning our own columns, and it ignores the row filters.
    """
    tcp = PROTO_CODES["tcp"]
    ls = table.listen_ports
    for fam in families:
        seq += 1
        for stride, blob in dump(sock, fam, tcp, 1 << TCP_LISTEN, b"", seq, buf).items():
            ls.update((tcp, socket.ntohs(p)) for p in _cut(blob, stride, "H", 20))
    return seq


def records(sock: socket.socket, family: int, proto: int, states: int, seq: int,
            buf: bytearray) -> Iterator[tuple[int, int]]:
    """(offset, length) of each inet_diag reply of one dump, attributes included, in `buf`
    (valid until the next item). For readers that need the attributes the fast path drops
    (sockets/cgroups.py: INET_DIAG_CGROUP_ID; egress.py: TIME_WAIT expiry): a plain loop,
    slower than read_table, so only when asked."""
    try:
        sock.send(_request(family, proto, states, b"", seq))
    except OSError as e:
        raise NetlinkRefused(_why(e))
    while True:
        try:
            n = sock.recv_into(buf)
        except OSError as e:
            raise NetlinkRefused(_why(e))
        off = 0
        while off + 16 <= n:
            length, kind = struct.unpack_from("=IH", buf, off)
            if length < 16:
                raise NetlinkRefused("malformed netlink message")
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                err = struct.unpack_from("=i", buf, off + 16)[0]
                if err < 0:
                    _raise(-err)
                return
            if kind == SOCK_DIAG_BY_FAMILY and length >= HEAD:
                yield off, length
            off += (length + 3) & ~3


def attributes(buf: bytearray, off: int, length: int) -> Iterator[tuple[int, int, int]]:
    """(type, value offset, value length) of each attribute of the reply at `off`."""
    a, end = off + HEAD, off + length
    while a + 4 <= end:
        alen, atype = _ATTR.unpack_from(buf, a)
        if alen < 4:
            return
        yield atype, a + 4, alen - 4
        a += (alen + 3) & ~3


def count_states(protos: Collection[str], families: Collection[int],
                 states: set[int] | None) -> Counter[tuple[int, int]]:
    """{(proto code, state code): sockets} of the calling thread's namespace, counted
    while the dump arrives: memory stays that of one received chunk whatever the socket
    count (`conns --count`). The same dumps as read_table(auto=False); the same errors."""
    mask = ALL_STATES if states is None else sum(1 << s for s in states)
    out: Counter[tuple[int, int]] = Counter()
    sock = open_socket()
    buf = bytearray(RECV_BYTES)
    seq = 0
    try:
        for p, code, fams in _walk_plan(protos, families):
            for fam in fams:
                seq += 1
                by_state: Counter[int] = Counter()
                try:
                    for stride, chunk in dump_chunks(sock, fam, code, mask, b"", seq, buf):
                        by_state.update(chunk[17::stride].tobytes() if isinstance(chunk, memoryview)
                                        else bytes(chunk[17::stride]))
                except ProtocolMissing:
                    if _missing(p, fam):
                        return count_states(protos, families, states)
                    continue
                out.update({(code, st): k for st, k in by_state.items()})
    finally:
        sock.close()
    return out
