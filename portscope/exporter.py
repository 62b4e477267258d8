"""Prometheus metrics of ephemeral-port pressure: a custom collector, the scrape
coalescer, and the textfile writer. Metric names are a contract (docs/exporter.md).

Each scrape reads ONE socket table per namespace (sock_diag, every protocol and
state) and derives everything from it: socket counts, global use, per-destination
use (portscope.pressure.analyze). Series from one scrape therefore always agree.
Concurrent scrapes share one collection (single flight): 50 scrapers against a
100k-socket namespace cost one read, not 50. The web view (portscope.web) is served from
the same collections: its page and /api/pressure use the first namespace's sample of the
last collection (or the one in flight) when it is at most WEB_MAX_AGE seconds old, so an
open page adds no socket read of its own next to Prometheus'; otherwise the page reads
the sockets of the range only, cheaper than a scrape's read (docs/web.md, "Cost").
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from itertools import compress
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from . import egress as node_egress
from .errors import PortscopeError
from .fsutil import atomic_write
from .host import host_facts
from .httpserver import arrival, waiting_response
from .namespaces import discover
from .nat.metrics import families as nat_families
from .nat.metrics import read_nat
from .nat.metrics import retain as nat_retain
from .pressure import READ_STATE_NAMES, PressureResult, analyze, truncate, usable_ports
from .sockets import ALL_PROTOS, snapshot
from .sockets.masks import is_
from .sockets.table import PROTO_CODES, PROTO_NAMES, STATE_NAMES, SocketTable
from .web import WebView
from .web.data import MAX_SAMPLE_AGE, Reading, read_now

if TYPE_CHECKING:
    from .host import HostFacts

log = logging.getLogger("portscope.exporter")

DEFAULT_LISTEN = "127.0.0.1:9917"
DEFAULT_TOP = 20
OTHER = "other"                       # dst label of the series summing every destination beyond top-N
NETNS_DIR = "/run/netns"
PORT_PROTOS = ("tcp", "udp", "udplite")   # share the ephemeral range (SCTP has its own allocator)
WEB_MAX_AGE = MAX_SAMPLE_AGE          # seconds a collection's sample may serve the page (docs/web.md)
WEB_OPEN_SECONDS = 60.0               # a page asked within this long counts as open (see keep_until)


@dataclass(frozen=True)
class Sample:
    """Everything one namespace contributes to a scrape."""

    netns: str                        # label value; "" = the exporter's own namespace
    facts: object                     # HostFacts
    sockets: dict                     # (proto, state) -> count
    ports_in_use: dict                # proto -> distinct ports of the usable pool held
    pressure: object                  # PressureResult (top-N)
    nat: object = None                # nat.NatReport, None when not readable (no CAP_NET_ADMIN)
    # for the web view (kept for the first namespace until the next collection, while a
    # page is open): the table read, pressure before top-N (the forecast ranks every
    # destination), and when the read happened (monotonic, middle of the read; wall clock)
    table: SocketTable | None = None
    full: PressureResult | None = None    # every destination
    at: float = 0.0
    wall: float = 0.0


def read_table(netns: str | None) -> SocketTable:
    """One read of every socket in every state, bound-only ones included (they hold
    ports), with the kernel's auto-bound bit where the pressure model reads it (TCP sockets
    with a remote port: nothing else here looks at it, and asking for it elsewhere costs a
    second walk of the bind hash and of every UDP table); SCTP comes from /proc/net/sctp.
    No inodes (0 where the BPF iterator reads TCP): no series and not the web view use them."""
    return snapshot(ALL_PROTOS, states=READ_STATE_NAMES, netns=netns, classify=False, auto=True,
                    model_auto=True, inodes=False)


def _of_proto(col, pb: bytes, code: int, n: int) -> Iterable:
    """`col`'s values in the n > 0 rows of protocol `code`: one slice (a copy in C) when
    those rows are contiguous, as a read leaves them (each protocol's dump in turn), else
    picked with a mask over every row."""
    first = pb.find(code)
    if pb.rfind(code) - first + 1 == n:
        return col[first:first + n]
    return compress(col, is_(pb, code))


def ports_in_use(table: SocketTable, usable: bytearray) -> dict:
    """proto name -> distinct ports of the usable pool held by that protocol's sockets."""
    # distinct ports first, the pool test after: at 100k sockets there are far fewer
    # distinct ports than rows, and a table of one protocol needs no mask at all
    lports, pb = table.local_port, table.proto.tobytes()
    out = {}
    for p in PORT_PROTOS:
        n = pb.count(PROTO_CODES[p])
        ports = set(lports) if n == len(pb) else set(_of_proto(lports, pb, PROTO_CODES[p], n)) if n else ()
        out[p] = bytes(map(usable.__getitem__, ports)).count(1)
    return out


def _tally(column: bytes, names: dict) -> dict[int, int]:
    """value -> rows, for every value in a byte column: one C count per known value (a
    handful), a pass over the rows only for values `names` does not know."""
    out = {v: k for v in names if (k := column.count(v))}
    if sum(out.values()) < len(column):
        out.update((v, column.count(v)) for v in set(column) - names.keys())
    return out


def socket_counts(table: SocketTable) -> dict:
    """(proto name, state name) -> sockets, counted with bytes.count over each protocol's
    state column (a few C passes instead of a Counter fed one tuple per row)."""
    pb, sb = table.proto.tobytes(), table.state.tobytes()
    out: Counter = Counter()
    for p, n in _tally(pb, PROTO_NAMES).items():
        states = sb if n == len(pb) else bytes(_of_proto(sb, pb, p, n))
        for st, k in _tally(states, STATE_NAMES).items():
            out[(PROTO_NAMES.get(p, str(p)), STATE_NAMES.get(st, str(st)))] += k
    return dict(out)


def read_sample(netns: str | None, top: int) -> Sample:
    """One namespace's facts, socket counts, pool use and pressure (top-N), all from one table read."""
    facts = host_facts(netns)
    t0 = time.monotonic()
    table = read_table(netns)
    at = (t0 + time.monotonic()) / 2
    usable = usable_ports(facts.ephemeral, facts.reserved)
    full = analyze(facts, table, top=None)     # top-N below: the web view's forecast needs them all
    return Sample(netns=netns or "", facts=facts, sockets=socket_counts(table),
                  ports_in_use=ports_in_use(table, usable), pressure=truncate(full, top),
                  nat=read_nat(netns, facts), table=table, full=full, at=at, wall=time.time())


def list_netns() -> list[str]:
    """Names under /run/netns (`ip netns add`), sorted; none when the directory is missing."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if not n.startswith("."))
    except FileNotFoundError:
        return []


def discover_netns() -> tuple[list[str], dict]:
    """Every other network namespace of the host (portscope.namespaces: processes and bind
    mounts, not only /run/netns): (specs, spec -> info labels). A spec is the `ip netns`
    name when there is one, else inode:N."""
    specs, info = [], {}
    for ns in discover().namespaces:
        label = "" if ns.current else ns.spec
        info[label] = {"inode": str(ns.inode),
                       "runtime": ns.container.runtime if ns.container else "",
                       "container": ns.container.id[:12] if ns.container else "",
                       "pod": ns.pod.uid if ns.pod else "", "qos": ns.pod.qos if ns.pod else ""}
        if not ns.current:
            specs.append(ns.spec)
    return specs, info


def egress_families(res: "node_egress.EgressResult", budget: "node_egress.Budget") -> list:
    """portscope_egress_* from one node-wide egress reading (portscope.egress.run): flows and
    flows / budget per destination for the top-N, the rest summed in one dst="other" series."""
    flows = GaugeMetricFamily("portscope_egress_destination_flows",
                              "Flows the NAT holds toward one destination from this node (all namespaces "
                              "and source addresses; top-N, dst=\"other\" sums the rest).",
                              labels=["proto", "dst", "dport"])
    ratio = GaugeMetricFamily("portscope_egress_destination_budget_ratio",
                              "Those flows / the NAT's per-destination budget (--cloud / --nat-budget); "
                              "1 means the NAT refuses new flows to it.", labels=["proto", "dst", "dport"])
    for d in res.destinations:
        lv = [d.proto, d.dst, str(d.dport)]
        flows.add_metric(lv, d.flows)
        ratio.add_metric(lv, d.utilization)
    if res.others["destinations"]:
        flows.add_metric(["", "other", ""], res.others["flows"])
    per = GaugeMetricFamily("portscope_egress_budget_flows", "The per-destination budget the ratios are computed with.")
    per.add_metric([], budget.per_destination)
    return [flows, ratio, per]


class PortscopeCollector:
    """prometheus_client custom collector: one consistent read per namespace per collect().

    targets: namespaces to read ("" or None = our own); all_netns: also every name under
    /run/netns, listed afresh at each scrape (containers come and go)."""

    def __init__(self, targets: Iterable[str | None] = (None,), *, all_netns: bool = False, top: int = DEFAULT_TOP,
                 reader: Callable[[str | None, int], Sample] = read_sample,
                 egress: "node_egress.Budget | None" = None) -> None:
        self.targets = tuple(targets) or (None,)
        self.all_netns = all_netns
        self.top = top
        self.reader = reader
        self.errors: Counter = Counter()          # netns label -> failed reads (monotonic)
        self.info: dict = {}                      # netns label -> container / pod labels
        self.egress = egress                      # egress.Budget: node-wide NAT series (docs/egress.md)
        self.keep: str | None = None              # netns label whose sample the web view reads
        # kept only while a page is open (asked recently): a table held from one collection
        # to the next pins its memory and keeps the process's RSS up (bench_exporter.py)
        self.keep_until = float("-inf")
        # (time the collection ended, that sample or why its read failed); None before any
        self.kept: tuple[float, Sample | Exception] | None = None
        self._lock = threading.Lock()

    def namespaces(self) -> list[str | None]:
        """The namespaces this scrape reads: the targets, then (with all_netns) every named one."""
        out = list(dict.fromkeys(self.targets))
        if self.all_netns:
            specs, self.info = discover_netns()
            out += [n for n in specs if n not in out]
        return out

    def describe(self) -> list:
        """No metrics at registration (prometheus_client calls this; see the comment)."""
        return []        # no describe-time read: registering must not take a snapshot

    def collect(self) -> list:
        """Every metric family of one scrape, from one read per namespace."""
        with self._lock:          # setns + 100k-socket reads: one at a time
            return self._collect()

    def _collect(self):
        samples, durations, ok = [], {}, {}
        keep = self.keep if time.monotonic() < self.keep_until else None
        kept: Sample | Exception = LookupError(f"netns {self.keep!r} is not read by this exporter")
        for ns in self.namespaces():
            label = ns or ""
            t0 = time.perf_counter()
            try:
                sample = self.reader(ns, self.top)
                if label == keep:
                    kept = sample
                elif sample.table is not None:     # not held through the other reads
                    sample = replace(sample, table=None, full=None)
                samples.append(sample)
                ok[label] = 1
            except Exception as e:           # a vanished namespace must not stop the others
                self.errors[label] += 1
                ok[label] = 0
                log.warning("netns %s: read failed: %s", label or "(own)", e)
                if label == keep:
                    kept = e
            durations[label] = time.perf_counter() - t0
        self.kept = (time.monotonic(), kept) if keep is not None else None
        nat_retain(durations)                # conntrack event watches of namespaces still read
        for label in self.errors:
            ok.setdefault(label, 0)
        nat = [(s.netns, s.nat) for s in samples if getattr(s, "nat", None) is not None]
        return (list(_families(samples)) + list(nat_families(nat, self.top))
                + list(self._self_metrics(durations, ok)) + self._info(samples) + self._egress())

    def _egress(self) -> list:
        if self.egress is None:
            return []
        try:
            return egress_families(node_egress.run(self.egress, top=self.top), self.egress)
        except Exception as e:               # egress must not take the port series down with it
            self.errors["egress"] += 1
            log.warning("egress: read failed: %s", e)
            return []

    def _info(self, samples) -> list:
        """portscope_netns_info: one series per namespace read, joining netns to its
        container and pod (labels bounded: one series per namespace, no per-socket data)."""
        if not self.all_netns:
            return []
        keys = ("inode", "runtime", "container", "pod", "qos")
        g = GaugeMetricFamily("portscope_netns_info", "Container and pod of each network namespace "
                              "read with --all-netns (value 1; join on netns).", labels=["netns", *keys])
        for s in samples:
            lab = self.info.get(s.netns)
            if lab is not None:
                g.add_metric([s.netns, *(lab[k] for k in keys)], 1)
        return [g]


    def _self_metrics(self, durations, ok):
        d = GaugeMetricFamily("portscope_scrape_duration_seconds",
                              "Seconds spent reading sockets and computing pressure for this scrape, per namespace.",
                              labels=["netns"])
        for ns, v in durations.items():
            d.add_metric([ns], v)
        yield d
        e = CounterMetricFamily("portscope_scrape_errors",
                                "Failed reads of a namespace's sockets or settings since the exporter started.",
                                labels=["netns"])
        for ns in sorted(set(self.errors) | set(durations)):
            e.add_metric([ns], self.errors.get(ns, 0))
        yield e
        s = GaugeMetricFamily("portscope_scrape_success",
                              "1 when this scrape read the namespace, 0 when the read failed.", labels=["netns"])
        for ns, v in ok.items():
            if ns in durations:
                s.add_metric([ns], v)
        yield s


def _g(name, doc, labels=()):
    return GaugeMetricFamily(name, doc, labels=["netns", *labels])


def _families(samples):
    rng = _g("portscope_ephemeral_range_ports", "Ports in the ephemeral (local) port range, both ends included.")
    low = _g("portscope_ephemeral_range_low_port", "First port of the ephemeral range.")
    high = _g("portscope_ephemeral_range_high_port", "Last port of the ephemeral range.")
    res = _g("portscope_reserved_ports", "Reserved ports (ip_local_reserved_ports), anywhere in 0-65535.")
    res_in = _g("portscope_reserved_ephemeral_ports", "Reserved ports inside the ephemeral range.")
    usable = _g("portscope_ephemeral_usable_ports",
                "Ports the kernel may hand out automatically: the range minus reserved ports.")
    socks = _g("portscope_sockets", "Sockets by protocol and state.", ["proto", "state"])
    in_use = _g("portscope_ephemeral_ports_in_use",
                "Distinct usable ephemeral ports held by sockets of this protocol.", ["proto", "scope"])
    util = _g("portscope_ephemeral_utilization_ratio",
              "Share (0..1) of the usable ephemeral ports held by any protocol.", ["scope"])
    d_use = _g("portscope_destination_ports_in_use",
               "Ephemeral ports used toward one destination (top-N; dst=\"other\" sums the rest).",
               ["proto", "src", "dst", "dport"])
    d_tw = _g("portscope_destination_time_wait_sockets",
              "Of those, sockets in TIME_WAIT (top-N destinations).", ["proto", "src", "dst", "dport"])
    d_cap = _g("portscope_destination_ports_capacity",
               "Ephemeral ports one destination could use in all (connect() may fail beyond).",
               ["proto", "src", "dst", "dport"])
    d_util = _g("portscope_destination_utilization_ratio",
                "in_use / capacity (0..1) for one destination; 1 means the next connect() may fail.",
                ["proto", "src", "dst", "dport"])
    dests = _g("portscope_destinations", "Distinct destinations using ephemeral ports (before top-N).")
    lis = _g("portscope_listeners_in_ephemeral_range",
             "TCP listening ports inside the usable ephemeral range (clients may take them first).")
    find = _g("portscope_findings", "Findings of the pressure analysis by severity.", ["severity"])
    for s in samples:
        ns, f, p = s.netns, s.facts, s.pressure
        rng.add_metric([ns], f.ephemeral.size)
        low.add_metric([ns], f.ephemeral.low)
        high.add_metric([ns], f.ephemeral.high)
        res.add_metric([ns], len(f.reserved))
        res_in.add_metric([ns], f.reserved.count_in(f.ephemeral))
        usable.add_metric([ns], p.global_.capacity)
        for (proto, state), n in sorted(s.sockets.items()):
            socks.add_metric([ns, proto, state], n)
        for proto, n in s.ports_in_use.items():
            in_use.add_metric([ns, proto, "global"], n)
        util.add_metric([ns, "global"], p.global_.utilization)
        for d in p.destinations:
            lv = [ns, d.proto, d.src, d.dst, str(d.dport)]
            d_use.add_metric(lv, d.in_use)
            d_tw.add_metric(lv, d.time_wait)
            d_cap.add_metric(lv, d.capacity)
            d_util.add_metric(lv, d.utilization)
        if p.others["destinations"]:
            d_use.add_metric([ns, "", "", OTHER, ""], p.others["in_use"])
        dests.add_metric([ns], p.destinations_total)
        lis.add_metric([ns], len(p.listener_ports))
        sev = Counter(x.severity for x in p.findings)
        for level in ("critical", "warning", "info"):
            find.add_metric([ns, level], sev.get(level, 0))
    return (rng, low, high, res, res_in, usable, socks, in_use, util,
            d_use, d_tw, d_cap, d_util, dests, lis, find)


class Exporter:
    """Registry + single-flight rendering: a scrape that arrives while a collection runs
    waits for that collection and gets its bytes (at most one collection in flight), and
    the web view reads the samples of the same collections when they are recent (reading())."""

    def __init__(self, collector: PortscopeCollector) -> None:
        self.collector = collector
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._cv = threading.Condition()
        self._running = False
        self._gen = 0
        self._last: bytes = b""
        self._ended = float("-inf")       # time.monotonic() when the last collection ended
        self._deliver: list = []          # waiting requests' waiting_response() writers

    def render(self, arrived: float | None = None) -> bytes:
        """The exposition text; concurrent callers share one collection.

        A caller arriving while a collection runs waits for it and gets its bytes. A caller
        whose request arrived (`arrived`, time.monotonic(); by default httpserver.arrival()
        of the request being served) before a collection that has ended since gets that
        collection's bytes at once: under load a request may take a while to be parsed, and
        without this it could miss the collection that was in flight when it came in and
        wait for the whole next one. Either way a scrape's numbers were read by a collection
        that was running or started while its request was on its way: at most one
        collection's duration older than the request (docs/exporter.md, "How a scrape works")."""
        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

        if arrived is None:
            arrived = arrival()
        with self._cv:
            if arrived is not None and self._gen and self._ended >= arrived:
                return self._last
            if self._running:
                gen = self._gen
                deliver = waiting_response()
                if deliver is not None:
                    self._deliver.append(deliver)
                while self._gen == gen:
                    self._cv.wait()
                return self._last
            self._running = True
        out = self._last
        try:
            out = generate_latest(self.registry)
        except Exception:     # the collector catches read errors; this is a bug, keep serving
            log.exception("rendering metrics failed")
        finally:
            with self._cv:
                self._last = out
                self._gen += 1
                self._ended = time.monotonic()
                self._running = False
                waiting, self._deliver = self._deliver, []
            # The waiting scrapes' responses go out from here, before they wake: woken, each
            # would wait for the interpreter lock behind the next collection to write its
            # own. They stay asleep until notify_all() (a Condition has no spurious wake-
            # ups); a request arriving meanwhile finds no collection running and starts one.
            for deliver in waiting:
                deliver(200, CONTENT_TYPE_LATEST, out)
            with self._cv:
                self._cv.notify_all()
        return out

    def reading(self, max_age: float = WEB_MAX_AGE) -> Reading | None:
        """The web view's namespace as the last collection read it (waiting for the one in
        flight, if any), or None when that collection ended more than max_age seconds ago:
        the page then reads for itself, the cheaper read of the range only. Raises what the
        collection's read of it raised."""
        self.collector.keep_until = time.monotonic() + WEB_OPEN_SECONDS
        with self._cv:
            gen = self._gen
            while self._running and self._gen == gen:
                self._cv.wait()
        kept = self.collector.kept
        if kept is None or time.monotonic() - kept[0] > max_age:
            return None
        s = kept[1]
        if isinstance(s, Exception):
            raise s
        full = s.full if s.full is not None else s.pressure   # a reader that keeps no full result
        return Reading(at=s.at or kept[0], wall=s.wall or time.time(), facts=cast("HostFacts", s.facts),
                       table=s.table, result=cast(PressureResult, full))

    def routes(self) -> dict:
        """path -> callable giving (status, content type, body), for httpserver."""
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        routes: dict = {"/metrics": lambda: (200, CONTENT_TYPE_LATEST, self.render())}
        # the web view (portscope.web) of the first namespace: "/" and "/api/pressure",
        # behind the same TLS and basic auth as /metrics (docs/web.md), served from the
        # collection that serves /metrics when one is recent or in flight
        first = self.collector.namespaces()[0]
        self.collector.keep = first or ""
        view = WebView(first, top=self.collector.top, source=lambda netns: self.reading() or read_now(netns))
        routes.update(view.routes())
        return routes


def write_textfile(path: str, data: bytes) -> None:
    """Atomic write for node_exporter's textfile collector (it reads *.prom only)."""
    atomic_write(path, data)


class TextfileErrors:
    """portscope_textfile_write_errors_total: failed textfile writes since start. The loop
    keeps retrying; the counter tells node_exporter's reader (once a write succeeds again)
    and `portscope exporter --json` that some were lost. Registered in textfile mode only."""

    def __init__(self) -> None:
        self.count = 0

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The one counter, for the registry."""
        c = CounterMetricFamily("portscope_textfile_write_errors",
                                "Textfile writes that failed (disk full, read-only, permission) since start.")
        c.add_metric([], self.count)
        yield c


def run_textfile(exporter: Exporter, path: str, interval: float, *, count: int | None = None,
                 stop: threading.Event | None = None, strict: bool = False) -> int:
    """Write every `interval` seconds (count: stop after that many tries). Returns writes.
    A failed write is logged, counted in portscope_textfile_write_errors_total and retried at
    the next interval; with `strict` (`--once`), the last failure is raised when no write
    succeeded, so cron or a systemd timer sees a non-zero exit."""
    stop = stop or threading.Event()
    errors = TextfileErrors()
    exporter.registry.register(errors)
    n = tries = 0
    last: Exception | None = None
    try:
        while not stop.is_set():
            t0 = time.monotonic()
            tries += 1
            try:
                write_textfile(path, exporter.render())
                n += 1
            except (OSError, PortscopeError) as e:   # atomic_write names the file and the cause
                errors.count += 1
                last = e
                if not (strict and count is not None and tries >= count):   # then it is the error line
                    log.warning("%s (write %d failed; %d failed in all; retrying)", e, tries, errors.count)
            if count is not None and tries >= count:
                break
            stop.wait(max(0.0, interval - (time.monotonic() - t0)))
    finally:
        exporter.registry.unregister(errors)
    if strict and n == 0 and last is not None:
        raise last
    return n
