"""SNAT port use per translated destination, and the ports NAT rules hold.

For a source-NATed flow the reply tuple is (server -> NAT IP:NAT port), and netfilter
keeps reply tuples unique, so per (proto, NAT IP, server IP, server port) every NAT
port can be used once: the distinct reply destination ports are the ports in use,
TIME_WAIT entries included (they hold their tuple until conntrack's own TIME_WAIT
timeout, 120 s by default, runs out).

The capacity is the size of the NAT range that applies: the rule's --to-ports /
`to :A-B`, else netfilter's default for the original source port (>= 1024:
1024-65535; 512-1023: 600-1023; < 512: 1-511; net/netfilter/nf_nat_core.c,
nf_nat_l4proto_unique_tuple). ip_local_port_range plays no part in it.
"""
from __future__ import annotations

import ipaddress
import platform
import re
import struct
import sys
from array import array
from collections import Counter
from dataclasses import dataclass
from itertools import compress, repeat
from operator import add, itemgetter
from typing import TYPE_CHECKING, Callable, Iterable

from .table import IPS_SRC_NAT, PROTO_NAMES, REQUIRED, TCP_TIME_WAIT, ConntrackTable, format_addr, layout

if TYPE_CHECKING:
    from ..ports import PortRange, PortSet
    from .rules import Holder, NatRule

DEFAULT_HIGH = (1024, 65535)
DEFAULT_MID = (600, 1023)
DEFAULT_LOW = (1, 511)


def tcp_time_wait_evictable(release: str | None = None) -> bool:
    """Since Linux 6.5 ("netfilter: snat: evict closing tcp entries on reply tuple
    collision"), the last 32 of a round's attempts may evict a colliding SNAT entry in
    TIME_WAIT (or later) whose sequence number the new SYN has passed: such TCP ports
    are taken back under pressure instead of failing the connection."""
    m = re.match(r"(\d+)\.(\d+)", release if release is not None else platform.release())
    return m is not None and (int(m[1]), int(m[2])) >= (6, 5)


def default_range(orig_port: int) -> tuple[int, int]:
    """The NAT range netfilter uses when the rule names no ports."""
    if orig_port >= 1024:
        return DEFAULT_HIGH
    return DEFAULT_LOW if orig_port < 512 else DEFAULT_MID


@dataclass
class SnatDestination:
    """NAT ports in use toward one (proto, NAT IP, destination, port) and the range's size."""
    proto: str
    nat_ip: str
    dst: str
    dport: int
    in_use: int
    time_wait: int
    time_wait_timeout_max: int | None
    capacity: int
    low: int
    high: int
    range_from: str              # "rule" | "default"
    rule: NatRule | None = None  # the NatRule whose range applies
    time_wait_reclaimable: bool = False

    @property
    def utilization(self) -> float:
        """in_use / capacity."""
        return self.in_use / self.capacity if self.capacity else 1.0

    def to_json(self) -> dict:
        """The `snat[]` object of `nat --json`."""
        return {"proto": self.proto, "nat_ip": self.nat_ip, "dst": self.dst, "dport": self.dport,
                "in_use": self.in_use, "time_wait": self.time_wait, "capacity": self.capacity,
                "utilization": self.utilization, "range": f"{self.low}-{self.high}",
                "range_from": self.range_from, "time_wait_timeout_max": self.time_wait_timeout_max,
                "time_wait_reclaimable": self.time_wait_reclaimable}


def _addr_in(nat_ip: str, to_addr: str | None) -> bool:
    """Is nat_ip inside an SNAT rule's --to-source ('A' or 'A-B')? None: any."""
    if not to_addr:
        return True
    try:
        ip = ipaddress.ip_address(nat_ip)
        a, _, b = to_addr.partition("-")
        lo = ipaddress.ip_address(a)
        hi = ipaddress.ip_address(b) if b else lo
        if not (lo.version == ip.version == hi.version):
            return False
        return int(lo) <= int(ip) <= int(hi)
    except ValueError:
        return False


def applicable_range(proto: str, family: int, nat_ip: str, ports: set, orig_ports: set,
                     rules: Iterable[NatRule]) -> tuple[int, int, NatRule | None]:
    """(low, high, rule) of the NAT range these flows were given.

    Rules are matched by what the conntrack entry can show: protocol, family, the NAT
    address of an SNAT rule, and a range that contains every NAT port in use (the
    kernel never maps outside the range). The narrowest such range wins; with none,
    the kernel's default for the original ports."""
    best = None
    for r in rules:
        if r.kind not in ("snat", "masquerade") or r.ports is None:
            continue
        if r.proto not in (None, proto) or r.family not in (None, family):
            continue
        if r.kind == "snat" and not _addr_in(nat_ip, r.to_addr):
            continue
        lo, hi = r.ports
        if all(lo <= p <= hi for p in ports) and (best is None or hi - lo < best[1] - best[0]):
            best = (lo, hi, r)
    if best is not None:
        return best
    lo, hi = default_range(max(orig_ports) if orig_ports else 1024)
    return lo, hi, None


def snat_destinations(t: ConntrackTable, rules: Iterable[NatRule] = ()) -> list[SnatDestination]:
    """Every translated destination, most used first (by utilization, then ports)."""
    status = t.status
    rows = [i for i in range(len(status)) if status[i] & IPS_SRC_NAT]
    groups: dict[tuple, list] = {}
    for i in rows:
        key = (t.proto[i], t.family[i], t.reply_dst[i], t.reply_src[i], t.reply_sport[i])
        g = groups.get(key)
        if g is None:
            g = groups[key] = [set(), 0, None, set()]
        g[0].add(t.reply_dport[i])
        g[3].add(t.orig_sport[i])
        if t.tcp_state[i] == TCP_TIME_WAIT:
            g[1] += 1
            to = t.timeout[i]
            g[2] = to if g[2] is None or to > g[2] else g[2]
    out = []
    evict = tcp_time_wait_evictable()
    for (proto, fam, nat_ip, dst, dport), (ports, tw, tw_max, origs) in groups.items():
        pname = PROTO_NAMES.get(proto, str(proto))
        nat = format_addr(nat_ip)
        lo, hi, rule = applicable_range(pname, fam, nat, ports, origs, rules)
        out.append(SnatDestination(proto=pname, nat_ip=nat, dst=format_addr(dst), dport=dport,
                                   in_use=len(ports), time_wait=tw, time_wait_timeout_max=tw_max,
                                   capacity=hi - lo + 1, low=lo, high=hi,
                                   range_from="rule" if rule is not None else "default", rule=rule,
                                   time_wait_reclaimable=evict and pname == "tcp"))
    out.sort(key=lambda d: (-d.utilization, -d.in_use, d.proto, d.nat_ip, d.dst, d.dport))
    return out


# byte -> 1/0 tables for bytes.translate: the low status byte has SRC_NAT; a TCP state
# byte is TIME_WAIT; the high byte of a big-endian port is >= 4 (port >= 1024) or 2..3
# (512..1023), the two bounds of netfilter's default ranges
_SNAT_BIT = bytes(1 if b & IPS_SRC_NAT else 0 for b in range(256))
_IS_TW = bytes(1 if b == TCP_TIME_WAIT else 0 for b in range(256))
_HIGH = bytes(1 if b >= 4 else 0 for b in range(256))
_MID = bytes(1 if b in (2, 3) else 0 for b in range(256))
_TW_BYTE = bytes((TCP_TIME_WAIT,))
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_NOT = bytes((1, 0)) + bytes(254)
BITMAP_KEYS = 256                      # 16 MiB of port maps at most
_FAST_FIELDS = ("proto", "orig_sport", "reply_src", "reply_dst", "reply_sport", "reply_dport", "status")
_PROTO_NUM_HEADER = struct.pack("=HH", 5, 1)      # CTA_PROTO_NUM, one byte


def span_key(span: bytes) -> tuple[int, bytes, bytes, int]:
    """(proto, destination, NAT IP, destination port) of a reply-tuple span: the bytes
    of a reply tuple from the source address to the source port, as ctnetlink encodes
    them for a port protocol (src, dst attribute, proto nest header, CTA_PROTO_NUM,
    CTA_PROTO_SRC_PORT: 2 w + 22 bytes for w-byte addresses)."""
    w = (len(span) - 22) // 2
    return span[2 * w + 12], span[:w], span[w + 4:2 * w + 4], int.from_bytes(span[2 * w + 20:2 * w + 22], "big")


@dataclass
class _Layout:
    """Where one message layout keeps what the tally reads, and what proves a message has it."""
    checks: list                # [(offset, header word)] up to the last field read
    row: struct.Struct          # (reply-tuple span, NAT port)
    status: int                 # offset of the status's low byte (SRC_NAT is bit 4)
    orig_hi: int                # offset of the original source port's high byte
    protos: tuple[int, int]     # offsets of the original and the reply protocol number
    state: int | None
    timeout: int | None


def _fast_layout(found: dict, headers: list, length: int) -> _Layout | None:
    """The strided reading of a layout, or None when its messages must be read one by one."""
    if length & 3 or any(k not in found for k in _FAST_FIELDS + REQUIRED):
        return None
    rs, w = found["reply_src"], found["reply_src:w"]
    if found["reply_dst:w"] != w or found["reply_dst"] != rs + w + 4 or found["reply_sport"] != rs + 2 * w + 20 \
            or (rs + 2 * w + 8, _PROTO_NUM_HEADER) not in headers or found["reply_dport"] < rs + 2 * w + 22:
        return None              # not the usual reply tuple: span_key could not read it
    end = found["reply_dport"] + 2
    if end > length:
        return None
    row = struct.Struct(f">{rs}x{2 * w + 22}s{found['reply_dport'] - rs - 2 * w - 22}xH{length - end}x")
    ends = [end, found["status"] + 4, found["orig_sport"] + 2, found["proto"] + 1]
    if "tcp_state" in found:
        ends.append(found["tcp_state"] + 1)
    if "timeout" in found:
        ends.append(found["timeout"] + 4)
    last = max(ends)
    return _Layout(checks=[(off, word) for off, word in headers if 20 <= off < last], row=row,
                   status=found["status"] + 3, orig_hi=found["orig_sport"],
                   protos=(found["proto"], rs + 2 * w + 12), state=found.get("tcp_state"),
                   timeout=found.get("timeout"))


class SnatTally:
    """SNAT use counted while a conntrack dump arrives (ctnetlink.dump_groups' consumer),
    so the exporter and `nat` never hold the table: per (proto, destination, NAT IP,
    destination port) the distinct NAT ports, TIME_WAIT entries and their longest
    timeout, and which of netfilter's default ranges the original ports select.

    Messages of one layout are read at fixed offsets: the first message of each length
    teaches the layout (table.layout), every message of a run is checked in C to carry
    the same attribute headers up to the last field read, and a whole run comes out of
    one struct.iter_unpack and a few strided slices, keyed by the raw bytes of its reply
    tuple (span_key reads a key once, not once per entry). Runs that do not match, and
    layouts without the port attributes (ICMP, GRE), are read message by message with
    the same walk table.parse_groups uses, so both give snat_destinations()'s result."""

    def __init__(self) -> None:
        self.entries = 0                      # entries the dump returned
        self.rows = 0                         # of them source-NATed (counted)
        self.skipped = 0                      # messages without the tuples
        self.fast = 0                         # entries read at a layout's fixed offsets
        # NAT ports in use per key (reply-tuple span bytes, or (proto, dst, nat, dport) when
        # read one by one): a 64 KiB byte map per key for the first BITMAP_KEYS keys, set in
        # C, then (key, port) pairs. A set of 100k pairs costs several times the map.
        self.offsets: dict = {}               # key -> its map's offset in bits
        self.bits = bytearray()
        self.pairs: set = set()
        self.mixed_orig = False               # an original port < 1024 was seen
        self.high: set = set()                # with mixed_orig: keys with an original port >= 1024
        self.mid: set = set()                 # keys with an original port in 512..1023
        self.time_wait: Counter = Counter()   # key -> entries in TIME_WAIT
        self.tw_timeouts: set = set()         # (key, seconds left) of TIME_WAIT entries
        self._layouts: dict[int, list] = {}

    def add(self, blob: memoryview | bytes, length: int) -> None:
        """Count a run of whole replies of `length` bytes (valid only during the call)."""
        k = len(blob) // length
        if not k:
            return
        if length & 3 == 0:
            # strided reads of a memoryview copy element by element; slices of bytes
            # and arrays are C loops ten times faster, so the run is copied once
            data = blob if isinstance(blob, bytes) else bytes(blob)
            words = array("I")
            words.frombytes(data)
            known = self._layouts.setdefault(length, [])
            for lay in known:
                if self._matches(lay, data, words, length, k):
                    return self._fast(lay, data, words, length)
            if len(known) < 8:
                _, found, headers = layout(data, 0, length)
                lay = _fast_layout(found, headers, length)
                if lay is not None:
                    known.append(lay)
                    if self._matches(lay, data, words, length, k):
                        return self._fast(lay, data, words, length)
        for i in range(k):
            self._one(blob, i * length, length)

    @staticmethod
    def _matches(lay: _Layout, data: bytes, words: array, length: int, k: int) -> bool:
        step = length // 4
        return (all(words[off // 4::step].tobytes() == word * k for off, word in lay.checks)
                and data[lay.protos[0]::length] == data[lay.protos[1]::length])

    def _fast(self, lay: _Layout, data: bytes, words: array, length: int) -> None:
        rows = list(lay.row.iter_unpack(data))
        self.fast += len(rows)

        def timeouts() -> list:
            if lay.timeout is None:
                return [0] * len(rows)
            a = words[lay.timeout // 4::length // 4]
            if sys.byteorder == "little":
                a.byteswap()
            return a.tolist()

        self._tally(rows, data[lay.status::length], data[lay.orig_hi::length],
                    data[lay.state::length] if lay.state is not None else None, timeouts)

    def _one(self, blob, start: int, length: int) -> None:
        _, found, _ = layout(blob, start, length)
        if any(k not in found for k in REQUIRED):
            self.skipped += 1
            return

        def num(name: str, fmt: str) -> int:
            off = found.get(name)
            return struct.unpack_from(fmt, blob, off)[0] if off is not None else 0

        rs, rd = found["reply_src"], found["reply_dst"]
        key = (blob[found["proto"]], bytes(blob[rs:rs + found["reply_src:w"]]),
               bytes(blob[rd:rd + found["reply_dst:w"]]), num("reply_sport", ">H"))
        state = bytes((blob[found["tcp_state"]],)) if "tcp_state" in found else None
        timeout = num("timeout", ">I")
        self._tally([(key, num("reply_dport", ">H"))], bytes((num("status", ">I") & 0xFF,)),
                    bytes((num("orig_sport", ">H") >> 8,)), state, lambda: [timeout])

    def _tally(self, rows: list, status: bytes, orig_hi: bytes, state: bytes | None,
               timeouts: Callable[[], list]) -> None:
        k = len(rows)
        self.entries += k
        sel = status.translate(_SNAT_BIT)
        nat = sel.count(1)
        if not nat:
            return
        if nat != k:
            rows = list(compress(rows, sel))
            orig_hi = bytes(compress(orig_hi, sel))
            state = bytes(compress(state, sel)) if state is not None else None
        self.rows += nat
        keys = list(map(_FIRST, rows))
        high = orig_hi.translate(_HIGH)
        if high.count(1) != nat or self.mixed_orig:
            if not self.mixed_orig:           # every key so far had only original ports >= 1024
                self.mixed_orig = True
                self.high = set(self.offsets) | {p[0] for p in self.pairs}
            self.high.update(compress(keys, high))
            self.mid.update(compress(keys, orig_hi.translate(_MID)))
        offsets = self.offsets
        known = all(map(offsets.__contains__, keys))
        if not known and len(offsets) < BITMAP_KEYS:
            new = list(set(keys).difference(offsets))[:BITMAP_KEYS - len(offsets)]
            for key in new:
                offsets[key] = len(self.bits) + (len(offsets) - len(self.bits) // 65536) * 65536
            self.bits.extend(bytes(65536 * len(new)))
            known = all(map(offsets.__contains__, keys))
        if known:
            list(map(self.bits.__setitem__, map(add, map(offsets.__getitem__, keys), map(_SECOND, rows)),
                     repeat(1)))
        else:
            mapped = bytes(map(offsets.__contains__, keys))
            list(map(self.bits.__setitem__, map(add, map(offsets.__getitem__, compress(keys, mapped)),
                                                compress(map(_SECOND, rows), mapped)), repeat(1)))
            self.pairs.update(compress(rows, mapped.translate(_NOT)))
        if state is not None and _TW_BYTE in state:
            tw = state.translate(_IS_TW)
            left = timeouts()
            if nat != k:
                left = list(compress(left, sel))
            keys = list(compress(keys, tw))
            self.time_wait.update(keys)
            self.tw_timeouts.update(zip(keys, compress(left, tw)))

    def ports(self, key: bytes | tuple) -> set[int]:
        """The NAT ports counted for one key."""
        out = {p for k, p in self.pairs if k == key}
        off = self.offsets.get(key)
        if off is not None:
            m = self.bits[off:off + 65536]
            i = m.find(1)
            while i >= 0:
                out.add(i)
                i = m.find(1, i + 1)
        return out

    def destinations(self, rules: Iterable[NatRule] = ()) -> list[SnatDestination]:
        """Every translated destination, most used first: what snat_destinations() gives
        for the table the dump held."""
        rules = list(rules)
        in_use = Counter(map(_FIRST, self.pairs))
        for key, off in self.offsets.items():
            in_use[key] = self.bits.count(1, off, off + 65536)
        # one destination may have been read both ways (a run that fell back to reading
        # message by message): its keys are merged, NAT ports counted once
        merged: dict = {}
        for key in in_use:
            merged.setdefault(span_key(key) if isinstance(key, bytes) else key, []).append(key)
        tw_max: dict = {}
        for key, left in self.tw_timeouts:
            if left > tw_max.get(key, -1):
                tw_max[key] = left
        ranged = any(r.kind in ("snat", "masquerade") and r.ports is not None for r in rules)
        evict = tcp_time_wait_evictable()
        out = []
        for (proto, dst, nat_ip, dport), keys in merged.items():
            if len(keys) == 1 and not ranged:
                n, ports = in_use[keys[0]], set()
            else:
                used = set().union(*map(self.ports, keys))
                n, ports = len(used), {min(used), max(used)}     # a rule's range needs only the two ends
            maxima = [tw_max[k] for k in keys if k in tw_max]
            pname = PROTO_NAMES.get(proto, str(proto))
            nat = format_addr(nat_ip)
            if not self.mixed_orig or any(k in self.high for k in keys):
                orig = {1024}
            else:
                orig = {600} if any(k in self.mid for k in keys) else {1}
            lo, hi, rule = applicable_range(pname, 4 if len(nat_ip) == 4 else 6, nat, ports, orig, rules)
            out.append(SnatDestination(proto=pname, nat_ip=nat, dst=format_addr(dst), dport=dport, in_use=n,
                                       time_wait=sum(self.time_wait.get(k, 0) for k in keys),
                                       time_wait_timeout_max=max(maxima) if maxima else None,
                                       capacity=hi - lo + 1, low=lo, high=hi,
                                       range_from="rule" if rule is not None else "default", rule=rule,
                                       time_wait_reclaimable=evict and pname == "tcp"))
        out.sort(key=lambda d: (-d.utilization, -d.in_use, d.proto, d.nat_ip, d.dst, d.dport))
        return out


@dataclass
class NatPort:
    """One port an inbound NAT rule holds, and whether connect() may take it."""
    proto: str | None
    port: int
    chain: str
    kind: str
    source: str
    in_ephemeral_range: bool
    reserved: bool

    def to_json(self) -> dict:
        """The `nat_ports[]` object of `nat --json`."""
        return {"proto": self.proto, "port": self.port, "chain": self.chain,
                "in_ephemeral_range": self.in_ephemeral_range, "reserved": self.reserved,
                "kind": self.kind, "source": self.source}


MAX_EXPANDED = 4096      # a rule matching a wide range is listed by its first ports only


def nat_ports(holders: Iterable[Holder], ephemeral: PortRange, reserved: PortSet) -> list[NatPort]:
    """One row per (proto, port, chain) an inbound NAT rule holds, sorted by port."""
    seen = set()
    out = []
    for h in holders:
        for port in range(h.low, min(h.high, h.low + MAX_EXPANDED - 1) + 1):
            key = (h.proto, port, h.chain)
            if key in seen:
                continue
            seen.add(key)
            out.append(NatPort(proto=h.proto, port=port, chain=h.chain, kind=h.kind, source=h.source,
                               in_ephemeral_range=port in ephemeral, reserved=port in reserved))
    out.sort(key=lambda p: (p.port, p.proto or "", p.chain))
    return out
