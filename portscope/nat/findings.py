"""NAT findings: conntrack-full, conntrack-insert-failed, snat-exhaustion,
nat-port-in-range, snat-range-overlaps-nat-port; each with the exact remedy.

Same shape as portscope.findings (id, severity, message, remedy) so report,
pressure --check and alerting treat them alike.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..ports import PortSet
from ..remedies import reserve_command, sysctl_command
from ..remedies import shell as ns_exec
from .rules import NatRule

if TYPE_CHECKING:
    from ..host import HostFacts
    from .snat import NatPort, SnatDestination
    from .stats import ConntrackStats

FULL_WARN = 0.80
FULL_CRIT = 0.95
SNAT_WARN = 0.80
SNAT_CRIT = 0.95
MAX_LISTED = 3

NAT_FINDING_IDS = ("conntrack-full", "conntrack-insert-failed", "snat-exhaustion", "nat-port-in-range",
                   "snat-range-overlaps-nat-port")


def _f(fid: str, severity: str, message: str, remedy: str) -> dict:
    return {"id": fid, "severity": severity, "message": message, "remedy": remedy}


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def conntrack_findings(ct: ConntrackStats, facts: HostFacts, delta: dict | None = None,
                       seconds: float | None = None) -> list[dict]:
    """conntrack-full, and conntrack-insert-failed: a warning when the counters rose during
    `seconds` (delta), information when they are only non-zero totals."""
    out: list[dict] = []
    if not ct.available:
        return out
    u = ct.utilization
    if u is not None and ct.max is not None and u >= FULL_WARN:
        new_max = max(ct.max * 2, 65536)
        sev = "critical" if u >= FULL_CRIT else "warning"
        # nf_conntrack_max and the hash size are global: only the initial namespace sets them
        remedy = (f"sysctl -w net.netfilter.nf_conntrack_max={new_max} && "
                  f"echo {new_max} > /sys/module/nf_conntrack/parameters/hashsize  "
                  f"# on the host (both are global); or shorten idle entries: "
                  + sysctl_command(facts, "net.netfilter.nf_conntrack_tcp_timeout_established=86400",
                                   "net.netfilter.nf_conntrack_udp_timeout=30"))
        out.append(_f("conntrack-full", sev,
                      f"conntrack table {ct.entries}/{ct.max} entries ({_pct(u)}): when it is full new "
                      f"connections are dropped (nf_conntrack: table full, dropping packet)", remedy))
    failed = ct.stats.get("insert_failed") or 0
    drop = ct.stats.get("drop") or 0
    remedy = ("add --random-fully to the MASQUERADE/SNAT rules (nft: masquerade fully-random), e.g. "
              + ns_exec(facts.netns) + "iptables -t nat -A POSTROUTING -o IFACE -j MASQUERADE --random-fully"
              "; when the table is also near full raise net.netfilter.nf_conntrack_max")
    if delta is not None:
        d_failed, d_drop = delta.get("insert_failed") or 0, delta.get("drop") or 0
        if d_failed or d_drop:
            out.append(_f("conntrack-insert-failed", "warning",
                          f"conntrack insert_failed +{d_failed}, drop +{d_drop} in the last {seconds:g} s "
                          f"(summed over CPUs): connections are being dropped by a NAT port clash (the SNAT "
                          f"race) or a full table", remedy))
            return out
    if failed or drop:
        # counts since the namespace's conntrack started: without a rate they may be old news
        out.append(_f("conntrack-insert-failed", "info",
                      f"conntrack insert_failed={failed} drop={drop} since the namespace's conntrack started "
                      f"(summed over CPUs): connections were dropped by a NAT port clash (the SNAT race) or "
                      f"a full table at some point; `portscope nat --interval 5` says whether it goes on",
                      remedy))
    return out


def _wider(d) -> str:
    """A --to-ports twice as wide (or to 65535), for the remedy."""
    size = d.high - d.low + 1
    hi = min(65535, d.low + 2 * size - 1)
    lo = d.low if hi - d.low + 1 >= 2 * size else max(1024, hi - 2 * size + 1)
    return f"{lo}-{hi}"


def snat_findings(destinations: list[SnatDestination], facts: HostFacts) -> list[dict]:
    """snat-exhaustion: translated destinations at >= 80% (warning) / 95% (critical) of
    their NAT range, with the wider range, more addresses and shorter TIME_WAIT remedies."""
    out = []
    for sev, lo_u, hi_u in (("critical", SNAT_CRIT, None), ("warning", SNAT_WARN, SNAT_CRIT)):
        ds = [d for d in destinations if d.utilization >= lo_u and (hi_u is None or d.utilization < hi_u)]
        if not ds:
            continue
        names = "; ".join(f"{d.proto} {d.nat_ip} -> {d.dst}:{d.dport} {d.in_use}/{d.capacity} "
                          f"({_pct(d.utilization)}, {d.time_wait} in TIME_WAIT)" for d in ds[:MAX_LISTED])
        more = f" and {len(ds) - MAX_LISTED} more" if len(ds) > MAX_LISTED else ""
        d = ds[0]
        pre = ns_exec(facts.netns)
        if d.range_from == "rule" and d.rule is not None:
            r = d.rule
            assert isinstance(r, NatRule)
            widen = (f"widen the NAT range of {r.source} rule in chain {r.chain} from {d.low}-{d.high} to "
                     f"{_wider(d)} (iptables: --to-ports {_wider(d)}; nft: to :{_wider(d)})")
        else:
            widen = (f"the default NAT range {d.low}-{d.high} is full: add NAT addresses "
                     f"(SNAT --to-source A-B)")
        remedy = (f"{widen}, or more NAT addresses; add --random-fully; shorten conntrack's TIME_WAIT: "
                  f"{pre}sysctl -w net.netfilter.nf_conntrack_tcp_timeout_time_wait=30")
        out.append(_f("snat-exhaustion", sev,
                      f"SNAT ports to one destination near their NAT range's capacity: {names}{more}; new "
                      f"connections to it are dropped silently (SYN lost, DNS timeouts)", remedy))
    return out


def port_findings(ports: list[NatPort], snat_rules: list[NatRule], facts: HostFacts) -> list[dict]:
    """nat-port-in-range (NAT-held ports connect() may take: the reserve remedy) and
    snat-range-overlaps-nat-port (a --to-ports range that includes them)."""
    out = []
    exposed = sorted({p.port for p in ports if p.in_ephemeral_range and not p.reserved})
    if exposed:
        chains = sorted({p.chain for p in ports if p.port in exposed})
        out.append(_f("nat-port-in-range", "warning",
                      f"{len(exposed)} port(s) held by NAT rules, not sockets (chains {', '.join(chains[:4])}), "
                      f"lie in the ephemeral range {facts.ephemeral.low}-{facts.ephemeral.high} and are not "
                      f"reserved: an outgoing connect() may take one and the service fails on this node "
                      f"({', '.join(map(str, exposed[:10]))}{', ...' if len(exposed) > 10 else ''})",
                      reserve_command(facts, exposed)))
    held = PortSet.of(p.port for p in ports)
    for r in snat_rules:
        if r.kind not in ("snat", "masquerade") or r.ports is None:
            continue
        lo, hi = r.ports
        clash = sorted(p.port for p in ports if lo <= p.port <= hi and r.proto in (None, p.proto))
        if clash and held:
            out.append(_f("snat-range-overlaps-nat-port", "warning",
                          f"{r.source} {r.kind} rule in chain {r.chain} maps to ports {lo}-{hi}, which include "
                          f"port(s) held by NAT rules ({', '.join(map(str, clash[:10]))}): NAT ignores "
                          f"ip_local_reserved_ports, so translated flows can take them",
                          f"give the {r.kind} rule a --to-ports range without them (nft: to :A-B), "
                          f"e.g. one that ends below {clash[0]}"))
    return out
