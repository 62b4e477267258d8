"""The exporter's conntrack and SNAT series (names are a contract: docs/exporter.md).

A namespace whose NAT facts cannot be read (no CAP_NET_ADMIN, no conntrack) simply has
no NAT series; the socket series of the same scrape are unaffected. The SNAT use comes
from one SnatWatch per namespace (portscope.nat.events): kept from conntrack events
between scrapes, a dump only to start, after lost events, or while entries older than
the subscription are left (docs/nat.md, "Event-kept SNAT use").
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..errors import PortscopeError
from . import NatReport, analyze
from .events import SnatWatch

if TYPE_CHECKING:
    from ..host import HostFacts
    from .rules import RuleSet

log = logging.getLogger("portscope.exporter")
OTHER = "other"
_warned: set = set()
# NAT rules change rarely and reading them costs 2-4 subprocesses (iptables-save per
# family and back-end, nft): a scrape reuses a namespace's rules for this long
RULES_TTL = 60.0
_rules: dict = {}


def _cached_rules(netns: str | None, read: Callable[[], RuleSet]) -> RuleSet:
    now = time.monotonic()
    hit = _rules.get(netns or "")
    if hit is not None and now - hit[0] < RULES_TTL:
        return hit[1]
    rs = read()
    if len(_rules) > 1024:
        _rules.clear()
    _rules[netns or ""] = (now, rs)
    return rs


_watches: dict[str, SnatWatch] = {}


def watch(netns: str | None) -> SnatWatch:
    """The event watch of one namespace label (made on first use)."""
    w = _watches.get(netns or "")
    if w is None:
        w = _watches[netns or ""] = SnatWatch(background=True)
    return w


def retain(labels: Iterable[str]) -> None:
    """Close the watches of namespaces no longer read: an open event socket would keep a
    deleted namespace alive and its events queued."""
    keep = set(labels)
    for label in [k for k in _watches if k not in keep]:
        _watches.pop(label).close()


def _note_mode(netns: str | None, w: SnatWatch) -> None:
    if w.mode == "dump":
        key = (netns or "", "dump")
        if key not in _warned:
            _warned.add(key)
            log.warning("netns %s: conntrack events are off (net.netfilter.nf_conntrack_events = 0): "
                        "SNAT use is dumped at every scrape", netns or "(own)")


def read_nat(netns: str | None, facts: HostFacts | None = None) -> NatReport | None:
    """The NatReport of one namespace, or None when it cannot be read (logged once)."""
    w = watch(netns)
    try:
        rep = analyze(netns, facts=facts, rules_cache=_cached_rules, tally=w.tally)
        _note_mode(netns, w)
        return rep
    except PortscopeError as e:
        key = (netns or "", str(e))
        if key not in _warned:
            _warned.add(key)
            log.warning("netns %s: no NAT metrics: %s", netns or "(own)", e)
        return None


def _g(name, doc, labels=()):
    return GaugeMetricFamily(name, doc, labels=["netns", *labels])


def _c(name, doc):
    return CounterMetricFamily(name, doc, labels=["netns"])


def families(samples: list[tuple[str, NatReport]], top: int) -> tuple[GaugeMetricFamily | CounterMetricFamily, ...]:
    """Metric families from [(netns label, NatReport)]."""
    entries = _g("portscope_conntrack_entries", "Conntrack entries of the namespace (nf_conntrack_count).")
    maximum = _g("portscope_conntrack_max", "Conntrack table limit (nf_conntrack_max, global).")
    failed = _c("portscope_conntrack_insert_failed",
                "Conntrack inserts that failed (NAT port clash or full table), summed over CPUs.")
    drop = _c("portscope_conntrack_drop", "Packets conntrack dropped (insert failed), summed over CPUs.")
    early = _c("portscope_conntrack_early_drop",
               "Entries evicted because the table was full, summed over CPUs.")
    lab = ["proto", "nat_ip", "dst", "dport"]
    use = _g("portscope_snat_destination_ports_in_use",
             "NAT ports in use toward one translated destination, TIME_WAIT included "
             "(top-N; dst=\"other\" sums the rest).", lab)
    cap = _g("portscope_snat_destination_ports_capacity",
             "Size of the NAT port range that applies to one translated destination (top-N).", lab)
    util = _g("portscope_snat_destination_utilization_ratio",
              "in_use / capacity (0..1) for one translated destination; 1: new connections are dropped.", lab)
    resyncs = CounterMetricFamily("portscope_conntrack_event_resyncs",
                                  "Full conntrack dumps the event-kept SNAT use needed, by reason: start, "
                                  "overflow (events lost: ENOBUFS), unconfirmed (entries older than the "
                                  "subscription, which send no events, are re-read).", labels=["netns", "reason"])
    tracking = _g("portscope_conntrack_events_tracking",
                  "1: the SNAT series are kept from conntrack events; 0: dumped at every scrape "
                  "(nf_conntrack_events is 0 in the namespace).")
    held = _g("portscope_nat_ports_in_ephemeral_range",
              "Ports held by NAT rules (DNAT, NodePorts) inside the usable ephemeral range: "
              "outgoing connect() may take them.")
    for ns, rep in samples:
        ct = rep.conntrack
        if ct.available:
            if ct.entries is not None:
                entries.add_metric([ns], ct.entries)
            if ct.max is not None:
                maximum.add_metric([ns], ct.max)
            for fam, key in ((failed, "insert_failed"), (drop, "drop"), (early, "early_drop")):
                if ct.stats.get(key) is not None:
                    fam.add_metric([ns], ct.stats[key])
        shown = rep.snat[:top]
        for d in shown:
            lv = [ns, d.proto, d.nat_ip, d.dst, str(d.dport)]
            use.add_metric(lv, d.in_use)
            cap.add_metric(lv, d.capacity)
            util.add_metric(lv, d.utilization)
        rest = rep.snat[top:]
        if rest:
            use.add_metric([ns, "", "", OTHER, ""], sum(d.in_use for d in rest))
        held.add_metric([ns], sum(1 for p in rep.nat_ports if p.in_ephemeral_range and not p.reserved))
        w = _watches.get(ns)
        if w is not None and w.mode is not None:
            tracking.add_metric([ns], 1 if w.mode == "events" else 0)
            for reason in ("start", "overflow", "unconfirmed"):
                resyncs.add_metric([ns, reason], w.resyncs.get(reason, 0))
    return (entries, maximum, failed, drop, early, use, cap, util, held, resyncs, tracking)
