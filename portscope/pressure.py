"""Ephemeral-port pressure: who holds which ports of the range, per destination and globally.

The model (Linux; DESIGN.md and facts.md section 1):

* The usable pool U is the range minus reserved ports (verified on 6.18: with equal-parity
  ends every port, HIGH included, can be handed out).
* Equal-parity ends (an odd number of ports): __inet_hash_connect() scans a window of
  remaining & ~1 = |range| - 1 ports per call. Ports past the end wrap back by that even
  count, so the window is LOW..HIGH-1 when the call's start offset is 0 and LOW+1..HIGH
  otherwise: it leaves out LOW or HIGH, never a port between them (bind(0) alike). A
  destination can count on one port less than the count below (it may get the last one;
  measured 11,11,11,10,11,11 in 40000-40010): capacity is that guaranteed count, and
  utilization is clamped at 1.0. The loss is 1 only while LOW or HIGH is in U and free of
  bind(); UDP autobind scans every port and loses nothing.
* TCP connect() without bind may reuse a source port for a different (src, dst, dport) as long
  as the 4-tuple is unique, but never a port held by an explicit bind(): listeners,
  bind-before-connect, bound-only sockets. Those form the TCP "exclusive" set G_tcp.
* UDP (and UDP-Lite) sockets each hold their port for every destination: G_udp. TCP and UDP
  have separate port tables, so G_udp does not reduce TCP capacity and vice versa.
* Per destination D = (proto, src IP, dst IP, dport):
      capacity(D) = |U| - |G_proto| + (ports of G_proto held by D's own sockets)
                    - (1 for TCP with equal-parity ends, above)
      in_use(D)   = D's sockets with a local port in U (TIME_WAIT included)
  so utilization(D) reaches 1.0 when the next connect() to D may fail.
* Global: distinct ports of U held by anything, broken down by what holds them.

bind(addr, 0)+connect() cannot be told from plain connect() by sock_diag (the kernel's AUTO
test only sees ports bound by number). We infer it from the allocator's parity split: connect()
tries ports of LOW's parity first and only takes the other parity once every same-parity port
is unusable for that destination, while bind(0) starts with the other parity. So a TCP client
socket on an other-parity port, alone on that port, to a destination that uses less than half
of its LOW-parity ports (far from connect()'s second pass, even if some have closed since),
was almost certainly bound first. Limits (docs/pressure.md): sockets using IP_LOCAL_PORT_RANGE
(no parity split) are counted as bind-held; bind(0) sockets toward a destination that also
holds many plain connect()s are missed. Once bind(0) has used up its half of the range it takes
LOW-parity ports too; then a lone socket on a LOW-parity port to a destination that already
binds before connecting is counted as bind-held as well (a program binds all or none).

Everything is aggregated over the table's columns with dicts and Counters; no per-socket
objects, so 100k sockets cost one Python loop.
"""
from __future__ import annotations

import sys
from array import array
from collections import Counter
from itertools import compress
from operator import itemgetter

from . import netns as _netns
from .findings import Finding, evaluate
from .ports import PortRange, PortSet
from .sockets import netlink, snapshot
from .sockets.masks import and_, is_, not_, or_
from .sockets.table import (
    AUTO_NO,
    PROTO_NAMES,
    PROTO_TCP,
    PROTO_UDP,
    PROTO_UDPLITE,
    STATE_CODES,
    TCP_LISTEN,
    TCP_TIME_WAIT,
    SocketTable,
    format_addr,
)
from .value import Frozen

TYPE_CHECKING = False     # not typing's: `pressure` starts without importing typing (or dataclasses)
if TYPE_CHECKING:
    from typing import Callable, Collection, Iterable, Mapping, Sequence

    from .host import HostFacts

PARITY_FAR = 0.5     # bind(0) inference only while a destination uses < half its LOW-parity ports
_BOUND_INACTIVE = 13
_UDP_PROTOS = (PROTO_UDP, PROTO_UDPLITE)
# listener ports spread over more high bytes than this are found with a set lookup per row
# (about 4 ms at 100k rows) instead of ports_in()'s passes (about 0.5 ms per high byte)
_FEW_HIGH_BYTES = 8
_set = object.__setattr__


class Destination(Frozen):
    """Port use toward one (proto, src IP, dst IP, dst port); frozen, `replace()` gives a changed copy."""

    __slots__ = ("proto", "src", "dst", "dport", "in_use", "time_wait", "capacity", "utilization", "bind_held",
                 "rate_per_s", "sustainable_rate_per_s", "seconds_to_exhaustion", "steady_state_in_use",
                 "steady_state_time_wait")
    proto: str
    src: str
    dst: str
    dport: int
    in_use: int
    time_wait: int
    capacity: int
    utilization: float
    bind_held: int                            # of in_use: sockets that hold their port globally
    # forecast (set by forecast.forecast; None without --interval)
    rate_per_s: float | None
    sustainable_rate_per_s: float | None
    seconds_to_exhaustion: float | None
    steady_state_in_use: int | None
    steady_state_time_wait: int | None

    def __init__(self, proto: str, src: str, dst: str, dport: int, in_use: int, time_wait: int, capacity: int,
                 utilization: float, bind_held: int = 0, rate_per_s: float | None = None,
                 sustainable_rate_per_s: float | None = None, seconds_to_exhaustion: float | None = None,
                 steady_state_in_use: int | None = None, steady_state_time_wait: int | None = None) -> None:
        # one call per field, not _init(**kw): analyze() makes one per destination
        _set(self, "proto", proto)
        _set(self, "src", src)
        _set(self, "dst", dst)
        _set(self, "dport", dport)
        _set(self, "in_use", in_use)
        _set(self, "time_wait", time_wait)
        _set(self, "capacity", capacity)
        _set(self, "utilization", utilization)
        _set(self, "bind_held", bind_held)
        _set(self, "rate_per_s", rate_per_s)
        _set(self, "sustainable_rate_per_s", sustainable_rate_per_s)
        _set(self, "seconds_to_exhaustion", seconds_to_exhaustion)
        _set(self, "steady_state_in_use", steady_state_in_use)
        _set(self, "steady_state_time_wait", steady_state_time_wait)

    @property
    def key(self) -> tuple:
        """(proto, src, dst, dport): what identifies the destination across samples."""
        return (self.proto, self.src, self.dst, self.dport)

    @property
    def label(self) -> str:
        """`SRC -> DST:DPORT`, an IPv6 destination in brackets."""
        dst = f"[{self.dst}]" if ":" in self.dst else self.dst
        return f"{self.src} -> {dst}:{self.dport}"

    def to_json(self, forecast: bool = False) -> dict:
        """The destination's JSON object; the forecast keys only when `forecast` (their presence
        tells a sampled run from a single snapshot)."""
        d = {
            "proto": self.proto, "src": self.src, "dst": self.dst, "dport": self.dport,
            "in_use": self.in_use, "time_wait": self.time_wait, "capacity": self.capacity,
            "utilization": round(self.utilization, 6), "bind_held": self.bind_held,
        }
        if forecast:
            d.update(
                rate_per_s=_r(self.rate_per_s),
                sustainable_rate_per_s=_r(self.sustainable_rate_per_s),
                seconds_to_exhaustion=_r(self.seconds_to_exhaustion),
                steady_state_in_use=self.steady_state_in_use,
                steady_state_time_wait=self.steady_state_time_wait,
            )
        return d


class GlobalUse(Frozen):
    """Ports of the usable pool held by anything, and by what (counts are distinct ports
    except `sockets`, `time_wait` and `connect`, which count sockets); frozen."""

    __slots__ = ("in_use", "capacity", "utilization", "range_size", "reserved_in_range", "listeners", "bind_held",
                 "bind_inferred", "udp", "connect", "time_wait", "sockets", "tcp_exclusive", "udp_exclusive")
    in_use: int
    capacity: int                 # |U|: range minus reserved ports inside it
    utilization: float
    range_size: int
    reserved_in_range: int
    listeners: int                # ports of U with a TCP listener
    bind_held: int                # ports of U held by TCP bind-before-connect / bound-only
    bind_inferred: int            # of bind_held: inferred from parity (see module doc)
    udp: int                      # ports of U held by UDP / UDP-Lite sockets
    connect: int                  # client sockets whose port connect() chose (shareable)
    time_wait: int                # client sockets in TIME_WAIT
    sockets: int                  # client sockets with a local port in U
    tcp_exclusive: int            # |G_tcp|: ports no TCP connect() can use
    udp_exclusive: int            # |G_udp|

    def __init__(self, in_use: int, capacity: int, utilization: float, range_size: int, reserved_in_range: int,
                 listeners: int, bind_held: int, bind_inferred: int, udp: int, connect: int, time_wait: int,
                 sockets: int, tcp_exclusive: int, udp_exclusive: int) -> None:
        self._init(in_use=in_use, capacity=capacity, utilization=utilization, range_size=range_size,
                   reserved_in_range=reserved_in_range, listeners=listeners, bind_held=bind_held,
                   bind_inferred=bind_inferred, udp=udp, connect=connect, time_wait=time_wait, sockets=sockets,
                   tcp_exclusive=tcp_exclusive, udp_exclusive=udp_exclusive)

    def to_json(self) -> dict:
        """Every field by its name, utilization rounded to 6 places."""
        d = self.fields()
        d["utilization"] = round(self.utilization, 6)
        return d


class ProcessUse(Frozen):
    """Client sockets (and the distinct ports they hold) of one process; frozen."""

    __slots__ = ("pid", "command", "in_use", "ports")
    pid: int | None
    command: str | None
    in_use: int                   # client sockets with a local port in U
    ports: int                    # distinct ports of U those sockets hold (not in JSON yet:
                                  # docs/json.md documents processes[] key by key)

    def __init__(self, pid: int | None, command: str | None, in_use: int, ports: int = 0) -> None:
        self._init(pid=pid, command=command, in_use=in_use, ports=ports)

    def to_json(self) -> dict:
        """`{"pid", "command", "in_use"}` (pid and command null when unknown)."""
        return {"pid": self.pid, "command": self.command, "in_use": self.in_use}


class PressureResult(Frozen):
    """Everything analyze() found: global use, destinations worst first, findings (frozen;
    `replace()` gives a changed copy)."""

    __slots__ = ("os", "range", "reserved", "unprivileged_port_start", "tcp_tw_reuse", "time_wait_seconds",
                 "global_", "destinations", "destinations_total", "others", "findings", "processes", "backend",
                 "netns", "forecast", "listener_ports", "connect_window_loss", "range_window_loss")
    os: str
    range: PortRange
    reserved: PortSet
    unprivileged_port_start: int
    tcp_tw_reuse: int | None
    time_wait_seconds: int
    global_: GlobalUse
    destinations: tuple[Destination, ...]          # worst first; top-N when asked
    destinations_total: int                        # before top-N
    others: dict                                   # {"destinations", "in_use"} beyond top-N
    findings: tuple[Finding, ...]
    processes: tuple[ProcessUse, ...]              # with process=True
    backend: str | None
    netns: str | None
    forecast: dict | None                          # {"samples", "interval_s", "elapsed_s"}
    listener_ports: tuple[int, ...]                # TCP listeners inside U (sorted)
    # equal-parity ends: ports one connect() may skip (0 or 1; see the module doc), given
    # what bind() holds now / given the range and reservations alone
    connect_window_loss: int
    range_window_loss: int

    def __init__(self, os: str, range: PortRange, reserved: PortSet, unprivileged_port_start: int,
                 tcp_tw_reuse: int | None, time_wait_seconds: int, global_: GlobalUse,
                 destinations: tuple[Destination, ...], destinations_total: int, others: dict,
                 findings: tuple[Finding, ...] = (), processes: tuple[ProcessUse, ...] = (),
                 backend: str | None = None, netns: str | None = None, forecast: dict | None = None,
                 listener_ports: tuple[int, ...] = (), connect_window_loss: int = 0,
                 range_window_loss: int = 0) -> None:
        self._init(os=os, range=range, reserved=reserved, unprivileged_port_start=unprivileged_port_start,
                   tcp_tw_reuse=tcp_tw_reuse, time_wait_seconds=time_wait_seconds, global_=global_,
                   destinations=destinations, destinations_total=destinations_total, others=others,
                   findings=findings, processes=processes, backend=backend, netns=netns, forecast=forecast,
                   listener_ports=listener_ports, connect_window_loss=connect_window_loss,
                   range_window_loss=range_window_loss)

    @property
    def worst(self) -> Destination | None:
        """The most utilized destination, None without any."""
        return self.destinations[0] if self.destinations else None

    def new_destination_capacity(self, proto: str = "tcp") -> int:
        """Ports a destination with no socket yet can count on (the prediction before a step)."""
        g = self.global_
        if proto == "tcp":
            return max(0, g.capacity - g.tcp_exclusive - self.connect_window_loss)
        return max(0, g.capacity - g.udp_exclusive)

    @property
    def tcp_pool_ports(self) -> int:
        """Ports a new TCP socket can count on getting at all (equal-parity ends cost the
        port connect()/bind(0) may skip, when one of LOW's parity is still free)."""
        return max(0, self.global_.capacity - self.connect_window_loss)

    @property
    def connect_ports(self) -> int:
        """Ports one destination's connect() can count on from the range and the
        reservations alone (what the per-destination rate limits are computed from)."""
        return max(0, self.global_.capacity - self.range_window_loss)

    def destination(self, dst: str, dport: int, proto: str = "tcp", src: str | None = None) -> Destination | None:
        """The destination to dst:dport over proto (from `src` when given); None if not among them."""
        for d in self.destinations:
            if d.dst == dst and d.dport == dport and d.proto == proto and (src is None or d.src == src):
                return d
        return None

    def to_json(self) -> dict:
        """The `pressure --json` document (docs/json.md)."""
        fc = self.forecast is not None
        d = {
            "global": self.global_.to_json(),
            "destinations": [x.to_json(forecast=fc) for x in self.destinations],
            "findings": [f.to_json() for f in self.findings],
            "destinations_total": self.destinations_total,
            "others": self.others,
            "range": {"low": self.range.low, "high": self.range.high, "size": self.range.size},
            "reserved": str(self.reserved),
            "unprivileged_port_start": self.unprivileged_port_start,
            "tcp_tw_reuse": self.tcp_tw_reuse,
            "time_wait_seconds": self.time_wait_seconds,
            "listener_ports": list(self.listener_ports),
            "backend": self.backend,
            "netns": self.netns,
        }
        if self.processes:
            d["processes"] = [p.to_json() for p in self.processes]
        if fc:
            d["forecast"] = self.forecast
        return d


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


_TIMES2 = bytes([0, 2] + [0] * 254)
_TIMES4 = bytes([0, 4] + [0] * 254)


def _count_parity(ports: Collection[int], parity: int, usable: bytearray) -> int:
    """How many of `ports` have that parity and are in the pool (C passes, no loop)."""
    a = array("H", ports)
    raw = a.tobytes()
    low = raw[0::2] if sys.byteorder == "little" else raw[1::2]
    return and_(is_(low, *range(parity, 256, 2)), bytes(map(usable.__getitem__, a))).count(1)


def window_loss(host_facts: HostFacts, usable: bytearray, held: Collection[int] = ()) -> int:
    """1 when connect() may skip a port it could have used: equal-parity ends on Linux, and
    LOW or HIGH (the only ports a window can leave out) in the pool and not held by bind()
    (see the module doc); else 0."""
    rng = host_facts.ephemeral
    if host_facts.os != "linux" or rng.size < 3 or not rng.same_parity:
        return 0
    return int(any(usable[p] and p not in held for p in (rng.low, rng.high)))


def usable_ports(rng: PortRange, reserved: PortSet) -> bytearray:
    """65536 flags: 1 where connect()/bind(0) may hand out the port."""
    flags = bytearray(65536)
    high = rng.high
    flags[rng.low:high + 1] = b"\x01" * (high - rng.low + 1)
    for r in reserved.ranges:
        lo, hi = max(r.low, rng.low), min(r.high, high)
        if lo <= hi:
            flags[lo:hi + 1] = bytes(hi - lo + 1)
    return flags


class RowMasks:
    """0/1 byte masks over the table's rows that the pressure model needs."""

    def __init__(self, host_facts: HostFacts, t: SocketTable, usable: bytearray | None = None) -> None:
        rng = host_facts.ephemeral
        if usable is None:
            usable = usable_ports(rng, host_facts.reserved)
        n = len(t)
        self.pb, sb = t.proto.tobytes(), t.state.tobytes()
        lports = t.local_port
        self.listen_ports = lp = set(pick(lports, and_(is_(sb, TCP_LISTEN), is_(self.pb, PROTO_TCP))))
        lp.update(p for pr, p in (getattr(t, "listen_ports", None) or ()) if pr == PROTO_TCP)
        pb2 = lports.tobytes()
        lo, hi = (pb2[0::2], pb2[1::2]) if sys.byteorder == "little" else (pb2[1::2], pb2[0::2])
        if host_facts.reserved.count_in(rng):
            in_u = bytes(map(usable.__getitem__, lports))
        else:
            in_u = in_range(lo, hi, rng.low, rng.high)
        # a port is 0 when both its bytes are; listener ports likewise byte by byte (few
        # listeners: a handful of C passes beat a set lookup per row)
        rb2 = t.remote_port.tobytes()
        connected = not_(and_(is_(rb2[0::2], 0), is_(rb2[1::2], 0)))
        server = is_(sb, TCP_LISTEN)
        if len({p >> 8 for p in lp}) > _FEW_HIGH_BYTES:
            server = or_(server, bytes(map(lp.__contains__, lports)))
        elif lp:
            server = or_(server, ports_in(lo, hi, lp))
        tcp = and_(is_(self.pb, PROTO_TCP), in_u, not_(server))
        bound_only = or_(not_(connected), is_(sb, _BOUND_INACTIVE))
        self.tcp_client = and_(tcp, not_(bound_only))
        self.tcp_bound_only = and_(tcp, bound_only)
        self.udp_in_u = and_(is_(self.pb, *_UDP_PROTOS), in_u)
        self.udp_client = and_(self.udp_in_u, connected)
        self.client = or_(self.tcp_client, self.udp_client)
        self.tw = is_(sb, TCP_TIME_WAIT)
        ab = t.auto_bound.tobytes()
        self.auto_no = is_(ab, AUTO_NO) if len(ab) == n else bytes(n)   # empty column: unknown
        # the low byte of each port gives its parity
        self.same_par = is_(lo, *range(rng.low & 1, 256, 2))
        self.tcp_keys = lambda: zip(t.local_addr, t.remote_addr, t.remote_port)
        self.udp_keys = lambda: zip(t.proto, t.local_addr, t.remote_addr, t.remote_port)
        self._table = t

    def udp_client_keys(self) -> list[tuple]:
        """(proto, src, dst, dport) of each connected UDP / UDP-Lite row in the pool, in row
        order: gathered by index (few rows; a zip over every row costs 5x as much)."""
        t = self._table
        get = gather(rows_of(self.udp_client))
        return list(zip(get(t.proto), get(t.local_addr), get(t.remote_addr), get(t.remote_port)))

    def protois_(self, pr: int) -> bytes:
        """Mask of the rows of protocol number `pr`."""
        return is_(self.pb, pr)


def in_range(lo: bytes, hi: bytes, low: int, high: int) -> bytes:
    """0/1 mask of the rows whose port (low byte `lo`, high byte `hi` per row) is in
    low..high: byte comparisons in C, no port turned into a Python int (see _by_high)."""
    lh, hh = low >> 8, high >> 8
    if lh == hh:
        return _by_high(lo, hi, {lh: range(low & 0xFF, (high & 0xFF) + 1)})
    lows: dict[int, Collection[int]] = {h: range(256) for h in range(lh + 1, hh)}
    lows[lh], lows[hh] = range(low & 0xFF, 256), range((high & 0xFF) + 1)
    return _by_high(lo, hi, lows)


def ports_in(lo: bytes, hi: bytes, ports: Iterable[int]) -> bytes:
    """0/1 mask of the rows whose port (low byte `lo`, high byte `hi` per row) is one of
    `ports` (see _by_high)."""
    lows: dict[int, set[int]] = {}
    for p in ports:
        lows.setdefault(p >> 8, set()).add(p & 0xFF)
    return _by_high(lo, hi, lows)


def _by_high(lo: bytes, hi: bytes, lows: Mapping[int, Collection[int]]) -> bytes:
    """0/1 mask of the rows whose high byte is a key of `lows` and low byte is in its value.
    A high byte whose 256 low bytes are all in is one translate of `hi`; each other costs
    one AND with a translate of `lo`. The AND and OR of two masks are each a pass through a
    big integer (about 0.3-0.5 ms at 100k rows), so the passes follow the distinct high
    bytes, not the ports: a range is at most two of them, and listeners usually share one
    or two."""
    whole = [h for h, ls in lows.items() if len(ls) == 256]
    out = is_(hi, *whole) if whole else None
    for h, ls in lows.items():
        if len(ls) < 256:
            m = and_(is_(hi, h), is_(lo, *ls))
            out = m if out is None else or_(out, m)
    return out if out is not None else bytes(len(hi))


def pick(column: Sequence, mask: bytes) -> list:
    """The entries of `column` where `mask` is 1. compress() turns every entry of an array
    into a Python int on the way; when few rows are picked, finding them in the mask
    (bytes.find, in C) and indexing only those is several times faster."""
    k = mask.count(1)
    if k * 16 > len(mask):
        return list(compress(column, mask))
    out = []
    i = mask.find(1)
    while i >= 0:
        out.append(column[i])
        i = mask.find(1, i + 1)
    return out


def rows_of(mask: bytes) -> list[int]:
    """Indices of the rows where `mask` is 1 (pick() over the row numbers)."""
    return pick(range(len(mask)), mask)


def gather(rows: Sequence[int]) -> Callable[[Sequence], Sequence]:
    """column -> its entries at `rows`, in one C call (operator.itemgetter) however many."""
    if not rows:
        return lambda column: ()
    if len(rows) == 1:
        i = rows[0]
        return lambda column: (column[i],)
    return itemgetter(*rows)


def row_masks(host_facts: HostFacts, table: SocketTable, usable: bytearray | None = None) -> RowMasks:
    """The masks analyze() and the exporter share (`usable` saves recomputing the pool flags)."""
    return RowMasks(host_facts, table, usable)


def tcp_dest_counts(t: SocketTable, m: RowMasks) -> tuple[Counter, Counter, Counter, Counter]:
    """Per TCP destination (src, dst, dport): client sockets, those in TIME_WAIT, those
    bound by number (AUTO no), and the auto-bound ones on LOW-parity ports.

    One pass over the client rows counts (src, dst, dport, class), class = TIME_WAIT |
    bound << 1 | LOW parity << 2; the four counts are sums over its few distinct keys,
    not a pass over the rows each."""
    cls = or_(m.tw, or_(m.auto_no.translate(_TIMES2), m.same_par.translate(_TIMES4)))
    by_class = Counter(compress(zip(t.local_addr, t.remote_addr, t.remote_port, cls), m.tcp_client))
    dest_n: Counter[tuple] = Counter()
    dest_tw: Counter[tuple] = Counter()
    dest_bind: Counter[tuple] = Counter()
    dest_same: Counter[tuple] = Counter()
    for (la, ra, rp, c), k in by_class.items():
        key = (la, ra, rp)
        dest_n[key] += k
        if c & 1:
            dest_tw[key] += k
        if c & 2:
            dest_bind[key] += k
        elif c & 4:
            dest_same[key] += k
    return dest_n, dest_tw, dest_bind, dest_same


def analyze(host_facts: HostFacts, socket_table: SocketTable, *, top: int | None = None, process: bool = False,
            masks: RowMasks | None = None) -> PressureResult:
    """Pressure of `socket_table` against the range and reservations in `host_facts`.

    masks: row_masks(host_facts, socket_table) when the caller has them already (the web
    view's forecast uses the same masks), so they are not computed twice."""
    rng: PortRange = host_facts.ephemeral
    usable = usable_ports(rng, host_facts.reserved)
    n_usable = usable.count(1)
    low_par = rng.low & 1

    t = socket_table
    m = masks if masks is not None else row_masks(host_facts, t, usable)
    protos, lports = t.proto, t.local_port
    listen_in_u = {p for p in m.listen_ports if usable[p]}

    # Every count below is a C-level pass (compress / Counter / set) over a column, picked
    # by a byte mask: no Python code runs per socket.
    # Destination keys: (src, dst, dport) for TCP, (proto, src, dst, dport) for UDP/UDP-Lite
    # (3-tuples hash in half the time, and TCP is the bulk). A fresh zip per pass: only the
    # selected rows become tuples.
    keys = m.tcp_keys
    tcp_client, client = m.tcp_client, m.client
    dest_n, dest_tw, dest_bind, dest_same = tcp_dest_counts(t, m)
    udp_keys = m.udp_client_keys()
    dest_n.update(udp_keys)
    n_tw = sum(dest_tw.values())
    explicit = and_(tcp_client, m.auto_no)
    auto_tcp = and_(tcp_client, not_(m.auto_no))
    dest_bind.update(udp_keys)                              # every UDP socket holds its port
    cand_mask = and_(auto_tcp, not_(m.same_par))
    has_cand = bool(cand_mask.count(1))
    # ports -> TCP client sockets: the parity rule needs the counts, the global view only the set
    tcp_port_n: Counter[int] = Counter()
    tcp_ports: Collection[int]
    if has_cand:
        tcp_port_n.update(compress(lports, tcp_client))
        tcp_ports = tcp_port_n.keys()
    else:
        tcp_ports = set(compress(lports, tcp_client))
    g_tcp_sure = set(pick(lports, explicit))
    g_tcp_sure.update(pick(lports, m.tcp_bound_only))  # bound, not connected
    g_udp: dict[int, set] = {}
    for pr in set(compress(protos, m.udp_in_u)):
        g_udp[pr] = set(pick(lports, and_(m.udp_in_u, m.protois_(pr))))
    candidates: list[tuple[int, tuple]] = []
    if has_cand:
        get = gather(rows_of(cand_mask))
        candidates = list(zip(get(lports), zip(get(t.local_addr), get(t.remote_addr), get(t.remote_port))))
    connect_rows = list(compress(range(len(t)), client)) if (process and t.pid is not None) else []

    # bind(0)+connect inference (see module doc)
    same_total = usable[low_par::2].count(1)   # index parity == port parity
    same_cap = same_total - sum(1 for p in g_tcp_sure | listen_in_u if (p & 1) == low_par)
    # only while the destination's LOW-parity half is far from used up: near it, its other-
    # parity sockets may be connect()'s second pass (some same-parity ones may have closed since)
    same_limit = same_cap * PARITY_FAR
    other_total = usable[1 - low_par::2].count(1)
    tcp_held = g_tcp_sure | listen_in_u
    tcp_held.update(tcp_ports)
    saturated = other_total > 0 and len(tcp_held) >= other_total and \
        _count_parity(tcp_held, 1 - low_par, usable) >= other_total
    if saturated:
        # every other-parity port is held: bind(0) has spilled into LOW's parity, so the
        # binders' destinations hold LOW-parity ports too; only a destination that has
        # all of them can be on connect()'s second pass (all but the one its window may
        # skip, with equal-parity ends)
        same_limit = same_cap - window_loss(host_facts, usable, g_tcp_sure | listen_in_u)
    g_tcp_inferred: set[int] = set()
    bind_dests: set = set()
    for lp, key in candidates:
        if tcp_port_n[lp] == 1 and dest_same[key] < same_limit:
            g_tcp_inferred.add(lp)
            bind_dests.add(key)
            dest_bind[key] += 1
    if g_tcp_inferred and saturated:
        # Then a lone socket on a LOW-parity port, to a destination that already binds
        # before connecting, is taken to be bound as well (a program binds all or none).
        for lp, key in compress(zip(lports, keys()), and_(auto_tcp, m.same_par)):
            if tcp_port_n[lp] == 1 and key in bind_dests:
                g_tcp_inferred.add(lp)
                dest_bind[key] += 1
    g_tcp = g_tcp_sure | g_tcp_inferred | listen_in_u

    # global view
    held: set[int] = set(g_tcp)
    held.update(tcp_ports)
    udp_ports: set[int] = set()
    for s_ in g_udp.values():
        udp_ports |= s_
    held |= udp_ports
    n_bind = len((g_tcp_sure | g_tcp_inferred) - listen_in_u)
    n_clients = sum(dest_n.values())
    glob = GlobalUse(
        in_use=len(held), capacity=n_usable,
        utilization=(len(held) / n_usable) if n_usable else 1.0,
        range_size=rng.size, reserved_in_range=host_facts.reserved.count_in(rng),
        listeners=len(listen_in_u), bind_held=n_bind,
        bind_inferred=len(g_tcp_inferred - g_tcp_sure - listen_in_u),
        udp=len(udp_ports), connect=n_clients - sum(dest_bind.values()),
        time_wait=n_tw, sockets=n_clients,
        tcp_exclusive=len(g_tcp), udp_exclusive=len(udp_ports),
    )

    # per destination
    excl = {PROTO_TCP: len(g_tcp)}
    for pr, s in g_udp.items():
        excl[pr] = len(s)
    loss = window_loss(host_facts, usable, g_tcp)
    dests = []
    for key, n in dest_n.items():
        pr, la, ra, rp = key if len(key) == 4 else (PROTO_TCP, *key)
        own = dest_bind.get(key, 0)
        cap = max(0, n_usable - excl.get(pr, 0) + own - (loss if pr == PROTO_TCP else 0))
        dests.append(Destination(
            proto=PROTO_NAMES.get(pr, str(pr)), src=format_addr(la), dst=format_addr(ra), dport=rp,
            in_use=n, time_wait=dest_tw.get(key, 0), capacity=cap,
            # the kernel may hand out the port the window can skip: never above 1.0
            utilization=min(1.0, n / cap) if cap else 1.0, bind_held=own,
        ))
    dests.sort(key=lambda d: (-d.utilization, -d.in_use, d.proto, d.dst, d.dport, d.src))

    procs: tuple[ProcessUse, ...] = ()
    if connect_rows and t.pid is not None:    # connect_rows is only filled with pids
        pids, cmds = t.pid, t.command
        by_pid = Counter(pids[i] for i in connect_rows)
        ports_of: dict = {}
        for i in connect_rows:
            ports_of.setdefault(pids[i], set()).add(lports[i])
        cmd_of: dict = {}
        if cmds is not None:
            for i in connect_rows:
                cmd_of.setdefault(pids[i], cmds[i])
        procs = tuple(ProcessUse(pid=p if p >= 0 else None, command=cmd_of.get(p) if p >= 0 else None,
                                 in_use=c, ports=len(ports_of[p])) for p, c in by_pid.most_common())

    result = PressureResult(
        os=host_facts.os, range=rng, reserved=host_facts.reserved,
        unprivileged_port_start=host_facts.unprivileged_port_start,
        tcp_tw_reuse=host_facts.tcp_tw_reuse, time_wait_seconds=host_facts.time_wait_seconds,
        global_=glob, destinations=tuple(dests), destinations_total=len(dests),
        others={"destinations": 0, "in_use": 0}, processes=procs,
        backend=getattr(t, "backend", None), netns=host_facts.netns,
        listener_ports=tuple(sorted(listen_in_u)),
        connect_window_loss=loss, range_window_loss=window_loss(host_facts, usable),
    )
    result = result.replace(findings=tuple(evaluate(result, host_facts, process=process)))
    return truncate(result, top)


SNAPSHOT_PROTOS = ("tcp", "udp", "udplite")   # SCTP has its own port space: not in the model
# Every state, plus BOUND_INACTIVE (13): sockets bound but neither connected nor listening,
# e.g. left over after a failed connect(), hold their port for every destination. sock_diag
# returns them only when asked (Linux 6.8+; older kernels ignore the bit).
READ_STATES = set(range(1, 14))
READ_STATE_NAMES = tuple(STATE_CODES)       # the same, by name, for sockets.snapshot()


def snapshot_in_range(host_facts: HostFacts, netns: str | None = None, *, owners: bool = False,
                      census: bool = False, inodes: bool = True) -> SocketTable:
    """The socket table pressure needs: sockets with a local port in the range, with the
    kernel's AUTO bit. On Linux this reads sock_diag directly and skips the facade's
    ephemeral classification, which analyze() does not use (it is a third of the time at
    100k sockets); anything else (owners, netlink refused, other OSes) goes through
    sockets.snapshot(). census: skip the second TCP walk when the kernel's socket count
    shows it would return nothing (netlink.read_table; --all-netns asks for it).
    inodes=False: rows may carry inode 0 (netlink.read_table), which analyze() never reads."""
    if not owners and sys.platform.startswith("linux"):
        try:
            with _netns.entered(netns):
                return netlink.read_table(SNAPSHOT_PROTOS, (4, 6), READ_STATES, host_facts.ephemeral,
                                          auto=True, model_auto=True, census=census, inodes=inodes)
        except netlink.NetlinkRefused:
            pass
    return snapshot(protos=SNAPSHOT_PROTOS, sport=host_facts.ephemeral, owners=owners,
                    netns=netns, facts=host_facts, states=READ_STATE_NAMES)


read_sockets = snapshot_in_range     # the name earlier releases (and docs/pressure.md) used


def truncate(result: PressureResult, top: int | None) -> PressureResult:
    """Keep the `top` worst destinations; the rest are summed in `others`."""
    if top is None or top >= len(result.destinations):
        return result
    keep, rest = result.destinations[:max(0, top)], result.destinations[max(0, top):]
    others = {"destinations": result.others["destinations"] + len(rest),
              "in_use": result.others["in_use"] + sum(d.in_use for d in rest)}
    return result.replace(destinations=keep, others=others)
