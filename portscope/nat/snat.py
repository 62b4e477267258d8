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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from .table import IPS_SRC_NAT, PROTO_NAMES, TCP_TIME_WAIT, ConntrackTable, format_addr

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
