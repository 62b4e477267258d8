"""Connection tracking and NAT: where ports run out outside the socket table.

    from portscope.nat import analyze
    r = analyze(netns=None)            # conntrack stats + table, NAT rules, SNAT use, findings
    r.to_json(top=10)

Modules: ctnetlink (NETLINK_NETFILTER requests), table (the columnar conntrack
table), stats (fill and per-CPU statistics, procfs fallback), rules (iptables-save
and nft -j parsing), snat (use per translated destination, ports NAT rules hold),
findings (with remedies).
"""
from __future__ import annotations

import errno
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, TypeVar

from .. import host, natprobe
from .. import netns as _netns
from ..errors import NotPermitted, PortscopeError, Unsupported
from ..findings import Finding
from . import ctnetlink, rules, snat, stats, table
from . import findings as nat_findings
from .stats import NEED_CAP, ConntrackStats

T = TypeVar("T")

if TYPE_CHECKING:
    import socket

    from ..pressure import PressureResult
    from .events import SnatBook


@dataclass
class NatReport:
    """Everything `portscope nat` knows about one namespace: conntrack, rules, SNAT use,
    NAT-held ports and the findings."""
    netns: str | None
    conntrack: ConntrackStats
    rules: rules.RuleSet
    snat: list = field(default_factory=list)
    nat_ports: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    entries_read: int | None = None      # source-NATed entries counted (None when not dumped)
    notes: list = field(default_factory=list)
    interval: float | None = None        # with --interval: seconds between two stats reads
    delta: dict | None = None            # counters' increase over that interval

    def to_json(self, top: int | None = None) -> dict:
        """The `nat --json` document (docs/json.md), with the `top` most used destinations."""
        shown = self.snat if top is None else self.snat[:top]
        return {
            "netns": self.netns,
            "conntrack": self.conntrack.to_json(),
            "rules": [r.to_json() for r in self.rules.rules],
            "rules_skipped": self.rules.skipped,
            "snat": [d.to_json() for d in shown],
            "snat_total": len(self.snat),
            "nat_ports": [p.to_json() for p in self.nat_ports],
            "findings": self.findings,
            "sources": {**self.rules.sources, "conntrack": self.conntrack.source},
            "notes": self.conntrack.notes + self.rules.notes + self.notes,
            **({"interval": {"seconds": self.interval, **self.delta}} if self.delta is not None else {}),
        }

    @property
    def present(self) -> bool:
        """Is there anything NAT-related here worth a report section?"""
        return bool(self.rules.rules or self.nat_ports or self.snat
                    or (self.conntrack.available and self.conntrack.entries))


def _dumped(work: Callable[[socket.socket], T]) -> T:
    """work(ctnetlink socket) in the calling thread's namespace, its errors as portscope's."""
    try:
        sock = ctnetlink.open_socket()
        try:
            return work(sock)
        finally:
            sock.close()
    except ctnetlink.CtnetlinkError as e:
        if e.errno == errno.EPERM:
            raise NotPermitted(NEED_CAP)
        raise Unsupported(f"cannot dump the conntrack table over ctnetlink ({e})")


def read_table() -> table.ConntrackTable:
    """The conntrack table of the calling thread's namespace (CAP_NET_ADMIN)."""
    return table.parse_groups(_dumped(ctnetlink.dump_table))


def count_snat() -> snat.SnatTally:
    """SNAT use in the calling thread's namespace, counted while the dump arrives
    (CAP_NET_ADMIN). The kernel is asked for the source-NATed entries only; the table
    itself is never held."""
    tally = snat.SnatTally()
    _dumped(lambda sock: ctnetlink.dump_groups(sock, tally.add, status=table.IPS_SRC_NAT))
    return tally


def analyze(netns: str | None = None, dump: bool = True, facts: host.HostFacts | None = None,
            rules_cache: Callable[[str | None, Callable[[], rules.RuleSet]], rules.RuleSet] | None = None,
            interval: float | None = None, tally: Callable[[], snat.SnatTally | SnatBook] | None = None) -> NatReport:
    """Everything `portscope nat` shows, for one network namespace. `rules_cache`, a
    callable (netns, read) -> RuleSet, lets the exporter reuse rules between scrapes.
    `tally`, called inside the namespace, gives the SNAT use instead of a dump (the
    exporter's event-kept book, portscope.nat.events).
    `interval`: read the statistics again after that many seconds, so insert failures
    and drops are judged by whether they rise, not by their totals."""
    if not sys.platform.startswith("linux"):
        raise Unsupported("conntrack and netfilter NAT are Linux features")
    if facts is None:
        facts = host.host_facts(netns)
    with _netns.entered(netns):
        ct = stats.read_stats()
        rs = rules.read_rules() if rules_cache is None else rules_cache(netns, rules.read_rules)
        t = (tally or count_snat)() if (dump and ct.available) else None
        delta = None
        if interval and ct.available:
            time.sleep(interval)
            ct2 = stats.read_stats()
            delta = {k: (ct2.stats[k] - ct.stats[k]) if ct.stats.get(k) is not None and
                     ct2.stats.get(k) is not None else None for k in ("insert_failed", "drop", "early_drop")}
            ct = ct2
    rep = NatReport(netns=netns, conntrack=ct, rules=rs, interval=interval if delta is not None else None,
                    delta=delta)
    if t is not None:
        rep.entries_read = t.rows
        rep.snat = t.destinations(rs.rules)
    rep.nat_ports = snat.nat_ports(rs.holders, facts.ephemeral, facts.reserved)
    if rs.skipped:
        rep.notes.append(f"{rs.skipped} rule line(s) could not be read and were skipped "
                         f"(e.g. {rs.skipped_examples[0]!r})")
    rep.findings = (nat_findings.conntrack_findings(ct, facts, delta, interval)
                    + nat_findings.snat_findings(rep.snat, facts)
                    + nat_findings.port_findings(rep.nat_ports, rs.rules, facts))
    return rep


def held_ports(netns: str | None = None) -> dict[int, list]:
    """{port: [Holder, ...]} of the ports inbound NAT rules hold (for `port` and `suggest`).
    Empty off Linux, when no rule reader is installed, or when reading the rules is not
    permitted or fails (the callers' other checks still stand)."""
    if not sys.platform.startswith("linux"):
        return {}
    try:
        with _netns.entered(netns):
            # no nat table, chain or NodePort set: the readers' three processes would find nothing
            rs = rules.read_rules() if natprobe.may_hold_ports() else rules.RuleSet()
    except (PortscopeError, OSError, subprocess.SubprocessError):
        return {}
    out: dict[int, list] = {}
    for h in rs.holders:
        for p in range(h.low, min(h.high, h.low + 4095) + 1):
            out.setdefault(p, []).append(h)
    return out


def holder_text(h: rules.Holder) -> str:
    """'DNAT rule in chain KUBE-NODEPORTS (iptables, tcp)'."""
    what = "nodeport map" if h.kind == "map" else f"{h.kind.upper()} rule in chain"
    return f"{what} {h.chain} ({h.source}{', ' + h.proto if h.proto else ''})"


def holders_of(port: int, netns: str | None = None, proto: str | None = None) -> list[dict]:
    """The NAT rules that hold `port` on this host, for `portscope port N`."""
    out = []
    for h in held_ports(netns).get(port, []):
        if proto and h.proto and h.proto != proto:
            continue
        out.append({"proto": h.proto, "chain": h.chain, "kind": h.kind, "source": h.source,
                    "text": holder_text(h)})
    return out


def with_nat(res: "PressureResult", netns: str | None = None) -> "tuple[PressureResult, NatReport | None]":
    """(pressure result with the NAT findings appended, NatReport or None), for `report`
    and `pressure --check`. NAT facts that cannot be read (no CAP_NET_ADMIN, not Linux)
    leave the result as it was: the socket findings still stand."""
    try:
        rep = analyze(netns)
    except (PortscopeError, OSError, subprocess.SubprocessError):
        return res, None
    if not rep.present:
        return res, None
    extra = tuple(Finding(f["id"], f["severity"], f["message"], f["remedy"]) for f in rep.findings)
    return res.replace(findings=tuple(res.findings) + extra), rep
