"""The conntrack table, columnar: one array per field, entry i in row i of each.

A ctnetlink dump sends one message per entry, and entries of one kind (IPv4 TCP
without accounting, IPv6 UDP, ...) carry the same attributes in the same order,
so their messages have one length and one layout. The parser walks the first
message of each length in Python to learn where every field sits, checks with
strided views (in C) that every other message of that length has the same
attribute headers at the same offsets, and then cuts each column out of the whole
group at once. Messages that do not fit their group's layout are walked one by
one. No Python object is made per entry except the raw address bytes (as the
socket table keeps them).

Attributes (include/uapi/linux/netfilter/nfnetlink_conntrack.h):
CTA_TUPLE_ORIG 1, CTA_TUPLE_REPLY 2 (each: CTA_TUPLE_IP 1 {V4_SRC 1, V4_DST 2,
V6_SRC 3, V6_DST 4}, CTA_TUPLE_PROTO 2 {PROTO_NUM 1 u8, SRC_PORT 2 be16,
DST_PORT 3 be16}), CTA_STATUS 3 be32, CTA_PROTOINFO 4 {CTA_PROTOINFO_TCP 1
{TCP_STATE 1 u8}}, CTA_TIMEOUT 7 be32 (seconds left), CTA_ID 12 be32, CTA_ZONE 18 be16.
"""
from __future__ import annotations

import socket
import struct
import sys
from array import array
from dataclasses import dataclass, field
from operator import itemgetter

from .ctnetlink import ATTR, NLA_TYPE_MASK, CtnetlinkError

CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_PROTOINFO, CTA_TIMEOUT, CTA_ZONE = 1, 2, 3, 4, 7, 18
CTA_ID = 12                            # be32, unique among live entries only by chance (a hash)
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE = 1, 1

# include/uapi/linux/netfilter/nf_conntrack_common.h, enum ip_conntrack_status
IPS_EXPECTED, IPS_SEEN_REPLY, IPS_ASSURED, IPS_CONFIRMED = 0x1, 0x2, 0x4, 0x8
IPS_SRC_NAT, IPS_DST_NAT = 0x10, 0x20
STATUS_NAMES = {IPS_EXPECTED: "EXPECTED", IPS_SEEN_REPLY: "SEEN_REPLY", IPS_ASSURED: "ASSURED",
                IPS_CONFIRMED: "CONFIRMED", IPS_SRC_NAT: "SRC_NAT", IPS_DST_NAT: "DST_NAT",
                0x40: "SEQ_ADJUST", 0x80: "SRC_NAT_DONE", 0x100: "DST_NAT_DONE", 0x200: "DYING",
                0x400: "FIXED_TIMEOUT", 0x800: "TEMPLATE", 0x1000: "NAT_CLASH", 0x2000: "HELPER",
                0x4000: "OFFLOAD", 0x8000: "HW_OFFLOAD"}

# enum tcp_conntrack (include/uapi/linux/netfilter/nf_conntrack_tcp.h), named as
# conntrack -L prints them (libnetfilter_conntrack); 9 is SYN_SENT2, shown as LISTEN
TCP_STATES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
              "LAST_ACK", "TIME_WAIT", "CLOSE", "LISTEN")
TCP_TIME_WAIT = 7
NO_STATE = 255                         # not TCP (or no protoinfo): no state column value

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 33: "dccp", 58: "icmpv6", 132: "sctp", 136: "udplite", 47: "gre"}
_LITTLE = sys.byteorder == "little"

# the fields of one entry: name -> (attribute path, width); width 0 = address
_FIELDS = {
    "orig_src": ((CTA_TUPLE_ORIG, CTA_TUPLE_IP, "src"), 0),
    "orig_dst": ((CTA_TUPLE_ORIG, CTA_TUPLE_IP, "dst"), 0),
    "proto": ((CTA_TUPLE_ORIG, CTA_TUPLE_PROTO, CTA_PROTO_NUM), 1),
    "orig_sport": ((CTA_TUPLE_ORIG, CTA_TUPLE_PROTO, CTA_PROTO_SRC_PORT), 2),
    "orig_dport": ((CTA_TUPLE_ORIG, CTA_TUPLE_PROTO, CTA_PROTO_DST_PORT), 2),
    "reply_src": ((CTA_TUPLE_REPLY, CTA_TUPLE_IP, "src"), 0),
    "reply_dst": ((CTA_TUPLE_REPLY, CTA_TUPLE_IP, "dst"), 0),
    "reply_sport": ((CTA_TUPLE_REPLY, CTA_TUPLE_PROTO, CTA_PROTO_SRC_PORT), 2),
    "reply_dport": ((CTA_TUPLE_REPLY, CTA_TUPLE_PROTO, CTA_PROTO_DST_PORT), 2),
    "status": ((CTA_STATUS,), 4),
    "timeout": ((CTA_TIMEOUT,), 4),
    "tcp_state": ((CTA_PROTOINFO, CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE), 1),
    "zone": ((CTA_ZONE,), 2),
    "id": ((CTA_ID,), 4),
}
_ADDR_TYPES = {"src": (CTA_IP_V4_SRC, CTA_IP_V6_SRC), "dst": (CTA_IP_V4_DST, CTA_IP_V6_DST)}
_NESTED = {CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_PROTOINFO}


def format_addr(raw: bytes) -> str:
    """4 or 16 raw bytes as inet_ntop writes them."""
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


@dataclass
class ConntrackTable:
    """Columns of a conntrack dump. Ports are host order; addresses raw bytes."""
    family: array = field(default_factory=lambda: array("B"))          # 4 | 6
    proto: array = field(default_factory=lambda: array("B"))
    orig_src: list = field(default_factory=list)
    orig_dst: list = field(default_factory=list)
    orig_sport: array = field(default_factory=lambda: array("H"))
    orig_dport: array = field(default_factory=lambda: array("H"))
    reply_src: list = field(default_factory=list)
    reply_dst: list = field(default_factory=list)
    reply_sport: array = field(default_factory=lambda: array("H"))
    reply_dport: array = field(default_factory=lambda: array("H"))
    status: array = field(default_factory=lambda: array("I"))
    timeout: array = field(default_factory=lambda: array("I"))          # seconds left
    tcp_state: array = field(default_factory=lambda: array("B"))        # NO_STATE if none
    zone: array = field(default_factory=lambda: array("H"))
    skipped: int = 0                     # messages without the tuples we need

    def __len__(self) -> int:
        return len(self.proto)

    def row(self, i: int) -> dict:
        """One entry as a dict (for display and tests, not for the hot path)."""
        st = self.tcp_state[i]
        return {
            "family": self.family[i],
            "proto": PROTO_NAMES.get(self.proto[i], str(self.proto[i])),
            "state": TCP_STATES[st] if st < len(TCP_STATES) else None,
            "timeout": self.timeout[i],
            "orig": {"src": format_addr(self.orig_src[i]), "dst": format_addr(self.orig_dst[i]),
                     "sport": self.orig_sport[i], "dport": self.orig_dport[i]},
            "reply": {"src": format_addr(self.reply_src[i]), "dst": format_addr(self.reply_dst[i]),
                      "sport": self.reply_sport[i], "dport": self.reply_dport[i]},
            "status": [n for bit, n in STATUS_NAMES.items() if self.status[i] & bit],
            "zone": self.zone[i],
        }


def _walk(buf, start: int, length: int):
    """Offsets of every field in one message, and the (offset, header word) of every
    attribute header on the way: the layout that a whole group must share."""
    end = start + length
    found: dict[str, int] = {}
    headers: list[tuple[int, bytes]] = [(start + 4, bytes(buf[start + 4:start + 8])),   # type, flags
                                        (start + 16, bytes(buf[start + 16:start + 20]))]  # nfgenmsg
    family = buf[start + 16]

    def level(off: int, stop: int, path: tuple, depth: int) -> None:
        while off + 4 <= stop:
            ln, typ = ATTR.unpack_from(buf, off)
            if ln < 4 or off + ln > stop:
                raise CtnetlinkError("malformed conntrack attribute")
            headers.append((off, bytes(buf[off:off + 4])))
            t = typ & NLA_TYPE_MASK
            here = path + (t,)
            if (depth == 0 and t in _NESTED) or (depth == 1 and here[0] in (CTA_TUPLE_ORIG, CTA_TUPLE_REPLY)) \
                    or here == (CTA_PROTOINFO, CTA_PROTOINFO_TCP):
                level(off + 4, off + ln, here, depth + 1)
            else:
                found_at(here, off + 4, ln - 4)
            off += (ln + 3) & ~3

    def found_at(path: tuple, off: int, size: int) -> None:
        for name, (want, width) in _FIELDS.items():
            if width == 0:
                if len(path) == 3 and path[:2] == want[:2] and path[2] in _ADDR_TYPES[str(want[2])]:
                    if size in (4, 16):
                        found[name] = off
                        found[name + ":w"] = size
            elif path == want and size >= width:
                found[name] = off

    level(start + 20, end, (), 0)
    return family, found, headers


_NEED = ("orig_src", "orig_dst", "proto", "reply_src", "reply_dst")
REQUIRED = _NEED                      # an entry without these fields is skipped


def layout(buf: bytes | bytearray | memoryview, start: int, length: int) -> tuple[int, dict[str, int], list[tuple[int, bytes]]]:
    """(family, {field: offset, address field + ':w': width}, [(offset, attribute header
    word)]) of the message at buf[start:start+length]: where each field sits, and the
    headers every message read with the same offsets must share."""
    return _walk(buf, start, length)


def _strided(blob: bytes, stride: int, offset: int, code: str) -> array:
    a = array(code)
    size = a.itemsize
    if offset % size == 0 and stride % size == 0:
        a.frombytes(memoryview(blob).cast(code)[offset // size::stride // size].tobytes())  # type: ignore[call-overload]
    else:
        st = struct.Struct(f"={code}")
        a.extend(st.unpack_from(blob, o)[0] for o in range(offset, len(blob), stride))
    return a


def _addr_column(blob: bytes, stride: int, offset: int, width: int) -> list:
    fmt = struct.Struct(f"={offset}x{width}s{stride - offset - width}x")
    return list(map(itemgetter(0), fmt.iter_unpack(blob)))


def _same_layout(blob: bytes, stride: int, base: int, headers) -> bool:
    """Does every message of the group carry these header words at these offsets?"""
    n = len(blob) // stride
    words = memoryview(blob).cast("I")
    step = stride // 4
    for off, word in headers:
        rel = off - base
        if words[rel // 4::step].tobytes() != word * n:
            return False
    return True


def _append_group(t: ConntrackTable, blob: bytes, stride: int, family: int, found: dict) -> None:
    n = len(blob) // stride
    t.family.frombytes(bytes((4 if family == socket.AF_INET else 6,)) * n)
    t.proto.frombytes(blob[found["proto"]::stride][:n])
    for name in ("orig_src", "orig_dst", "reply_src", "reply_dst"):
        getattr(t, name).extend(_addr_column(blob, stride, found[name], found[name + ":w"]))
    for name, code, nbytes in (("orig_sport", "H", 2), ("orig_dport", "H", 2), ("reply_sport", "H", 2),
                               ("reply_dport", "H", 2), ("status", "I", 4), ("timeout", "I", 4),
                               ("zone", "H", 2)):
        col = getattr(t, name)
        if name in found:
            a = _strided(blob, stride, found[name], code)
            if _LITTLE:
                a.byteswap()          # every ctnetlink number is big-endian
            col.extend(a)
        else:
            col.extend(array(code, bytes(nbytes * n)))
    if "tcp_state" in found:
        t.tcp_state.frombytes(blob[found["tcp_state"]::stride][:n])
    else:
        t.tcp_state.frombytes(bytes((NO_STATE,)) * n)


def parse_groups(groups: dict[int, bytearray]) -> ConntrackTable:
    """Turn dump_table()'s {length: messages} into a ConntrackTable."""
    t = ConntrackTable()
    for stride, raw in groups.items():
        blob = bytes(raw)
        n = len(blob) // stride
        if not n:
            continue
        family, found, headers = _walk(blob, 0, stride)
        if stride % 4 == 0 and all(k in found for k in _NEED) and _same_layout(blob, stride, 0, headers):
            _append_group(t, blob, stride, family, found)
            continue
        # mixed layouts in one length: each message on its own
        for i in range(n):
            one = blob[i * stride:(i + 1) * stride]
            family, found, _ = _walk(one, 0, stride)
            if all(k in found for k in _NEED):
                _append_group(t, one, stride, family, found)
            else:
                t.skipped += 1
    return t
