"""Node egress against a cloud NAT's per-destination budget.

A cloud NAT translates every flow of the node (all namespaces, all source addresses) to
its own few addresses, so what runs out is the NAT's ports toward ONE destination
(proto, destination IP, destination port), not the node's. We count, across every
network namespace, the outgoing flows per destination: live connected sockets (TCP in
any connected state, connected UDP) plus TCP flows closed less than the NAT's hold
time ago (a NAT keeps the translation for a while after the FIN; we see such flows as
TIME_WAIT sockets, whose remaining lifetime sock_diag reports), and compare them with
the budget. Inbound (accepted) TCP sockets, loopback and link-local destinations, and by
default private (RFC 1918 / ULA / CGNAT) destinations, which stay inside the VPC, are
not NAT traffic and are left out.

Each flow is attributed to the container / pod of the cgroup that opened its socket
(INET_DIAG_CGROUP_ID; right even where host-network pods share a namespace), else to its
namespace's container / pod.
"""
from __future__ import annotations

import ipaddress
import struct
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from .allnetns import Walk, each
from .containers import NONE, from_path
from .errors import BadInput
from .findings import Finding
from .netns import entered
from .sockets import netlink
from .sockets.cgroups import INET_DIAG_CGROUP_ID
from .sockets.cgroups import paths as cgroup_paths

# --- budgets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """A cloud NAT's documented per-destination budget, hold time, counter and remedy."""
    name: str
    per_address: int              # flows to one destination per NAT address (or per VM)
    per_vm: bool                  # True: the budget is the VM's, more NAT addresses do not add
    max_addresses: int | None
    hold_seconds: float | None    # how long a closed TCP flow keeps its NAT port (None: not documented)
    source: str
    counter: str                  # where the provider shows the failure
    remedy: str


PRESETS = {
    "aws-nat-gateway": Preset(
        "aws-nat-gateway", 55_000, False, 8, None,
        "https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-basics.html "
        "(55,000 simultaneous connections to each unique destination per NAT gateway IP address; "
        "up to 8 IP addresses)",
        "CloudWatch AWS/NATGateway ErrorPortAllocation",
        "associate secondary IPv4 addresses with the NAT gateway (each adds 55,000 per destination, up "
        "to 8), or split the traffic over more NAT gateways / subnets; reach AWS services through VPC "
        "endpoints (PrivateLink / gateway endpoints) instead of the NAT"),
    "azure-nat-gateway": Preset(
        "azure-nat-gateway", 50_000, False, 16, None,
        "https://learn.microsoft.com/azure/nat-gateway/nat-gateway-resource (64,512 SNAT ports per "
        "public IP; 50,000 concurrent connections per public IP to the same destination endpoint; "
        "up to 16 public IPs)",
        "Azure Monitor NAT gateway metric 'SNAT Connection Count' (state Failed)",
        "add public IP addresses or a public IP prefix to the NAT gateway (up to 16 addresses); reach "
        "Azure services through Private Link / private endpoints instead of the NAT"),
    "azure-lb": Preset(
        "azure-lb", 1_024, True, None, None,
        "https://learn.microsoft.com/azure/load-balancer/outbound-rules (allocatedOutboundPorts per "
        "VM; 0 = by backend pool size, 1,024 for pools of 1-50 VMs, fewer for larger pools)",
        "Azure Monitor load balancer metric 'SNAT Connection Count' / 'Used SNAT Ports'",
        "raise allocatedOutboundPorts in the load balancer's outbound rule (and add frontend IPs to "
        "afford it), or move egress to an Azure NAT Gateway; use Private Link for Azure services"),
    "gcp-cloud-nat": Preset(
        "gcp-cloud-nat", 64, True, None, 120.0,
        "https://cloud.google.com/nat/docs/ports-and-addresses (minPortsPerVm, default 64: ports a VM "
        "can use to one destination IP:port:protocol; 64,512 ports per NAT IP; "
        "tcpTimeWaitTimeoutSec default 120 s)",
        "Cloud NAT log / metric nat_allocation_failed, dropped_sent_packets_count (OUT_OF_RESOURCES)",
        "raise minPortsPerVm on the Cloud NAT gateway (gcloud compute routers nats update NAT "
        "--router=ROUTER --min-ports-per-vm=N), or enable dynamic port allocation with "
        "--max-ports-per-vm; lower --tcp-time-wait-timeout; use Private Service Connect / "
        "Private Google Access for Google APIs"),
}
DEFAULT_HOLD = 60.0          # without a documented hold: the closed flows the node itself still remembers
TIME_WAIT_S = 60.0
PRIVATE = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"))
NEVER_NAT = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10", "0.0.0.0/32", "::/128"))


@dataclass(frozen=True)
class Budget:
    """The per-destination budget a run judges flows against, and where it comes from."""
    per_destination: int
    nat_addresses: int
    source: str
    cloud: str | None
    hold_seconds: float

    def to_json(self) -> dict:
        """The JSON document, as `pressure --egress --json` prints it."""
        return {"per_destination": self.per_destination, "nat_addresses": self.nat_addresses,
                "source": self.source, "cloud": self.cloud, "hold_seconds": self.hold_seconds}


def budget(nat_budget: int | None = None, cloud: str | None = None, nat_addresses: int | None = None,
           hold: float | None = None) -> Budget:
    """The per-destination budget from --nat-budget N or a --cloud preset."""
    if nat_budget is None and cloud is None:
        raise BadInput("--egress needs a budget: --nat-budget N or --cloud "
                       + "|".join(PRESETS))
    if nat_addresses is not None and nat_addresses < 1:
        raise BadInput(f"--nat-addresses must be >= 1, got {nat_addresses}")
    if hold is not None and not 0 <= hold <= 86400:
        raise BadInput(f"--nat-hold must be in 0..86400 seconds, got {hold:g}")
    if nat_budget is not None and nat_budget < 1:
        raise BadInput(f"--nat-budget must be >= 1, got {nat_budget}")
    n = nat_addresses or 1
    if cloud is None:
        assert nat_budget is not None
        return Budget(nat_budget * n, n, f"--nat-budget {nat_budget} per address x {n}", None,
                      DEFAULT_HOLD if hold is None else hold)
    p = PRESETS.get(cloud)
    if p is None:
        raise BadInput(f"unknown --cloud {cloud!r} (known: {', '.join(PRESETS)})")
    if p.max_addresses and n > p.max_addresses:
        raise BadInput(f"{cloud} takes at most {p.max_addresses} NAT addresses, got {n}")
    per = nat_budget if nat_budget is not None else p.per_address
    total = per if p.per_vm else per * n
    h = hold if hold is not None else (p.hold_seconds if p.hold_seconds is not None else DEFAULT_HOLD)
    how = (f"{per} per VM" if p.per_vm else f"{per} per NAT address x {n}")
    return Budget(total, n, f"{cloud}: {how}; {p.source}", cloud, h)


# --- reading flows -----------------------------------------------------------------------

# states of a connected TCP socket (no LISTEN, CLOSE, SYN_RECV, NEW_SYN_RECV)
_TCP_STATES = sum(1 << s for s in (1, 2, 4, 5, 6, 8, 9, 11))
_TIME_WAIT = 6


@dataclass
class NsFlows:
    """One namespace's outgoing flows: (proto, dst, dport) -> count, split by cgroup id."""
    live: Counter = field(default_factory=Counter)               # (proto, dst, dport) -> n
    closed: Counter = field(default_factory=Counter)             # ... closed, still held by the NAT
    by_cgroup: dict = field(default_factory=lambda: defaultdict(Counter))   # key -> cgroup id -> n
    keys: set = field(default_factory=set)                       # 5-tuples of flows, TIME_WAIT too (rates)


def _nat_bound(addr: bytes, include_private: bool, cache: dict) -> str | None:
    """The destination's text if its traffic would go through a NAT, else None."""
    hit = cache.get(addr)
    if hit is not None:
        return hit or None
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    ok = not any(ip in n for n in NEVER_NAT) and (include_private or not any(ip in n for n in PRIVATE))
    cache[addr] = str(ip) if ok else ""
    return cache[addr] or None


def read_flows(hold: float, include_private: bool = False) -> NsFlows:
    """Outgoing flows of the calling thread's namespace (sock_diag, every family)."""
    out = NsFlows()
    cache: dict = {}
    sock = netlink.open_socket()
    buf = bytearray(netlink.RECV_BYTES)
    seq = 0
    try:
        listen: set = set()
        for fam in (4, 6):
            seq += 1
            for rec in _dump(sock, fam, 6, 1 << 10, seq, buf):
                listen.add(rec[3])
        for proto, code, states in (("tcp", 6, _TCP_STATES), ("udp", 17, 1 << 1)):
            for fam in (4, 6):
                seq += 1
                try:
                    recs = list(_dump(sock, fam, code, states, seq, buf))
                except netlink.ProtocolMissing:
                    continue
                for state, src, dst, sport, dport, expires, cg in recs:
                    if proto == "tcp" and sport in listen:
                        continue                  # accepted: the peer opened this flow
                    d = _nat_bound(dst, include_private, cache)
                    if d is None:
                        continue
                    key = (proto, d, dport)
                    out.keys.add((proto, src, sport, d, dport))
                    if state == _TIME_WAIT:
                        closed_ago = TIME_WAIT_S - expires / 1000.0
                        if closed_ago < hold:
                            out.closed[key] += 1
                        continue
                    out.live[key] += 1
                    if cg is not None:
                        out.by_cgroup[key][cg] += 1
    finally:
        sock.close()
    return out


def _dump(sock, family: int, proto: int, states: int, seq: int, buf: bytearray):
    """(state, src, dst, sport, dport, expires ms, cgroup id | None) per socket."""
    w = 4 if family == 4 else 16
    for off, length in netlink.records(sock, family, proto, states, seq, buf):
        state = buf[off + 17]
        sport, dport = struct.unpack_from("!HH", buf, off + 20)
        expires = struct.unpack_from("=I", buf, off + 68)[0]
        cg = None
        for atype, at, alen in netlink.attributes(buf, off, length):
            if atype == INET_DIAG_CGROUP_ID and alen >= 8:
                cg = struct.unpack_from("=Q", buf, at)[0]
        yield (state, bytes(buf[off + 24:off + 24 + w]), bytes(buf[off + 40:off + 40 + w]),
               sport, dport, expires, cg)


# --- the analysis ------------------------------------------------------------------------

TOP_SOURCES = 5
WARN, CRIT = 0.8, 0.95


@dataclass
class Source:
    """One contributor of flows to a destination: its namespace, container and pod."""
    netns: str | None
    container: dict | None
    pod: dict | None
    flows: int

    def to_json(self) -> dict:
        """The JSON document, as `pressure --egress --json` prints it."""
        return {"netns": self.netns, "container": self.container, "pod": self.pod, "flows": self.flows}


@dataclass
class EgressDestination:
    """Flows toward one (proto, destination IP, port) against the budget."""
    proto: str
    dst: str
    dport: int
    flows: int                       # live + closed still held
    live: int
    closed_held: int
    budget: int
    top_sources: list
    rate_per_s: float | None = None
    projected_flows: int | None = None

    @property
    def utilization(self) -> float:
        """flows / budget (may exceed 1)."""
        return self.flows / self.budget if self.budget else 1.0

    def to_json(self, forecast: bool = False) -> dict:
        """The JSON document, as `pressure --egress --json` prints it."""
        d = {"proto": self.proto, "dst": self.dst, "dport": self.dport, "flows": self.flows,
             "budget": self.budget, "utilization": round(self.utilization, 6), "live": self.live,
             "closed_held": self.closed_held, "top_sources": [s.to_json() for s in self.top_sources]}
        if forecast:
            d["rate_per_s"] = None if self.rate_per_s is None else round(self.rate_per_s, 3)
            d["projected_flows"] = self.projected_flows
        return d


@dataclass
class EgressResult:
    """The whole of `pressure --egress`: destinations, budget, findings."""
    destinations: list
    destinations_total: int
    others: dict
    budget: Budget
    findings: list
    namespaces_read: int
    skipped: list
    warnings: list
    forecast: dict | None = None

    def to_json(self) -> dict:
        """The JSON document, as `pressure --egress --json` prints it."""
        fc = self.forecast is not None
        d = {"egress": [x.to_json(fc) for x in self.destinations],
             "budget": self.budget.to_json(),
             "findings": [f.to_json() for f in self.findings],
             "destinations_total": self.destinations_total, "others": self.others,
             "namespaces_read": self.namespaces_read, "skipped": self.skipped, "warnings": self.warnings}
        if fc:
            d["forecast"] = self.forecast
        return d


def _ident_json(ns):
    return (ns.container.to_json() if ns.container else None, ns.pod.to_json() if ns.pod else None)


def analyze(visits: list, b: Budget, *, top: int | None = 20, skipped: Iterable[dict] = (),
            warnings: Iterable[str] = (), earlier: list | None = None,
            elapsed: float | None = None) -> EgressResult:
    """visits: [(NetNamespace, NsFlows)] -> per-destination flows vs the budget.
    earlier/elapsed (--interval): the same namespaces' flows one interval before."""
    live: Counter = Counter()
    closed: Counter = Counter()
    contrib: dict = defaultdict(Counter)        # key -> (netns, container json, pod json) -> flows
    cg_ids = {cg for _, f in visits for per in f.by_cgroup.values() for cg in per}
    where = cgroup_paths(cg_ids) if cg_ids else {}
    idents = {cg: (from_path(p) if p else NONE) for cg, p in where.items()}
    for ns, f in visits:
        label = None if ns.current else ns.spec
        c0, p0 = _ident_json(ns)
        live.update(f.live)
        closed.update(f.closed)
        for key, n in f.live.items():
            # the socket's cgroup says whose flow it is, even in a namespace several workloads
            # share (host-network pods); the namespace's identity is the fallback
            seen = 0
            for cg, m in f.by_cgroup.get(key, {}).items():
                ident = idents.get(cg, NONE)
                if ident:
                    c = ident.container.to_json() if ident.container else None
                    p = ident.pod.to_json() if ident.pod else None
                else:
                    c, p = c0, p0
                contrib[key][(label, _freeze(c), _freeze(p))] += m
                seen += m
            if n - seen:
                contrib[key][(label, _freeze(c0), _freeze(p0))] += n - seen
    rates = {}
    if earlier is not None and elapsed:
        before = set().union(*(f.keys for _, f in earlier)) if earlier else set()
        new: Counter = Counter()
        for _, f in visits:
            for k in f.keys - before:
                new[(k[0], k[3], k[4])] += 1
        rates = {k: n / elapsed for k, n in new.items()}
    rows = []
    for key in set(live) | set(closed):
        proto, dst, dport = key
        srcs = sorted(contrib.get(key, {}).items(), key=lambda kv: -kv[1])[:TOP_SOURCES]
        row = EgressDestination(proto, dst, dport, live[key] + closed[key], live[key], closed[key],
                                b.per_destination,
                                [Source(k[0], _thaw(k[1]), _thaw(k[2]), n) for k, n in srcs])
        if earlier is not None:
            r = rates.get(key, 0.0)
            row.rate_per_s = r
            # flows closed more than TIME_WAIT ago are invisible here but still held by the NAT
            row.projected_flows = row.flows + int(round(r * max(0.0, b.hold_seconds - TIME_WAIT_S)))
        rows.append(row)
    rows.sort(key=lambda r: (-r.utilization, r.proto, r.dst, r.dport))
    total = len(rows)
    findings = [f for f in (_finding(r, b) for r in rows) if f]
    keep, rest = (rows, []) if top is None else (rows[:max(0, top)], rows[max(0, top):])
    others = {"destinations": len(rest), "flows": sum(r.flows for r in rest)}
    fc = None
    if earlier is not None:
        fc = {"elapsed_s": round(elapsed or 0.0, 3), "hold_seconds": b.hold_seconds,
              "new_flows": int(round(sum(rates.values()) * (elapsed or 0)))}
    return EgressResult(keep, total, others, b, findings, len(visits), list(skipped), list(warnings), fc)


def _freeze(d):
    return None if d is None else tuple(sorted(d.items()))


def _thaw(t):
    return None if t is None else dict(t)


def _finding(r: EgressDestination, b: Budget) -> Finding | None:
    u = max(r.utilization, (r.projected_flows or 0) / b.per_destination if b.per_destination else 0)
    if u < WARN:
        return None
    sev = "critical" if u >= CRIT else "warning"
    names = ", ".join(who(s) for s in r.top_sources[:3]) or "unknown"
    p = PRESETS.get(b.cloud) if b.cloud else None
    nat = p.remedy if p else ("add NAT addresses (each adds its own ports per destination)")
    dst = f"[{r.dst}]" if ":" in r.dst else r.dst
    msg = (f"{r.proto} {dst}:{r.dport}: {r.flows} concurrent flows through the NAT ({r.live} live, "
           f"{r.closed_held} closed but held {b.hold_seconds:g} s) of a budget of {b.per_destination} "
           f"({u * 100:.1f}%); most from {names}"
           + (f"; the provider counts failures in {p.counter}" if p else ""))
    remedy = (f"{nat}; pool connections / keep-alive in the top sources ({names}) so fewer flows to "
              f"{dst}:{r.dport} are open at once; a private endpoint for this destination takes it off the NAT")
    return Finding("egress-nat-budget", sev, msg, remedy,
                   {"proto": r.proto, "dst": r.dst, "dport": r.dport, "flows": r.flows,
                    "budget": b.per_destination, "utilization": round(u, 6)})


def who(s: Source) -> str:
    """A source in one phrase: its pod, else its container, else its namespace."""
    if s.pod:
        return f"pod {s.pod['uid']}"
    if s.container:
        return f"{s.container['runtime']}:{s.container['id'][:12]}"
    return s.netns or "the host"


def collect(hold: float, include_private: bool = False) -> tuple[Walk, list]:
    """Read every namespace once: (walk, [(ns, NsFlows)])."""
    def reader(spec):
        with entered(spec):
            return read_flows(hold, include_private)
    walk = each(reader)
    return walk, [(v.ns, v.value) for v in walk.visits]


def run(b: Budget, *, top: int | None = 20, include_private: bool = False,
        interval: float | None = None) -> EgressResult:
    """The whole of `pressure --egress`."""
    walk, visits = collect(b.hold_seconds, include_private)
    earlier = elapsed = None
    if interval:
        t0 = time.monotonic()
        time.sleep(interval)
        earlier = visits
        walk, visits = collect(b.hold_seconds, include_private)
        elapsed = time.monotonic() - t0
    return analyze(visits, b, top=top, skipped=walk.skipped,
                   warnings=walk.discovery.warnings if walk.discovery else [],
                   earlier=earlier, elapsed=elapsed)


# the flat API's names (portscope.nat_budget, portscope.measure_egress)
nat_budget = budget
measure_egress = run

__all__ = ["PRESETS", "Budget", "budget", "run", "analyze", "read_flows", "EgressResult", "who",
           "nat_budget", "measure_egress"]
