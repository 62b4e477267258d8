"""Forecast: sample the socket table over time and predict each destination's steady state.

Rate: new 4-tuples per second between consecutive samples. A client that closes first keeps
its 4-tuple in TIME_WAIT for 60 s, so every connection opened during an interval is still in
the next sample; connections the *server* closed first (no client TIME_WAIT) and shorter than
the interval are missed, so use an interval well under their lifetime.

Steady state (Little's law): a destination opening r connections/s holds
    open_now + r * hold
ports, where hold is the TIME_WAIT length (60 s on Linux, hard-coded) unless tcp_tw_reuse
lets connect() take over TIME_WAIT ports (1 = always, 2 = loopback only), in which case a
port is blocked for only tcp_tw_reuse_delay (1 s by default). The TIME_WAIT sockets the table
will show at the plateau are r * 60 either way. The sustainable rate is the rate at which
that use equals the capacity: (capacity - open_now) / hold, about 28232/60 = 470/s at the
default range.
"""
from __future__ import annotations

import sys
import time
from array import array
from collections import Counter, namedtuple
from functools import lru_cache
from itertools import compress, repeat

from .findings import Finding, destination_label
from .pressure import Destination, PressureResult, RowMasks, analyze, row_masks, truncate
from .remedies import range_command, sysctl_command, wider_range
from .sockets.table import PROTO_CODES, SocketTable

TYPE_CHECKING = False     # not typing's: `pressure` imports this module and starts without typing
if TYPE_CHECKING:
    from typing import Callable, NamedTuple

    from .host import HostFacts


# A client socket's key is one 64-bit integer: its local port, remote port and protocol
# (40 bits) and the number of its (laddr, raddr) pair in a PairIds (24 bits), put together
# by strided copies in C. Integers hash to themselves and compare at once, and the GC does
# not track them: building and diffing two reads' keys at 100k sockets costs a fraction of
# the tuples they replace (docs/web.md, "Cost"). The shifts read the fields back in either
# byte order: bytes 0-1 lport, 2-3 rport, 4 proto, 5-7 the pair id, native order.
if sys.byteorder == "little":
    _LPORT_SHIFT, _RPORT_SHIFT, _PROTO_SHIFT, _ID_SHIFT, _ID_BYTES = 0, 16, 32, 40, (0, 1, 2)
else:
    _LPORT_SHIFT, _RPORT_SHIFT, _PROTO_SHIFT, _ID_SHIFT, _ID_BYTES = 48, 32, 24, 0, (1, 2, 3)
MAX_PAIRS = 1 << 24                   # pair ids a key can hold
_DEST_MASK = ((1 << 64) - 1) ^ (0xFFFF << _LPORT_SHIFT)    # a key without its local port


class PairIds(dict):
    """(laddr, raddr) -> a number, given in order of first sight. The keys of two reads
    compare only when they number pairs alike, so a forecast's reads share one PairIds
    (the web view passes the previous read's on)."""

    def __init__(self) -> None:
        super().__init__()
        self.pairs: list[tuple[bytes, bytes]] = []      # number -> pair

    def __missing__(self, pair: tuple[bytes, bytes]) -> int:
        n = self[pair] = len(self.pairs)
        self.pairs.append(pair)
        return n


if TYPE_CHECKING:
    class ClientKeys(NamedTuple):
        """One read's client sockets as keys (see client_keys()) and the pair numbering they use."""

        keys: set[int]
        pairs: PairIds
else:
    # collections' namedtuple: typing.NamedTuple would import typing on `pressure`'s start-up
    ClientKeys = namedtuple("ClientKeys", ("keys", "pairs"))
    ClientKeys.__doc__ = "One read's client sockets as keys (see client_keys()) and the pair numbering they use."


def _pack_rows(t: SocketTable, pairs: PairIds, result: PressureResult | None, client: bytes) -> array:
    # byte by byte from bytes objects: strided slices of bytes are several times faster
    # than those of memoryviews
    raw = bytearray(8 * len(t))
    lp, rp = _column(t.local_port, "H").tobytes(), _column(t.remote_port, "H").tobytes()
    lo = _LPORT_SHIFT // 8 if sys.byteorder == "little" else 6 - _LPORT_SHIFT // 8
    ro = _RPORT_SHIFT // 8 if sys.byteorder == "little" else 6 - _RPORT_SHIFT // 8
    raw[lo::8], raw[lo + 1::8] = lp[0::2], lp[1::2]
    raw[ro::8], raw[ro + 1::8] = rp[0::2], rp[1::2]
    raw[4::8] = _column(t.proto, "B").tobytes()
    ib = _pair_numbers(t, pairs, result, client)
    if len(pairs.pairs) > MAX_PAIRS:
        raise OverflowError("more (laddr, raddr) pairs than a key holds")
    for at, b in zip((5, 6, 7), _ID_BYTES):
        raw[at::8] = ib[b::4]
    out = array("Q")
    out.frombytes(raw)
    return out


def _pair_numbers(t: SocketTable, pairs: PairIds, result: PressureResult | None, client: bytes) -> bytes:
    """Each row's pair number (native 32-bit words); right for the client rows only. Only
    the pairs of client rows are numbered: a server's accepted sockets, with a pair per
    peer, would otherwise fill `pairs` at every read."""
    if result is not None and not result.others["destinations"]:
        # the analysis lists every destination of the client rows: no pass over the rows
        used = {(_packed(a), _packed(b)) for a, b in {(d.src, d.dst) for d in result.destinations}}
    else:
        used = set(compress(zip(t.local_addr, t.remote_addr), client))
    if len(used) <= 1:
        # one pair (or no client socket): no lookup at all
        return array("I", [pairs[next(iter(used))] if used else 0]).tobytes() * len(t)
    srcs, dsts = {a for a, _ in used}, {b for _, b in used}
    if len(srcs) == 1 or len(dsts) == 1:
        # one local (or one remote) address: the other column alone tells the pair, and a
        # lookup of one interned bytes object costs half that of a tuple
        first = len(srcs) == 1
        by = {(b if first else a): pairs[(a, b)] for a, b in used}
        return array("I", map(by.get, t.remote_addr if first else t.local_addr, repeat(0))).tobytes()
    num = {p: pairs[p] for p in used}
    return array("I", map(num.get, zip(t.local_addr, t.remote_addr), repeat(0))).tobytes()


def _column(col, code: str) -> array:
    return col if isinstance(col, array) and col.typecode == code else array(code, col)


def client_keys(host_facts: HostFacts, table: SocketTable, masks: RowMasks | None = None,
                pairs: PairIds | None = None, result: PressureResult | None = None) -> ClientKeys:
    """One key per client socket analyze() counts (the same row masks, so both agree on what
    a client socket is; `masks` when the caller has them): an integer packing lport, rport,
    proto and the number of (laddr, raddr) in `pairs` (new pairs are numbered; a new
    PairIds when None). Keys of reads that share `pairs` compare; dest_key() gives a key's
    destination. `result`, analyze() of this same table when the caller has it, names the
    pairs the client sockets use (else a pass over the rows finds them); with one pair, or
    one local or one remote address, no per-row lookup of the pair is needed."""
    m = masks if masks is not None else row_masks(host_facts, table)
    pairs = pairs if pairs is not None else PairIds()
    try:
        packed = _pack_rows(table, pairs, result, m.client)
    except OverflowError:             # numbered too many pairs over time: start afresh
        pairs = PairIds()
        packed = _pack_rows(table, pairs, result, m.client)
    return ClientKeys(set(compress(packed, m.client)), pairs)


def dest_key(key: int, pairs: PairIds) -> tuple:
    """(proto code, laddr, raddr, rport) of a client_keys() key: its destination, as a
    Destination's raw key spells it."""
    la, ra = pairs.pairs[(key >> _ID_SHIFT) & 0xFFFFFF]
    return ((key >> _PROTO_SHIFT) & 0xFF, la, ra, (key >> _RPORT_SHIFT) & 0xFFFF)


def local_port(key: int) -> int:
    """The local port of a client_keys() key."""
    return (key >> _LPORT_SHIFT) & 0xFFFF


def renumbered(ck: ClientKeys, pairs: PairIds) -> ClientKeys:
    """`ck`'s keys as `pairs` numbers their pairs (new ones are numbered), to compare them
    with keys made with `pairs`."""
    if ck.pairs is pairs:
        return ck
    old = ck.pairs.pairs
    used = {(k >> _ID_SHIFT) & 0xFFFFFF for k in ck.keys}
    ids = {i: pairs[old[i]] for i in sorted(used)}
    clear = ((1 << 64) - 1) ^ (0xFFFFFF << _ID_SHIFT)
    return ClientKeys({(k & clear) | (ids[(k >> _ID_SHIFT) & 0xFFFFFF] << _ID_SHIFT) for k in ck.keys}, pairs)


def compacted(ck: ClientKeys, slack: int = 4096) -> ClientKeys:
    """`ck` numbered afresh with only the pairs its keys use, when the numbering has grown
    well beyond them (pairs come and go: a long-lived web view would otherwise keep every
    pair it ever saw); else `ck` itself."""
    if len(ck.pairs.pairs) <= slack:
        return ck
    used = {(k >> _ID_SHIFT) & 0xFFFFFF for k in ck.keys}
    if len(ck.pairs.pairs) <= 2 * len(used) + slack:
        return ck
    return renumbered(ck, PairIds())

def _reuse_applies(tw_reuse: int | None, src: str, dst: str) -> bool:
    if tw_reuse == 1:
        return True
    if tw_reuse == 2:
        # as `lo(src) or lo(dst) or mapped(src) or mapped(dst)`, where a malformed address
        # met on the way makes it False
        s = _loopback(src)
        if s is None:
            return False
        if s[0]:
            return True
        d = _loopback(dst)
        return d is not None and (d[0] or s[1] or d[1])
    return False


@lru_cache(maxsize=4096)
def _loopback(a: str) -> tuple[bool, bool] | None:
    # (is loopback, is v4-mapped loopback), None when not an address; cached: few distinct
    # addresses over many destinations
    from ipaddress import ip_address  # only a forecast under tcp_tw_reuse=2 needs it (as _packed)
    try:
        ip = ip_address(a)
    except ValueError:
        return None
    m = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback, bool(m and m.is_loopback)


def forecast(host_facts: HostFacts, samples: list[tuple[float, SocketTable | None]], *, top: int | None = None,
             process: bool = False, interval: float | None = None, base: PressureResult | None = None,
             keys: list[ClientKeys | None] | None = None) -> PressureResult:
    """Analyse the last of `samples` [(monotonic_time, SocketTable), ...] (two or more) and add
    rate, steady state, sustainable rate and time to exhaustion to each destination.

    A caller that already has them passes `base`, analyze() of the last table (top=None, the
    same `process`), and `keys`, client_keys() of some tables (None where not computed; a
    sample's table may then be None): the exporter's web view keeps only the previous
    read's keys and analyses each table once."""
    if len(samples) < 2:
        raise ValueError("a forecast needs at least two samples")
    (t0, _), (t1, last) = samples[0], samples[-1]
    elapsed = max(t1 - t0, 1e-9)
    known = list(keys) if keys is not None else [None] * len(samples)
    # the keys computed here number pairs as the latest given ones do (the web view's two
    # reads share one PairIds); keys numbered otherwise are renumbered before comparing
    pairs = next((k.pairs for k in reversed(known) if k is not None), None) or PairIds()

    def keys_of(i: int) -> ClientKeys:
        got = known[i]
        if got is None:
            tab = samples[i][1]
            if tab is None:
                raise ValueError("a sample without a table needs its client keys")
            got = client_keys(host_facts, tab, pairs=pairs)
        return got

    new: Counter = Counter()               # raw destination key -> new client sockets
    first = prev = keys_of(0)
    for i in range(1, len(samples)):
        cur = keys_of(i)
        pairs = cur.pairs
        if prev.pairs is not pairs:
            prev = renumbered(prev, pairs)
        for k, n in Counter(map(_DEST_MASK.__and__, cur.keys - prev.keys)).items():
            new[dest_key(k, pairs)] += n
        prev = cur
    first_counts: list[Counter] = []       # per destination in the first sample, only when needed

    def first_n(key: tuple) -> int:
        if not first_counts:
            by_dest = Counter(map(_DEST_MASK.__and__, first.keys))
            first_counts.append(Counter({dest_key(k, first.pairs): n for k, n in by_dest.items()}))
        return first_counts[0].get(key, 0)

    if base is None:
        if last is None:
            raise ValueError("a last sample without a table needs its analysis (base)")
        base = analyze(host_facts, last, top=None, process=process)
    tw_len = base.time_wait_seconds
    delay_s = (host_facts.tcp_tw_reuse_delay_ms or 1000) / 1000.0
    rows = []
    for j, d in enumerate(base.destinations):
        key = _raw_key(d)
        rate = new.get(key, 0) / elapsed
        reuse = d.proto == "tcp" and _reuse_applies(host_facts.tcp_tw_reuse, d.src, d.dst)
        # UDP sockets have no TIME_WAIT: a port is held only while the socket is open
        hold = (delay_s if reuse else tw_len) if d.proto == "tcp" else 0.0
        open_now = d.in_use - d.time_wait
        tw_ss = round(rate * tw_len) if d.proto == "tcp" else 0
        blocked_ss = open_now + rate * hold
        sustainable = (max(0, d.capacity - open_now) / hold) if hold else None
        eta = None
        if d.in_use >= d.capacity and d.capacity and rate > 0:
            eta = 0.0
        elif hold and blocked_ss >= d.capacity and rate > 0:
            growth = (d.in_use - first_n(key)) / elapsed
            eta = (d.capacity - d.in_use) / (growth if growth > 0 else rate)
        rows.append(((eta is None, eta or 0, -d.utilization, -d.in_use, d.proto, d.dst, d.dport, d.src),
                     j, d, rate, sustainable, eta, open_now + tw_ss, tw_ss))
    made: dict[int, Destination] = {}

    def forecast_of(r: tuple) -> Destination:
        _, j, d, rate, sustainable, eta, ss_in_use, tw_ss = r
        got = made.get(j)
        if got is None:
            got = made[j] = d.replace(rate_per_s=rate, sustainable_rate_per_s=sustainable,
                                      seconds_to_exhaustion=eta, steady_state_in_use=ss_in_use,
                                      steady_state_time_wait=tw_ss)
        return got

    # replace() only for the destinations kept (top) and those heading for
    # exhaustion (the finding): truncate() only sums the others' in_use (it was 5 ms of the
    # web view's forecast step for 500 destinations)
    shown = len(rows) if top is None else max(0, top)
    ranked = sorted(rows, key=lambda r: r[0])
    dests = [forecast_of(r) if i < shown else r[2] for i, r in enumerate(ranked)]
    extra = [forecast_of(r) for r in rows if r[5] is not None]
    findings = list(base.findings)
    if extra:
        findings.insert(0, _exhaustion_finding(extra, host_facts))
    meta = {"samples": len(samples), "interval_s": interval, "elapsed_s": round(elapsed, 3),
            "new_connections": sum(new.values()),
            "rate_per_s": round(sum(new.values()) / elapsed, 3),
            "time_wait_seconds": tw_len, "tcp_tw_reuse": host_facts.tcp_tw_reuse}
    res = base.replace(destinations=tuple(dests), findings=tuple(findings), forecast=meta)
    return truncate(res, top)


def _raw_key(d) -> tuple:
    return (PROTO_CODES.get(d.proto, d.proto), _packed(d.src), _packed(d.dst), d.dport)


@lru_cache(maxsize=4096)
def _packed(addr: str) -> bytes:
    # few distinct addresses over many destinations: ip_address() once each (it was 20 ms
    # of the web view's forecast step for 500 destinations); ipaddress only here: plain
    # `pressure` starts without it
    from ipaddress import ip_address
    return ip_address(addr).packed


def _exhaustion_finding(ds, facts) -> Finding:
    ds = sorted(ds, key=lambda d: d.seconds_to_exhaustion)
    d = ds[0]
    msg = (f"{len(ds)} destination(s) heading for exhaustion: {destination_label(d)} opens {d.rate_per_s:.1f}/s, "
           f"above the sustainable {d.sustainable_rate_per_s:.1f}/s; its {d.capacity} ports run out in "
           f"about {d.seconds_to_exhaustion:.0f} s")
    remedy = "reuse connections (keep-alive / a pool) so the rate of new connections drops"
    if facts.os == "linux" and facts.tcp_tw_reuse != 1:
        remedy += "; " + sysctl_command(facts, "net.ipv4.tcp_tw_reuse=1")
    remedy += "; or widen the range: " + range_command(facts, *wider_range(facts))
    return Finding(id="destination-forecast-exhaustion", severity="critical", message=msg, remedy=remedy,
                   evidence={"destinations": [x.to_json(forecast=True) for x in ds[:10]], "count": len(ds)})


def sample(take: Callable[[], object], interval: float, count: int, *,
           sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic) -> list:
    """Take `count` tables `interval` seconds apart: [(time, table), ...]; each sample is
    stamped at the middle of its snapshot."""
    if count < 2:
        raise ValueError("need at least two samples")
    out = []
    start = clock()
    for k in range(count):
        due = start + k * interval
        now = clock()
        if due > now:
            sleep(due - now)
        a = clock()
        tab = take()
        out.append(((a + clock()) / 2, tab))
    return out
