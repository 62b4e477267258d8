"""SNAT use kept current from ctnetlink events: a long-lived exporter's scrape costs the
conntrack changes since the last scrape, not a dump of the whole table.

    w = SnatWatch()
    with netns.entered(spec):
        book = w.tally()              # first call: subscribe, dump once; later: drain events
    book.destinations(rules)          # what SnatTally (a full dump) gives

How it stays exact (docs/nat.md, "Event-kept SNAT use"):

* Subscribe first (NETLINK_NETFILTER, groups NFNLGRP_CONNTRACK_NEW / UPDATE / DESTROY),
  then dump the source-NATed entries, then apply the events queued meanwhile. An entry is
  keyed by its reply tuple (unique among live entries of a zone; for a source-NATed flow
  it is (proto, destination, NAT IP, destination port, NAT port)) and carries its CTA_ID,
  so an event is applied only to the entry it names: a NEW replaces, an UPDATE or a
  DESTROY of another id (an older entry of the same tuple) is ignored. Applying the
  complete stream of events since the subscription on top of the dump gives the live
  state, whatever the order in which the dump and the events saw an entry.
* The NAT tuple and the SRC_NAT bit are fixed before an entry is confirmed (its NEW
  event); only the TCP state changes later, and every change comes as an UPDATE with
  CTA_PROTOINFO (IPCT_PROTOINFO). An entry leaves with a DESTROY.
* With nf_conntrack_events = 2 (the default: "on when a listener exists") the kernel gives
  an entry its event cache only when it is created while someone listens: entries older
  than the subscription never send an event, not even DESTROY. Entries the dump showed
  and no event has named yet are therefore "unconfirmed"; while any are left, the watch
  dumps again every UNCONFIRMED_REFRESH seconds (counted as a resync, reason
  "unconfirmed"). Entries created after the subscription are confirmed by their NEW event.
* Lost events (ENOBUFS: the receive buffer overflowed between two scrapes) mean a resync:
  the queue is discarded, the table dumped again, and the events since applied.
* An entry that has expired stays in the table until the kernel's garbage collector (or
  any lookup or dump that walks it) removes it, and only then sends its DESTROY; a dump
  never shows it. Each scrape therefore first asks for a dump that matches nothing, which
  makes the kernel remove the expired entries it walks (SnatWatch._reap).
* nf_conntrack_events = 0 (no events in that namespace): the watch falls back to one dump
  per scrape (SnatTally), and says so (`mode`).

The socket never asks for reliable delivery (NETLINK_BROADCAST_ERROR): with it the kernel
would drop packets of new connections when the exporter falls behind.

Per entry the book keeps one dict item, int -> int (reply-tuple id -> id, TIME_WAIT,
original-port class, unconfirmed bit and TIME_WAIT deadline packed in one int); per
translated destination a few counters in lists.
"""
from __future__ import annotations

import errno
import os
import select
import socket
import struct
import threading
import time
from array import array
from collections import Counter
from functools import partial
from itertools import repeat
from operator import and_, itemgetter, lshift, or_
from typing import TYPE_CHECKING, Iterable

from ..errors import NotPermitted, Unsupported
from . import ctnetlink
from .ctnetlink import HDR, CtnetlinkError
from .snat import SnatDestination, SnatTally, applicable_range, span_key, tcp_time_wait_evictable
from .stats import NEED_CAP
from .table import IPS_SRC_NAT, PROTO_NAMES, REQUIRED, TCP_TIME_WAIT, format_addr, layout

if TYPE_CHECKING:
    from .rules import NatRule

# include/uapi/linux/netfilter/nfnetlink_compat.h / nfnetlink.h: enum nfnetlink_groups
NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, NFNLGRP_CONNTRACK_DESTROY = 1, 2, 3
GROUPS = sum(1 << (g - 1) for g in (NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, NFNLGRP_CONNTRACK_DESTROY))
IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_DELETE = 0, 2     # an UPDATE is a CT_NEW without NLM_F_CREATE
NLM_F_CREATE = 0x400
SO_RCVBUFFORCE = 33
# events wait in the socket between scrapes; the kernel counts each message's skb
# (about 1 KiB), so 16 MiB (doubled by the kernel) holds some 25,000 events
EVENT_RCVBUF = 16 << 20
UNCONFIRMED_REFRESH = 60.0             # seconds between dumps while unconfirmed entries are left
EVENTS_SYSCTL = "/proc/sys/net/netfilter/nf_conntrack_events"
RESYNC_TRIES = 3
# the follower reaps (see SnatWatch._reap) every REAP_EVERY seconds, or less often when a
# reap takes long (a large table): at most 1/REAP_SHARE of a core
REAP_EVERY, REAP_SHARE = 2.0, 50
FOLLOWER_GRACE = 2.0            # tally() leaves the follower's walks and dumps to it until this late
MAX_DRAIN = 1_000_000                  # events read in one scrape at most (about 5 s)

# the packed value of one entry
_ID_MASK = 0xFFFFFFFF
_TW = 1 << 32
_CLS_SHIFT = 33                        # original source port: 0 >= 1024, 1 512..1023, 2 < 512
_UNCONFIRMED = 1 << 35
_DL_SHIFT = 36                         # TIME_WAIT deadline, whole seconds of time.monotonic()
_CLASS = bytes(0 if b >= 4 else 1 if b >= 2 else 2 for b in range(256))   # by the port's high byte
_PROTO_NUM_HEADER = struct.pack("=HH", 5, 1)
_HEAD = struct.Struct("=IHH")             # nlmsg_len, nlmsg_type, nlmsg_flags
_EVENT_KINDS = frozenset((1 << 8) | k for k in (0, 2))   # NFNL_SUBSYS_CTNETLINK: CT_NEW, CT_DELETE
IPS_TEMPLATE = 0x800                   # only conntrack templates (never in the table) have it


class Overflow(Exception):
    """The kernel reported ENOBUFS on the event socket: events were lost."""


def events_setting(path: str = EVENTS_SYSCTL) -> int | None:
    """net.netfilter.nf_conntrack_events of the calling thread's namespace (0 off, 1 on,
    2 on when a listener exists), None when the file is missing or unreadable."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class _Shape:
    """Where one message layout keeps what the book reads, and the attribute headers that
    prove a message has that layout. Offsets are relative to the message's start."""

    NAMES = ("span", "dport", "orig_hi", "status", "id", "state", "timeout", "zone")

    def __init__(self, found: dict, headers: list, length: int) -> None:
        rs, w = found.get("reply_src", -1), found.get("reply_src:w", 0)
        self.spanned = (rs >= 0 and "reply_dport" in found and found.get("reply_dst:w") == w
                        and found.get("reply_dst") == rs + w + 4 and found.get("reply_sport") == rs + 2 * w + 20
                        and (rs + 2 * w + 8, _PROTO_NUM_HEADER) in headers
                        and found["reply_dport"] >= rs + 2 * w + 22 and "status" in found)
        self.length = length
        self.index: dict[str, int] = {}
        if not self.spanned:
            return
        parts = [(rs, f"{2 * w + 22}s", 2 * w + 22, "span"), (found["reply_dport"], "H", 2, "dport"),
                 (found["status"], "I", 4, "status")]
        for name, key, fmt, size in (("orig_hi", "orig_sport", "B", 1), ("id", "id", "I", 4),
                                     ("state", "tcp_state", "B", 1), ("timeout", "timeout", "I", 4),
                                     ("zone", "zone", "H", 2)):
            if key in found:
                parts.append((found[key], fmt, size, name))
        parts.sort()
        fmt, at = ">", 0
        for off, f, size, name in parts:
            if off < at:                        # overlapping fields: not a layout to read this way
                self.spanned = False
                return
            fmt += f"{off - at}x{f}"
            self.index[name] = len(self.index)
            at = off + size
        self.one = struct.Struct(fmt)
        self.run = struct.Struct(fmt + f"{length - at}x")
        last = at
        self.checks = [(off, word) for off, word in headers if off < last]
        # for one message, the checks as one masked integer compare (no object per header)
        self.last = last
        mask, want = bytearray(last), bytearray(last)
        for off, word in self.checks:
            mask[off:off + 4] = b"\xff" * 4
            want[off:off + 4] = word
        self.mask, self.want = int.from_bytes(mask, "little"), int.from_bytes(want, "little")
        # row + DEFAULTS, picked in NAMES order: a field the layout lacks reads its default
        # (orig_hi 4: a port >= 1024; id 0; state None: unchanged; timeout 0; zone 0)
        base = len(self.index)
        defaults = {"orig_hi": 4, "id": 0, "state": None, "timeout": 0, "zone": 0}
        self.defaults = tuple(defaults[n] for n in defaults)
        at_default = {n: base + i for i, n in enumerate(defaults)}
        self.pick = itemgetter(*(self.index.get(n, at_default.get(n, -1)) for n in self.NAMES))

    def fits(self, buf: bytes | bytearray | memoryview, off: int) -> bool:
        """Does the message at buf[off:] carry this layout's attribute headers?"""
        return int.from_bytes(buf[off:off + self.last], "little") & self.mask == self.want


class SnatBook:
    """SNAT use per translated destination, updated entry by entry (from a dump or from
    events). `destinations(rules)` gives what SnatTally.destinations gives for the same
    live table; `rows` counts the source-NATed entries."""

    def __init__(self) -> None:
        self.flows: dict[int, int] = {}       # (key << 32 | zone << 16 | NAT port) -> packed value
        self.keys: dict = {}                  # reply-tuple span bytes (or a tuple, see _walked) -> key
        self.spans: list = []                 # key -> its span
        self.n: list[int] = []                # key -> entries
        self.tw: list[int] = []               # key -> entries in TIME_WAIT
        self.hi: list[int] = []               # key -> entries with an original port >= 1024
        self.mid: list[int] = []              # key -> entries with an original port in 512..1023
        self.tw_max: list[int] = []           # key -> latest TIME_WAIT deadline (monotonic s)
        self.lo_port: list[int] = []
        self.hi_port: list[int] = []
        self.stale: set[int] = set()          # keys whose lowest/highest port left (recounted lazily)
        self.free: list[int] = []
        self.zoned = False                    # an entry outside the default zone was seen
        self.unconfirmed = 0                  # entries from a dump that no event has named yet
        self.events = 0                       # events applied
        self.ignored = 0                      # events naming an entry the book does not hold
        self._shapes: dict[int, list[_Shape]] = {}

    @property
    def rows(self) -> int:
        """Source-NATed entries held."""
        return len(self.flows)

    # ---- keys and entries ---------------------------------------------------------------

    def _key(self, span) -> int:
        k = self.keys.get(span)
        if k is None:
            if self.free:
                k = self.free.pop()
                self.spans[k] = span
            else:
                k = len(self.spans)
                self.spans.append(span)
                for col in (self.n, self.tw, self.hi, self.mid, self.tw_max, self.lo_port, self.hi_port):
                    col.append(0)
            self.keys[span] = k
            self.lo_port[k], self.hi_port[k] = 65536, -1
        return k

    def _add(self, k: int, tid: int, value: int) -> None:
        self.flows[tid] = value
        self.n[k] += 1
        cls = (value >> _CLS_SHIFT) & 3
        if cls == 0:
            self.hi[k] += 1
        elif cls == 1:
            self.mid[k] += 1
        if value & _TW:
            self.tw[k] += 1
            dl = value >> _DL_SHIFT
            if dl > self.tw_max[k]:
                self.tw_max[k] = dl
        if value & _UNCONFIRMED:
            self.unconfirmed += 1
        port = tid & 0xFFFF
        if port < self.lo_port[k]:
            self.lo_port[k] = port
        if port > self.hi_port[k]:
            self.hi_port[k] = port

    def _remove(self, k: int, tid: int, value: int, keep: bool = False) -> None:
        del self.flows[tid]
        self.n[k] -= 1
        cls = (value >> _CLS_SHIFT) & 3
        if cls == 0:
            self.hi[k] -= 1
        elif cls == 1:
            self.mid[k] -= 1
        if value & _TW:
            self.tw[k] -= 1
            if not self.tw[k]:
                self.tw_max[k] = 0
        if value & _UNCONFIRMED:
            self.unconfirmed -= 1
        if not self.n[k] and not keep:
            del self.keys[self.spans[k]]
            self.spans[k] = None
            self.tw_max[k] = 0
            self.free.append(k)
            self.stale.discard(k)
        elif tid & 0xFFFF in (self.lo_port[k], self.hi_port[k]):
            self.stale.add(k)

    # ---- a dump ---------------------------------------------------------------------------

    def add_dump(self, blob: memoryview | bytes, length: int, now: float | None = None,
                 known: SnatBook | None = None) -> None:
        """ctnetlink.dump_groups' consumer: every source-NATed entry of a run of replies,
        unconfirmed unless `known` (the book before a resync) had it confirmed."""
        now = time.monotonic() if now is None else now
        k = len(blob) // length
        if not k:
            return
        data = blob if isinstance(blob, bytes) else bytes(blob)
        shape = self._shape_of_run(data, length, k)
        if shape is None:
            for i in range(k):
                self._walked(data, i * length, length, IPCTNL_MSG_CT_NEW, True, now, known)
            return
        if not self._bulk(shape, data, now, known):
            for row in shape.run.iter_unpack(data):
                self._row(shape, row, IPCTNL_MSG_CT_NEW, True, now, known)

    def _bulk(self, shape: _Shape, data: bytes, now: float, known: SnatBook | None) -> bool:
        """A run of dump replies added column by column instead of entry by entry (a seed
        of 100k entries: about 0.17 s -> 0.09 s). False, having changed nothing, when the
        run is not all source-NATed (a kernel that does not filter), or names a reply
        tuple twice or one the book holds already: then entry by entry."""
        cols = list(zip(*shape.run.iter_unpack(data)))
        ix = shape.index
        k = len(cols[0])

        def col(name: str, default: int) -> Iterable:
            return cols[ix[name]] if name in ix else repeat(default, k)

        if not all(map(and_, cols[ix["status"]], repeat(IPS_SRC_NAT))):
            return False
        spans, ports = cols[ix["span"]], cols[ix["dport"]]
        keys = self.keys
        made = set(spans).difference(keys)
        for span in made:
            self._key(span)
        ks = list(map(keys.__getitem__, spans))
        tids = list(map(or_, map(lshift, ks, repeat(32)), ports))
        zoned = "zone" in ix and any(cols[ix["zone"]])
        if zoned:
            tids = list(map(or_, tids, map(lshift, cols[ix["zone"]], repeat(16))))
        values = list(map(or_, col("id", 0), repeat(_UNCONFIRMED)))
        odd: list[int] = []
        if ("orig_hi" in ix and min(cols[ix["orig_hi"]]) < 4) or ("state" in ix and TCP_TIME_WAIT in cols[ix["state"]]):
            odd = [i for i, (h, st) in enumerate(zip(col("orig_hi", 4), col("state", 0))) if h < 4 or st == TCP_TIME_WAIT]
        if odd:
            his, states, timeouts = list(col("orig_hi", 4)), list(col("state", 0)), list(col("timeout", 0))
            base = int(now) + 1
            for i in odd:
                values[i] |= _CLASS[his[i]] << _CLS_SHIFT
                if states[i] == TCP_TIME_WAIT:
                    values[i] |= _TW | (base + timeouts[i]) << _DL_SHIFT
        new = dict(zip(tids, values))
        flows = self.flows
        if len(new) != k or any(map(flows.__contains__, new)):
            for span in made:                   # the keys made above go back
                kk = keys.pop(span)
                self.spans[kk] = None
                self.free.append(kk)
            return False
        if known is not None and known.rows > known.unconfirmed:
            ids = list(col("id", 0))
            zones = list(col("zone", 0))
            for i, t in enumerate(tids):
                if known.confirmed(spans[i], zones[i], ports[i], ids[i]):
                    new[t] &= ~_UNCONFIRMED
        flows.update(new)
        self.unconfirmed += sum(map(bool, map(and_, new.values(), repeat(_UNCONFIRMED))))
        n, hi, mid, tw, tw_max = self.n, self.hi, self.mid, self.tw, self.tw_max
        for kk, c in Counter(ks).items():
            n[kk] += c
            hi[kk] += c
            self.stale.add(kk)                  # lowest and highest port: recounted when needed
        for i in odd:
            kk, v = ks[i], values[i]
            cls = v >> _CLS_SHIFT & 3
            if cls:
                hi[kk] -= 1
                if cls == 1:
                    mid[kk] += 1
            if v & _TW:
                tw[kk] += 1
                if v >> _DL_SHIFT > tw_max[kk]:
                    tw_max[kk] = v >> _DL_SHIFT
        self.zoned = self.zoned or zoned
        return True

    def _shape_of_run(self, data: bytes, length: int, k: int) -> _Shape | None:
        if length & 3:
            return None
        words = array("I")
        words.frombytes(data)
        step = length // 4
        shapes = self._shapes.setdefault(length, [])
        for sh in shapes:
            if all(words[off // 4::step].tobytes() == word * k for off, word in sh.checks):
                return sh
        new = self._learn(data[:length], length) if len(shapes) < 8 else None
        if new is not None and all(words[off // 4::step].tobytes() == word * k for off, word in new.checks):
            return new
        return None

    def _learn(self, msg: bytes, length: int) -> _Shape | None:
        _, found, headers = layout(msg, 0, length)
        sh = _Shape(found, headers, length)
        if not sh.spanned:
            return None
        self._shapes.setdefault(length, []).append(sh)
        return sh

    # ---- events ---------------------------------------------------------------------------

    def apply(self, buf: bytes | bytearray | memoryview, n: int, now: float | None = None) -> int:
        """Apply every ctnetlink event message in buf[:n]; returns how many were conntrack events."""
        now = time.monotonic() if now is None else now
        if n >= 20:                            # the usual case: one event, one datagram
            length, kind, flags = _HEAD.unpack_from(buf, 0)
            if length == n and kind in _EVENT_KINDS:
                self.events += 1
                self._event(buf, 0, length, kind & 0xFF, bool(flags & NLM_F_CREATE), now)
                return 1
        off = seen = 0
        while off + 20 <= n:
            length, kind, flags, _, _ = HDR.unpack_from(buf, off)
            if length < 20 or off + length > n:
                raise CtnetlinkError("malformed netlink message")
            if kind >> 8 == ctnetlink.NFNL_SUBSYS_CTNETLINK and kind & 0xFF in (IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_DELETE):
                seen += 1
                self._event(buf, off, length, kind & 0xFF, bool(flags & NLM_F_CREATE), now)
            off += (length + 3) & ~3
        self.events += seen
        return seen

    def _event(self, buf, off: int, length: int, kind: int, create: bool, now: float) -> None:
        for sh in self._shapes.get(length, ()):
            if sh.fits(buf, off):
                self._row(sh, sh.one.unpack_from(buf, off), kind, create, now, None)
                return
        msg = bytes(buf[off:off + length])
        new = self._learn(msg, length) if len(self._shapes.get(length, ())) < 8 else None
        if new is not None and new.fits(msg, 0):
            self._row(new, new.one.unpack_from(msg, 0), kind, create, now, None)
        else:
            self._walked(msg, 0, length, kind, create, now, None)

    # ---- one entry ------------------------------------------------------------------------

    def _row(self, sh: _Shape, row: tuple, kind: int, create: bool, now: float, known: SnatBook | None) -> None:
        span, port, orig_hi, status, ct_id, state, timeout, zone = sh.pick(row + sh.defaults)
        if status & IPS_SRC_NAT:
            self._entry(span, port, zone, ct_id, _CLASS[orig_hi], state, timeout, kind, create, now, known)

    def _walked(self, msg: bytes, start: int, length: int, kind: int, create: bool, now: float,
                known: SnatBook | None) -> None:
        """An entry whose layout is not read at fixed offsets (no reply-tuple span: ICMP,
        GRE; or odd attributes): walked attribute by attribute, keyed by a tuple."""
        _, found, _ = layout(msg, start, length)
        if any(k not in found for k in REQUIRED) or "status" not in found:
            return

        def num(name: str, fmt: str) -> int | None:
            at = found.get(name)
            return struct.unpack_from(fmt, msg, at)[0] if at is not None else None

        if not (num("status", ">I") or 0) & IPS_SRC_NAT:
            return
        rs, rd = found["reply_src"], found["reply_dst"]
        key = (msg[found["proto"]], bytes(msg[rs:rs + found["reply_src:w"]]),
               bytes(msg[rd:rd + found["reply_dst:w"]]), num("reply_sport", ">H") or 0)
        sport = num("orig_sport", ">H")
        self._entry(key, num("reply_dport", ">H") or 0, num("zone", ">H") or 0, num("id", ">I") or 0,
                    _CLASS[sport >> 8] if sport is not None else 0, num("tcp_state", "B"),
                    num("timeout", ">I") or 0, kind, create, now, known)

    def _entry(self, span, port: int, zone: int, ct_id: int, cls: int, state: int | None, timeout: int,
               kind: int, create: bool, now: float, known: SnatBook | None) -> None:
        k = self.keys.get(span)
        if zone:
            self.zoned = True
        old = self.flows.get(k << 32 | zone << 16 | port) if k is not None else None
        same = old is not None and old & _ID_MASK == ct_id
        if kind == IPCTNL_MSG_CT_DELETE:
            if same:
                assert k is not None and old is not None
                self._remove(k, k << 32 | zone << 16 | port, old)
            else:
                self.ignored += 1
            return
        if known is None and not create and not same:
            # an UPDATE of an entry the book does not hold: an older entry of the tuple, or
            # one that has already gone; applying it could bring a dead entry back
            self.ignored += 1
            return
        if state is None:                      # no CTA_PROTOINFO: the TCP state did not change
            tw = same and bool(old & _TW)      # type: ignore[operator]
        else:
            tw = state == TCP_TIME_WAIT
        value = ct_id | (_TW if tw else 0) | cls << _CLS_SHIFT
        if tw:
            if state is None and same:         # still the TIME_WAIT the book knows: its deadline stands
                value |= (old >> _DL_SHIFT) << _DL_SHIFT    # type: ignore[operator]
            else:
                value |= (int(now) + timeout + 1) << _DL_SHIFT
        if known is not None and not known.confirmed(span, zone, port, ct_id):
            value |= _UNCONFIRMED              # from a dump, and no event has named it yet
        if old is None:
            if k is None:
                k = self._key(span)
            self._add(k, k << 32 | zone << 16 | port, value)
        elif old != value:
            assert k is not None
            tid = k << 32 | zone << 16 | port
            self._remove(k, tid, old, keep=True)
            self._add(k, tid, value)

    def confirmed(self, span: bytes | tuple, zone: int, port: int, ct_id: int) -> bool:
        """Has an event named this entry (same reply tuple and id)?"""
        k = self.keys.get(span)
        if k is None:
            return False
        v = self.flows.get(k << 32 | zone << 16 | port)
        return v is not None and v & _ID_MASK == ct_id and not v & _UNCONFIRMED

    # ---- the result -----------------------------------------------------------------------

    def _recount(self) -> None:
        """Lowest and highest NAT port of the keys whose extreme left (one pass)."""
        stale = self.stale
        lo = dict.fromkeys(stale, 65536)
        hi = dict.fromkeys(stale, -1)
        for tid in self.flows:
            k = tid >> 32
            if k in lo:
                p = tid & 0xFFFF
                if p < lo[k]:
                    lo[k] = p
                if p > hi[k]:
                    hi[k] = p
        for k in stale:
            self.lo_port[k], self.hi_port[k] = lo[k], hi[k]
        stale.clear()

    def _distinct(self) -> Counter:
        """Distinct NAT ports per key when entries of several zones may share one."""
        return Counter(k for k, _ in {(tid >> 32, tid & 0xFFFF) for tid in self.flows})

    def destinations(self, rules: Iterable[NatRule] = (), now: float | None = None) -> list[SnatDestination]:
        """Every translated destination, most used first: SnatTally.destinations() of the
        live table (time_wait_timeout_max from the events' timeouts, see docs/nat.md)."""
        now = time.monotonic() if now is None else now
        rules = list(rules)
        ranged = any(r.kind in ("snat", "masquerade") and r.ports is not None for r in rules)
        if ranged and self.stale:
            self._recount()
        distinct = self._distinct() if self.zoned else None
        merged: dict = {}
        for span, k in self.keys.items():
            merged.setdefault(span_key(span) if isinstance(span, bytes) else span, []).append(k)
        evict = tcp_time_wait_evictable()
        out = []
        for (proto, dst, nat_ip, dport), ks in merged.items():
            in_use = sum(distinct[k] for k in ks) if distinct is not None else sum(self.n[k] for k in ks)
            ports = {min(self.lo_port[k] for k in ks), max(self.hi_port[k] for k in ks)} if ranged else set()
            tw = sum(self.tw[k] for k in ks)
            dl = max(self.tw_max[k] for k in ks)
            pname = PROTO_NAMES.get(proto, str(proto))
            nat = format_addr(nat_ip)
            if any(self.hi[k] for k in ks):
                orig = {1024}
            else:
                orig = {600} if any(self.mid[k] for k in ks) else {1}
            lo, hi, rule = applicable_range(pname, 4 if len(nat_ip) == 4 else 6, nat, ports, orig, rules)
            out.append(SnatDestination(proto=pname, nat_ip=nat, dst=format_addr(dst), dport=dport, in_use=in_use,
                                       time_wait=tw, time_wait_timeout_max=max(0, dl - int(now) - 1) if tw else None,
                                       capacity=hi - lo + 1, low=lo, high=hi,
                                       range_from="rule" if rule is not None else "default", rule=rule,
                                       time_wait_reclaimable=evict and pname == "tcp"))
        out.sort(key=lambda d: (-d.utilization, -d.in_use, d.proto, d.nat_ip, d.dst, d.dport))
        return out


def _ns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def _mapped(e: CtnetlinkError) -> Exception:
    if e.errno == errno.EPERM:
        return NotPermitted(NEED_CAP)
    return Unsupported(f"cannot follow conntrack events over ctnetlink ({e})")


class SnatWatch:
    """One namespace's SNAT use, kept from ctnetlink events (see the module doc).

    Call tally() inside the namespace (portscope.netns.entered), once per scrape: the
    first call subscribes and dumps, later ones drain the events. `resyncs` counts the
    dumps by reason: "start" (first call, or the namespace behind the name changed),
    "overflow" (ENOBUFS), "unconfirmed" (entries older than the subscription left).
    `mode` is "events", or "dump" when the namespace sends no events.

    background=True (the exporter's): a daemon thread applies the events as they come,
    between scrapes, so the receive buffer holds what arrives in about a second, not in a
    whole scrape interval (a busy node's flows would overflow it and make every scrape
    dump). Through a socket tally() opened in the namespace it also does the reaping walk
    and the dumps after an overflow and for unconfirmed entries, so after the first one a
    scrape dumps only when that socket failed."""

    def __init__(self, rcvbuf: int = EVENT_RCVBUF, refresh: float = UNCONFIRMED_REFRESH, reap: bool = True,
                 background: bool = False) -> None:
        self.background = background
        self._lock = threading.Lock()
        self._overflowed = False
        self._thread_sock: socket.socket | None = None     # the socket a follower thread reads
        self._reap_sock: socket.socket | None = None       # opened in the namespace, for the follower's reaps
        self._reaped_at = float("-inf")
        self._reap_period = REAP_EVERY
        self.rcvbuf = rcvbuf
        self.refresh = refresh
        self.reap = reap
        self.sock: socket.socket | None = None
        self.ns: int | None = None
        self.book: SnatBook | None = None
        self.resyncs: Counter = Counter()
        self.mode: str | None = None
        self.dumped_at = float("-inf")
        self._buf = bytearray(65536)

    def close(self) -> None:
        """Unsubscribe (the socket would otherwise keep its namespace alive)."""
        sock, self.sock, self.book = self.sock, None, None
        if sock is not None:
            sock.close()            # a following thread sees self.sock change and ends
        if self._reap_sock is not None:
            self._reap_sock.close()
            self._reap_sock = None

    def tally(self) -> SnatBook | SnatTally:
        """The namespace's SNAT use now (CAP_NET_ADMIN): the event-kept book, or with
        events off in this namespace a SnatTally from a dump."""
        with self._lock:
            out = self._tally()
            if self.background and self.sock is not None and self.mode == "events":
                self._follow()
            return out

    def _follow(self) -> None:
        sock = self.sock
        if self._thread_sock is sock:
            return
        self._thread_sock = sock
        if self._reap_sock is None:
            try:
                self._reap_sock = ctnetlink.open_socket()       # tally() runs in the namespace
            except CtnetlinkError:
                self._reap_sock = None          # the follower then drains only; tally() reaps
        threading.Thread(target=self._apply_as_they_come, args=(sock,), daemon=True,
                         name="portscope-ct-events").start()

    def _apply_as_they_come(self, sock: socket.socket) -> None:
        """The background follower: drain whenever events are queued, until the watch
        closes or resubscribes (another socket)."""
        while self.sock is sock:
            try:
                ready, _, _ = select.select([sock], [], [], 1.0)
            except (OSError, ValueError):
                return                          # closed under us
            # walks and dumps only through the socket opened in the namespace: this thread
            # is not in it (without that socket they stay with tally())
            inside = self._reap_sock is not None
            now = time.monotonic()
            reap = inside and self.reap and now - self._reaped_at >= self._reap_period
            book = self.book
            refresh = inside and book is not None and book.unconfirmed > 0 and now - self.dumped_at >= self.refresh
            if not (ready or reap or refresh or (inside and self._overflowed)):
                continue
            with self._lock:
                if self.sock is not sock:
                    return
                if self.book is None:
                    continue
                try:
                    if inside and (self._overflowed or refresh):
                        # the dump a scrape would pay, paid here between scrapes
                        self._resync("overflow" if self._overflowed else "unconfirmed")
                    elif not self._overflowed:
                        if reap:
                            self._reap()
                        self._drain(self.book)
                except Overflow:
                    self._overflowed = True     # resynced on the next turn (or by tally())
                except Exception:
                    self._thread_sock = None    # tally() meets and reports it
                    return
            if self._overflowed and not inside:
                time.sleep(0.2)                 # still readable: do not spin until tally() resyncs

    def _tally(self) -> SnatBook | SnatTally:
        if events_setting() == 0:
            self.close()
            self.mode = "dump"
            tally = SnatTally()
            self._dump(tally.add)
            return tally
        ino = _ns_inode()
        if self.sock is None or self.book is None or ino != self.ns:
            self.close()
            self._subscribe(ino)
            self._resync("start")
        elif self.book.unconfirmed and time.monotonic() - self.dumped_at >= self.refresh + self._grace():
            # the queued events are applied after the dump (the stream since the
            # subscription is complete), and the dump removes expired entries itself
            self._resync("unconfirmed")
        else:
            # a follower that reaped lately spares the scrape the walk (the book then lags
            # the kernel's expiries by at most that period, as the kernel's own count does
            # until its garbage collector comes)
            if self.reap and time.monotonic() - self._reaped_at >= self._reap_period + self._grace():
                self._reap()
            try:
                if self._overflowed:
                    raise Overflow()
                self._drain(self.book)
            except Overflow:
                self._resync("overflow")
        self.mode = "events"
        assert self.book is not None
        return self.book

    def _subscribe(self, ino: int) -> None:
        try:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK,
                              ctnetlink.NETLINK_NETFILTER)
        except OSError as e:
            raise _mapped(CtnetlinkError(str(e), e.errno))
        try:
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            s.bind((0, GROUPS))
        except OSError as e:
            s.close()
            raise _mapped(CtnetlinkError(str(e), e.errno))
        self.sock, self.ns = s, ino

    def _grace(self) -> float:
        """How late a follower that walks and dumps may be before tally() does it (its
        loop wakes at least once a second)."""
        return FOLLOWER_GRACE if self.background and self._reap_sock is not None else 0.0

    def _drop_reap_sock(self, sock: socket.socket) -> None:
        """Forget the follower's in-namespace socket (after a failed walk on it): the
        follower then only drains, and tally() walks and dumps."""
        if sock is self._reap_sock:
            self._reap_sock = None

    def _dump(self, consume) -> None:
        self._walk(consume, IPS_SRC_NAT)

    def _walk(self, consume, status: int) -> None:
        """One ctnetlink dump of the entries with `status` (dump_groups) in the watched
        namespace: through the follower's socket, opened there, so a thread outside it can
        walk too; else a socket of the calling thread's namespace, for this walk only."""
        try:
            sock = self._reap_sock or ctnetlink.open_socket()
            try:
                ctnetlink.dump_groups(sock, consume, status=status)
            except BaseException:
                self._drop_reap_sock(sock)      # a dump cut short leaves replies queued in it
                raise
            finally:
                if sock is not self._reap_sock:
                    sock.close()
        except CtnetlinkError as e:
            raise _mapped(e)

    def _reap(self) -> None:
        """Have the kernel walk the table and remove the entries that have expired but
        that its garbage collector has not reached yet (a dump kills every expired entry
        it walks, so a full dump never shows them; the kernel no longer counts them as
        taken either). The dump asks for status TEMPLATE, which no entry in the table
        has, so nothing is sent back; the removals come as DESTROY events. About 30 ms
        of kernel time at 100k entries. A kernel that does not filter by status (before
        5.15) would send the whole table: then this is not done again."""
        got = [0]

        def count(blob: memoryview | bytes, length: int) -> None:
            got[0] += len(blob) // length

        start = time.monotonic()
        self._walk(count, IPS_TEMPLATE)
        self._reaped_at = now = time.monotonic()
        self._reap_period = max(REAP_EVERY, (now - start) * REAP_SHARE)
        if got[0]:
            self.reap = False

    def _drain(self, book: SnatBook | None) -> int:
        """Apply (or with book None, discard) every queued event; raises Overflow on ENOBUFS."""
        assert self.sock is not None
        recv, buf, now = self.sock.recv_into, self._buf, time.monotonic()
        got = 0
        # bounded: a queue refilled as fast as it drains is left for the next scrape
        for _ in repeat(None, MAX_DRAIN):
            try:
                n = recv(buf)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    raise Overflow()
                raise _mapped(CtnetlinkError(str(e), e.errno))
            got += 1
            if book is not None:
                book.apply(buf, n, now)
        return got

    def _resync(self, reason: str) -> None:
        """Dump and apply what queued meanwhile. After an overflow the queue is discarded
        first (it misses events); ENOBUFS during the resync: once more, at most
        RESYNC_TRIES times."""
        old = self.book if self.book is not None else SnatBook()
        self.book = None                        # a resync that fails leaves no book to trust
        self._overflowed = False
        self.resyncs[reason] += 1
        discard = reason == "overflow"
        for _ in range(RESYNC_TRIES):
            for _ in range(100):
                if not discard:
                    break
                try:
                    self._drain(None)
                    discard = False
                except Overflow:
                    pass
            book = SnatBook()
            now = time.monotonic()
            self._dump(partial(book.add_dump, now=now, known=old))
            self.dumped_at = now
            try:
                self._drain(book)
            except Overflow:
                self.resyncs["overflow"] += 1
                discard = True
                continue
            self.book = book
            return
        self.close()
        raise Unsupported(f"conntrack events overflow the receive buffer ({self.rcvbuf} bytes) faster "
                          "than a dump completes")
