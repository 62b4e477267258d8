"""Prometheus metrics of observed failures and TIME_WAIT counters, for `portscope exporter`.

The eBPF counter is loaded once when the exporter starts and kept across scrapes, so the
`_total` series only grow. Label cardinality is bounded: the first `top` label sets seen
(most counted first at the scrape that saw them) keep their own series for the exporter's
life; every later one is summed into one `comm="other", dst="other", dport="other"` series
per errno. Membership never changes, so both the named and the `other` series are
monotonic, as counters must be.

Rows of processes that have exited are moved out of the kernel map into the exporter's
memory (BPF_MAP_LOOKUP_AND_DELETE_ELEM: an increment racing with it makes a new row, none
is lost), so the map's 10240 keys are not used up by a stream of short-lived processes.
"""
from __future__ import annotations

import logging
import os
import struct
import threading
from collections import Counter
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..exporter import discover_netns
from ..netns import resolve
from . import counters as C
from .loader import FailureCounter, LoadError
from .programs import decode
from .watch import cli_error

if TYPE_CHECKING:
    from ..exporter import Exporter

log = logging.getLogger("portscope.exporter")
OTHER = "other"
DEFAULT_FAILURE_TOP = 20


class StickyTop:
    """At most `limit` members, admitted in the order offered and kept forever."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.members: set = set()

    def admit(self, key: tuple) -> bool:
        """True when `key` has (or now gets) its own series."""
        if key in self.members:
            return True
        if len(self.members) < self.limit:
            self.members.add(key)
            return True
        return False


class ObserveCollector:
    """Collector of the failure counter and the TIME_WAIT counters of the exporter's
    namespaces. bpf=None: load eBPF if possible (log why not), True: raise LoadError,
    False: counters only."""

    def __init__(self, targets: "tuple | list" = (None,), *, all_netns: bool = False, top: int = DEFAULT_FAILURE_TOP,
                 bpf: bool | None = None) -> None:
        self.targets = tuple(targets) or (None,)
        self.all_netns = all_netns
        self.explicit = any(self.targets)          # --netns: only those namespaces' failures
        self.connect_top, self.bind_top, self.send_top = StickyTop(top), StickyTop(top), StickyTop(top)
        self.folded: Counter = Counter()           # (metric, labels) -> counts of exited processes
        self.counter: FailureCounter | None = None
        self.load_error: LoadError | None = None
        self._lock = threading.Lock()
        if bpf is not False:
            fc = FailureCounter()
            try:
                fc.start()
                self.counter = fc
            except LoadError as e:
                self.load_error = e
                if bpf:
                    raise
                log.warning("eBPF failure counter not loaded (%s): failure metrics are not exported", e)

    def close(self) -> None:
        """Unload the failure counter."""
        if self.counter is not None:
            self.counter.close()
            self.counter = None

    def describe(self) -> list:
        """Nothing at registration: describing must not read anything."""
        return []

    def namespaces(self) -> list[str | None]:
        """The namespaces whose counters this scrape reads."""
        out = list(dict.fromkeys(self.targets))
        if self.all_netns:          # every namespace, as the pressure collector reads them
            out += [n for n in discover_netns()[0] if n not in out]
        return out

    def collect(self) -> list:
        """One scrape: TIME_WAIT counters per namespace, then the failure counters."""
        with self._lock:
            return list(self._collect())

    def _labels_of_inode(self, names) -> dict[int, str]:
        out = {}
        for n in names:
            try:
                if n:
                    out[os.stat(resolve(n)).st_ino] = n
                else:
                    out[os.stat("/proc/self/ns/net").st_ino] = ""
            except Exception:       # noqa: BLE001 - a namespace that vanished has no failures to name
                pass
        return out

    def _collect(self):
        names = self.namespaces()
        yield from self._counter_families(names)
        up = GaugeMetricFamily("portscope_failure_counter_loaded",
                               "1 when the eBPF failure counter is loaded (failure metrics are exported), else 0.",
                               labels=["netns"])
        up.add_metric([""], 1 if self.counter is not None else 0)
        yield up
        totals: Counter = Counter(self.folded)
        if self.counter is not None:
            self._count(names, totals)
        yield from self._failure_families(totals)

    def _count(self, names, totals: Counter) -> None:
        inodes = self._labels_of_inode(names)
        counts = self.counter.counts if self.counter is not None else None
        if counts is None:
            return
        rows = [(decode(k, v), k) for k, v in counts.items().items()]
        for f, key in sorted(rows, key=lambda r: -r[0].count):      # the busiest get the top slots
            ns = inodes.get(f.netns)
            if ns is None:
                if self.explicit:
                    continue
                ns = f"inode:{f.netns}"
            row = self._series(f, ns)
            if row is None:
                continue
            totals[row] += f.count
            if not os.path.exists(f"/proc/{f.pid}"):
                v = counts.pop(key)
                if v is not None:
                    self.folded[row] += struct.unpack("<Q", v[:8])[0]

    @staticmethod
    def _failure_families(totals: Counter):
        fams = {
            "connect": CounterMetricFamily("portscope_connect_failures",
                                           "connect() calls that failed for want of a local port (EADDRNOTAVAIL; "
                                           "EAGAIN: UDP autobind), by destination; top-N plus \"other\".",
                                           labels=["netns", "errno", "comm", "dst", "dport"]),
            "bind": CounterMetricFamily("portscope_bind_failures",
                                        "bind() calls that failed with EADDRINUSE; top-N plus \"other\".",
                                        labels=["netns", "errno", "comm"]),
            "send": CounterMetricFamily("portscope_udp_send_failures",
                                        "UDP sendto()/sendmsg() calls whose autobind failed (EAGAIN); "
                                        "top-N plus \"other\".", labels=["netns", "errno", "comm", "dst", "dport"]),
        }
        for (metric, labels), n in sorted(totals.items()):
            fams[metric].add_metric(list(labels), n)
        yield from fams.values()

    def _series(self, f, ns: str):
        dst = f.dst or ""
        dport = "" if f.dport is None else str(f.dport)
        key: tuple
        if f.syscall == "connect":
            key, top, metric = (ns, f.errno, f.comm, dst, dport), self.connect_top, "connect"
        elif f.syscall == "bind":
            key, top, metric = (ns, f.errno, f.comm), self.bind_top, "bind"
        else:
            key, top, metric = (ns, f.errno, f.comm, dst, dport), self.send_top, "send"
        if top.admit(key):
            return metric, key
        if metric == "bind":
            return metric, (OTHER, f.errno, OTHER)
        return metric, (OTHER, f.errno, OTHER, OTHER, OTHER)

    def _counter_families(self, names):
        rec = CounterMetricFamily("portscope_tcp_timewait_recycled",
                                  "connect() calls that took over a TIME_WAIT port (TcpExt TWRecycled).",
                                  labels=["netns"])
        over = CounterMetricFamily("portscope_tcp_timewait_overflow",
                                   "Sockets closed without TIME_WAIT because tcp_max_tw_buckets was reached "
                                   "(TcpExt TCPTimeWaitOverflow).", labels=["netns"])
        killed = CounterMetricFamily("portscope_tcp_timewait_killed", "TcpExt TWKilled.", labels=["netns"])
        tw = GaugeMetricFamily("portscope_tcp_timewait_sockets", "TIME_WAIT sockets (/proc/net/sockstat tw).",
                               labels=["netns"])
        mx = GaugeMetricFamily("portscope_tcp_max_tw_buckets", "net.ipv4.tcp_max_tw_buckets.", labels=["netns"])
        for n in names:
            label = n or ""
            try:
                s = C.read(n)
            except Exception as e:      # noqa: BLE001 - the pressure collector counts the read error
                log.warning("netns %s: TIME_WAIT counters not read: %s", label or "(own)", e)
                continue
            rec.add_metric([label], s.tcpext["TWRecycled"])
            over.add_metric([label], s.tcpext["TCPTimeWaitOverflow"])
            killed.add_metric([label], s.tcpext["TWKilled"])
            tw.add_metric([label], s.tw)
            if s.tcp_max_tw_buckets is not None:
                mx.add_metric([label], s.tcp_max_tw_buckets)
        return rec, over, killed, tw, mx


def add_to(exporter: "Exporter", targets: "list", *, all_netns: bool, bpf: bool | None) -> ObserveCollector:
    """Register the observed metrics on an exporter.Exporter's registry (the same scrape).
    With bpf=True a counter that cannot load is a CLI error (exit 3 or 4)."""
    try:
        c = ObserveCollector(targets, all_netns=all_netns, bpf=bpf)
    except LoadError as e:
        raise cli_error(e) from None
    exporter.registry.register(c)
    return c
