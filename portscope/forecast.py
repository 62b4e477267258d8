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
from collections import Counter
from dataclasses import replace
from functools import lru_cache
from ipaddress import ip_address
from itertools import compress
from typing import TYPE_CHECKING, Callable

from .findings import Finding, destination_label
from .pressure import PressureResult, RowMasks, analyze, row_masks, truncate
from .remedies import range_command, sysctl_command, wider_range
from .sockets.table import PROTO_CODES, SocketTable

if TYPE_CHECKING:
    from .host import HostFacts


# a client socket's key: (laddr, raddr, ports), ports = lport, rport and proto packed into
# one 64-bit integer by strided copies in C. A 3-tuple of two interned addresses and an int
# hashes and compares faster than the 5-tuple it replaces (about 20 vs 26 ms for 46k
# client sockets), the larger part of the web view's forecast step (docs/web.md, "Cost").
# The shifts read the fields back in either byte order.
_RPORT_SHIFT, _PROTO_SHIFT = (16, 32) if sys.byteorder == "little" else (32, 24)


def _packed_ports(t: SocketTable) -> array:
    raw = bytearray(8 * len(t.local_port))
    words = memoryview(raw).cast("H")
    words[0::4] = array("H", t.local_port)
    words[1::4] = array("H", t.remote_port)
    words.release()
    raw[4::8] = bytes(t.proto)
    out = array("Q")
    out.frombytes(raw)
    return out


def client_tuples(host_facts: HostFacts, table: SocketTable, masks: RowMasks | None = None) -> set[tuple]:
    """One key per client socket analyze() counts (the same row masks, so both agree on what
    a client socket is; `masks` when the caller has them): (laddr, raddr, packed lport, rport
    and proto). dest_key() gives a key's destination."""
    m = masks if masks is not None else row_masks(host_facts, table)
    t = table
    return set(compress(zip(t.local_addr, t.remote_addr, _packed_ports(t)), m.client))


def dest_key(k: tuple) -> tuple:
    """(proto code, laddr, raddr, rport) of a client_tuples() key: its destination, as a
    Destination's raw key spells it."""
    p = k[2]
    return ((p >> _PROTO_SHIFT) & 0xFF, k[0], k[1], (p >> _RPORT_SHIFT) & 0xFFFF)


def _reuse_applies(tw_reuse: int | None, src: str, dst: str) -> bool:
    if tw_reuse == 1:
        return True
    if tw_reuse == 2:
        try:
            return ip_address(src).is_loopback or ip_address(dst).is_loopback or \
                _mapped_loopback(src) or _mapped_loopback(dst)
        except ValueError:
            return False
    return False


def _mapped_loopback(a: str) -> bool:
    ip = ip_address(a)
    m = getattr(ip, "ipv4_mapped", None)
    return bool(m and m.is_loopback)


def forecast(host_facts: HostFacts, samples: list[tuple[float, SocketTable | None]], *, top: int | None = None,
             process: bool = False, interval: float | None = None, base: PressureResult | None = None,
             tuples: list[set[tuple] | None] | None = None) -> PressureResult:
    """Analyse the last of `samples` [(monotonic_time, SocketTable), ...] (two or more) and add
    rate, steady state, sustainable rate and time to exhaustion to each destination.

    A caller that already has them passes `base`, analyze() of the last table (top=None, the
    same `process`), and `tuples`, client_tuples() of some tables (None where not computed;
    a sample's table may then be None): the exporter's web view keeps only the previous
    read's tuples and analyses each table once."""
    if len(samples) < 2:
        raise ValueError("a forecast needs at least two samples")
    (t0, _), (t1, last) = samples[0], samples[-1]
    elapsed = max(t1 - t0, 1e-9)
    known = list(tuples) if tuples is not None else [None] * len(samples)

    def tuples_of(i: int) -> set[tuple]:
        got = known[i]
        if got is None:
            tab = samples[i][1]
            if tab is None:
                raise ValueError("a sample without a table needs its client tuples")
            got = client_tuples(host_facts, tab)
        return got

    new: Counter = Counter()
    prev = first = tuples_of(0)
    first_counts: list[Counter] = []       # per destination in the first sample, only when needed

    def first_n(key: tuple) -> int:
        if not first_counts:
            first_counts.append(Counter(map(dest_key, first)))
        return first_counts[0].get(key, 0)

    for i in range(1, len(samples)):
        cur = tuples_of(i)
        new.update(map(dest_key, cur - prev))
        prev = cur

    if base is None:
        if last is None:
            raise ValueError("a last sample without a table needs its analysis (base)")
        base = analyze(host_facts, last, top=None, process=process)
    tw_len = base.time_wait_seconds
    delay_s = (host_facts.tcp_tw_reuse_delay_ms or 1000) / 1000.0
    dests, extra = [], []
    for d in base.destinations:
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
        dests.append(replace(d, rate_per_s=rate, sustainable_rate_per_s=sustainable,
                             seconds_to_exhaustion=eta, steady_state_in_use=open_now + tw_ss,
                             steady_state_time_wait=tw_ss))
        if eta is not None:
            extra.append(dests[-1])
    dests.sort(key=lambda d: (d.seconds_to_exhaustion is None, d.seconds_to_exhaustion or 0,
                              -d.utilization, -d.in_use, d.proto, d.dst, d.dport, d.src))
    findings = list(base.findings)
    if extra:
        findings.insert(0, _exhaustion_finding(extra, host_facts))
    meta = {"samples": len(samples), "interval_s": interval, "elapsed_s": round(elapsed, 3),
            "new_connections": sum(new.values()),
            "rate_per_s": round(sum(new.values()) / elapsed, 3),
            "time_wait_seconds": tw_len, "tcp_tw_reuse": host_facts.tcp_tw_reuse}
    res = replace(base, destinations=tuple(dests), findings=tuple(findings), forecast=meta)
    return truncate(res, top)


def _raw_key(d) -> tuple:
    return (PROTO_CODES.get(d.proto, d.proto), _packed(d.src), _packed(d.dst), d.dport)


@lru_cache(maxsize=4096)
def _packed(addr: str) -> bytes:
    # few distinct addresses over many destinations: ip_address() once each (it was 20 ms
    # of the web view's forecast step for 500 destinations)
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
