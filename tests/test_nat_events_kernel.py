"""The event-kept SNAT use against the kernel: after churn (new flows, closes into
TIME_WAIT, expiries, UDP) it equals a fresh full dump and `conntrack -L --src-nat` in the
same namespace; lost events (ENOBUFS) cause a counted resync and a right tally; the
exporter's SNAT series equal `nat --json`'s. Everything lives in namespaces the tests
make and remove; the sysctls written are that namespace's own."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

from conftest import needs_netns

pytestmark = pytest.mark.skipif(shutil.which("conntrack") is None or shutil.which("iptables") is None,
                                reason="needs Debian's conntrack and iptables (scripts/test.sh installs them)")

# a listener on 5001 and, per stdin line, a batch of flows: "open N" (ESTABLISHED, kept),
# "tw N" (closed by the client first: TIME_WAIT in conntrack), "close N" (N kept ones
# closed), "udp N" (datagrams to 5002, one flow each), "udp6 N" (the same over IPv6, to 5003)
CHURN = r"""
import socket, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 5001)); l.listen(256)
keep, held = [], []
print("ready", flush=True)
for line in sys.stdin:
    cmd, n = line.split()
    for _ in range(int(n)):
        if cmd in ("udp", "udp6"):
            six = cmd == "udp6"
            u = socket.socket(socket.AF_INET6 if six else socket.AF_INET, socket.SOCK_DGRAM)
            u.sendto(b"x", ("::1", 5003) if six else ("127.0.0.1", 5002))
            held.append(u)                 # kept open: the next one cannot take its port (a new flow each)
            continue
        if cmd == "close":
            if keep:
                c, a = keep.pop(0); c.close(); a.close()
            continue
        c = socket.create_connection(("127.0.0.1", 5001), timeout=5); a = l.accept()[0]
        if cmd == "tw":
            c.close(); a.close()
        else:
            keep.append((c, a))
    print("done", flush=True)
"""


def _setup(ns) -> subprocess.Popen:
    # the clients' own ports stay clear of the NAT ranges: a client port equal to a NAT port
    # in use would make its SYN look like a reply of that entry (same address, loopback)
    ns.sysctl("net.ipv4.ip_local_port_range", "50000 60999")
    ns.run("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-p", "tcp", "--dport", "5001",
           "-j", "SNAT", "--to-source", "127.0.0.1:41000-41199")
    ns.run("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-p", "udp", "--dport", "5002",
           "-j", "SNAT", "--to-source", "127.0.0.1:42000-42199")
    ns.run("ip6tables", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-p", "udp", "--dport", "5003",
           "-j", "SNAT", "--to-source", "[::1]:43000-43199")
    return ns.start(CHURN, stdin=subprocess.PIPE)


def _do(p: subprocess.Popen, *cmds: str) -> None:
    for cmd in cmds:
        p.stdin.write(cmd + "\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "done"


def _summary(dests) -> list:
    return sorted((d.proto, d.nat_ip, d.dst, d.dport, d.in_use, d.time_wait, d.capacity, d.low, d.high)
                  for d in dests)


def _listed(ns) -> list:
    """`conntrack -L --src-nat`: per (proto, NAT IP, destination, port) the distinct NAT ports and TIME_WAITs."""
    truth: dict = {}
    for line in ns.run("conntrack", "-L", "--src-nat").stdout.splitlines():
        kv = re.findall(r"(src|dst|sport|dport)=(\S+)", line)
        if len(kv) < 8:
            continue
        reply = dict(kv[4:8])
        t = truth.setdefault((line.split()[0], reply["dst"], reply["src"], int(reply["sport"])), [set(), 0])
        t[0].add(int(reply["dport"]))
        t[1] += " TIME_WAIT " in line
    return sorted((*k, len(v[0]), v[1]) for k, v in truth.items())


def _compare(ns, w, rules) -> list:
    """The watch's tally, a fresh dump's and conntrack's, read back to back (a quiet table).
    The watch reads first: entries that expired and that the kernel's garbage collector
    has not removed yet must not count (a dump would remove them on its way)."""
    from portscope.nat import count_snat
    from portscope.netns import entered
    with entered(ns.name):
        kept = _summary(w.tally().destinations(rules))     # first: no other dump has reaped expired entries
        dumped = _summary(count_snat().destinations(rules))
        listed = _listed(ns)
    assert kept == dumped
    assert [d[:6] for d in kept] == listed
    return kept


def _rules(ns):
    from portscope.nat import rules
    from portscope.netns import entered
    with entered(ns.name):
        return rules.read_rules().rules


@needs_netns
def test_event_kept_tally_equals_a_dump_and_conntrack_after_churn(netns):
    from portscope.nat.events import SnatWatch
    from portscope.netns import entered
    p = _setup(netns)
    rules = _rules(netns)
    try:
        # short timeouts inside this namespace: TIME_WAIT and UDP entries expire during the test
        netns.sysctl("net.netfilter.nf_conntrack_tcp_timeout_time_wait", "3")
        netns.sysctl("net.netfilter.nf_conntrack_udp_timeout", "3")
        _do(p, "udp 5", "tw 3")               # older than the subscription: they send no events
        w = SnatWatch(refresh=0.5)
        with entered(netns.name):
            first = w.tally()
        assert first.rows == first.unconfirmed == 8 and dict(w.resyncs) == {"start": 1}
        netns.sysctl("net.netfilter.nf_conntrack_tcp_timeout_time_wait", "1")
        netns.sysctl("net.netfilter.nf_conntrack_udp_timeout", "1")
        _do(p, "open 10", "tw 12", "udp 9", "close 4")
        time.sleep(3.5)                        # the short-lived entries expire ...
        _compare(netns, w, rules)              # ... and the kernel reaps them: DESTROY events
        assert w.book is not None and w.book.unconfirmed == 0 and w.resyncs["unconfirmed"] >= 1
        # timeouts long enough for the comparison, then more churn, followed by events only
        netns.sysctl("net.netfilter.nf_conntrack_tcp_timeout_time_wait", "120")
        netns.sysctl("net.netfilter.nf_conntrack_udp_timeout", "60")
        dumps = sum(w.resyncs.values())
        _do(p, "open 7", "tw 9", "udp 11", "close 5", "udp6 6")
        kept = _compare(netns, w, rules)
        assert sum(w.resyncs.values()) == dumps and w.mode == "events"
        assert w.book.events > 50 and w.book.unconfirmed == 0
        tcp = [d for d in kept if d[0] == "tcp"][0]
        udp = [d for d in kept if d[0] == "udp"][0]
        assert tcp[4:] == (8 + 9 + 5, 9 + 5, 200, 41000, 41199)    # 13 kept - 5 closed + TIME_WAITs
        assert udp[4:] == (11, 0, 200, 42000, 42199)                # phase A's UDP entries expired
        udp6 = [d for d in kept if d[1] == "::1"][0]
        assert udp6[0] == "udp" and udp6[4:] == (6, 0, 200, 43000, 43199)
    finally:
        p.kill()


@needs_netns
def test_lost_events_cause_a_counted_resync_and_a_right_tally(netns):
    from portscope.nat.events import SnatWatch
    from portscope.netns import entered
    p = _setup(netns)
    rules = _rules(netns)
    try:
        w = SnatWatch(rcvbuf=4096)            # the kernel's minimum: a few events fit
        with entered(netns.name):
            w.tally()
        _do(p, "udp 60", "tw 20")
        kept = _compare(netns, w, rules)
        assert w.resyncs["overflow"] >= 1
        assert [d[4] for d in kept if d[0] == "udp"] == [60]
    finally:
        p.kill()


@needs_netns
def test_events_off_in_the_namespace_falls_back_to_a_dump(netns):
    from portscope.nat.events import SnatWatch
    from portscope.nat.snat import SnatTally
    from portscope.netns import entered
    p = _setup(netns)
    rules = _rules(netns)
    try:
        netns.sysctl("net.netfilter.nf_conntrack_events", "0")
        _do(p, "open 3", "udp 4")
        w = SnatWatch()
        with entered(netns.name):
            assert isinstance(w.tally(), SnatTally)
        assert w.mode == "dump" and w.sock is None
        _compare(netns, w, rules)
    finally:
        p.kill()


@needs_netns
def test_exporter_snat_series_equal_nat_json_after_churn(netns):
    from prometheus_client.parser import text_string_to_metric_families

    from portscope.exporter import Exporter, PortscopeCollector
    p = _setup(netns)
    try:
        exp = Exporter(PortscopeCollector([netns.name], top=50))
        exp.render()                                  # subscribes and dumps once
        _do(p, "open 6", "tw 8", "udp 5", "close 2")
        text = exp.render().decode()
        r = subprocess.run([sys.executable, "-m", "portscope", "nat", "--json", "--top", "0", "--netns", netns.name],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        want = {(d["proto"], d["nat_ip"], d["dst"], str(d["dport"])): (d["in_use"], d["capacity"])
                for d in json.loads(r.stdout)["snat"]}
        got: dict = {}
        series: dict = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                series.setdefault(s.name, []).append(s)
        for name, at in (("portscope_snat_destination_ports_in_use", 0), ("portscope_snat_destination_ports_capacity", 1)):
            for s in series[name]:
                key = (s.labels["proto"], s.labels["nat_ip"], s.labels["dst"], s.labels["dport"])
                got.setdefault(key, [0, 0])[at] = int(s.value)
        assert {k: tuple(v) for k, v in got.items()} == want
        assert want[("tcp", "127.0.0.1", "127.0.0.1", "5001")] == (4 + 8 + 2, 200)
        resyncs = {s.labels["reason"]: s.value for s in series["portscope_conntrack_event_resyncs_total"]}
        assert resyncs == {"start": 1, "overflow": 0, "unconfirmed": 0}
        assert [s.value for s in series["portscope_conntrack_events_tracking"]] == [1]
    finally:
        p.kill()


@needs_netns
def test_entries_expired_but_not_yet_collected_do_not_count(netns):
    """A dump never shows an expired entry (it removes it on its way); the kernel's garbage
    collector may take seconds more, and only then sends the DESTROY. The watch's reaping
    walk makes the two agree (without it, on Linux 6.18 here, 19-20 of these 20 expired
    UDP entries were still counted 2.2 s after they expired)."""
    from portscope.nat.events import SnatWatch
    from portscope.netns import entered
    p = _setup(netns)
    try:
        netns.sysctl("net.netfilter.nf_conntrack_udp_timeout", "1")
        w = SnatWatch(refresh=3600)
        with entered(netns.name):
            w.tally()
        _do(p, "udp 20", "open 3")
        time.sleep(2.2)
        with entered(netns.name):
            kept = w.tally().rows
        assert dict(w.resyncs) == {"start": 1}          # events only, no dump since
        assert kept == 3                                 # the ESTABLISHED flows; the UDP ones expired
    finally:
        p.kill()


@needs_netns
def test_background_follower_keeps_a_small_buffer_from_overflowing(netns):
    """The same paced churn (batches of 10 TIME_WAIT flows, about 70 events each, 50 ms
    apart) against a 64 KiB buffer: read only at tally() it overflows and resyncs; with
    the exporter's follower thread it keeps up, and both books equal a dump."""
    from portscope.nat.events import SnatWatch
    from portscope.netns import entered
    p = _setup(netns)
    rules = _rules(netns)
    try:
        counts = {}
        for background in (False, True):
            w = SnatWatch(rcvbuf=65536, background=background)
            with entered(netns.name):
                w.tally()
            for _ in range(15):
                _do(p, "tw 10")
                time.sleep(0.05)
            time.sleep(0.5)
            _compare(netns, w, rules)
            counts[background] = w.resyncs["overflow"]
            w.close()
        assert counts[False] >= 1 and counts[True] == 0, counts
    finally:
        p.kill()


@needs_netns
def test_background_follower_reaps_expired_entries_inside_the_namespace(netns):
    """With the follower, the walk that removes expired entries runs between scrapes
    (through a socket opened in the namespace, though the thread is not in it): once
    the entries expired, the book alone, read without tally(), equals a dump."""
    from portscope.nat import count_snat
    from portscope.nat.events import REAP_EVERY, SnatWatch
    from portscope.netns import entered
    p = _setup(netns)
    rules = _rules(netns)
    netns.sysctl("net.netfilter.nf_conntrack_tcp_timeout_time_wait", "4")
    netns.sysctl("net.netfilter.nf_conntrack_udp_timeout", "4")
    w = SnatWatch(background=True)
    try:
        with entered(netns.name):
            w.tally()
        _do(p, "open 4", "tw 6", "udp 5")
        deadline, seen = time.monotonic() + 2, 0
        while time.monotonic() < deadline and seen < 15:    # the follower applies them as they come
            time.sleep(0.05)
            with w._lock:
                seen = sum(d[4] for d in _summary(w.book.destinations(rules)))
        assert seen == 15
        reaped = w._reaped_at
        time.sleep(4 + REAP_EVERY + 1.5)
        with w._lock:
            after = _summary(w.book.destinations(rules))
        assert w._reaped_at > reaped
        with entered(netns.name):
            dumped = _summary(count_snat().destinations(rules))
        assert after == dumped and [(d[0], d[4], d[5]) for d in after] == [("tcp", 4, 0)]
    finally:
        w.close()
        p.kill()


@needs_netns
def test_background_follower_pays_the_dumps_between_scrapes(netns):
    """Entries older than the subscription (no events) and a burst that overflows a tiny
    buffer: the follower dumps for both itself, between scrapes, and the tally() after
    them dumps nothing and equals a fresh dump and conntrack."""
    from portscope.nat.events import SnatWatch
    from portscope.netns import entered
    p = _setup(netns)
    rules = _rules(netns)
    w = SnatWatch(rcvbuf=4096, refresh=1.0, background=True)
    try:
        _do(p, "udp 5", "open 2")                      # before the subscription: unconfirmed
        with entered(netns.name):
            w.tally()
        assert w.resyncs == {"start": 1} and w.book.unconfirmed == 7
        _do(p, "udp 60", "tw 20")                      # far more events than 4 KiB hold
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (w.resyncs["overflow"] and w.resyncs["unconfirmed"]):
            time.sleep(0.1)
        assert w.resyncs["overflow"] >= 1 and w.resyncs["unconfirmed"] >= 1, w.resyncs
        time.sleep(0.5)
        main, by_scrape, real = threading.get_ident(), [], w._resync

        def spy(reason):
            if threading.get_ident() == main:
                by_scrape.append(reason)
            return real(reason)
        w._resync = spy
        kept = _compare(netns, w, rules)               # tally() first: it must not dump
        assert by_scrape == []
        assert [d[4] for d in kept if d[0] == "udp" and d[3] == 5002] == [65]
    finally:
        w.close()
        p.kill()
