"""The exporter's failure and TIME_WAIT metrics, live: a real exporter process scraped over
HTTP while a client in a private namespace fails; counts equal the client's own tally, stay
exact across processes that exit (their kernel map rows are folded into the exporter), and
the TIME_WAIT metrics equal nstat's absolute values."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

from conftest import needs_netns
from prometheus_client.parser import text_string_to_metric_families
from test_observe_cli import PORTSCOPE, _attached
from test_observe_kernel import CLIENT, LISTENER, PORT, _nstat

pytestmark = needs_netns


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def _scrape(port: int) -> dict:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _failures(m: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in m.items() if n == name and want <= set(lab))


def test_exporter_counts_failures_across_scrapes_and_exited_processes(netns):
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40009")
    lst = netns.popen(sys.executable, "-c", LISTENER, "4", stdout=subprocess.PIPE, text=True)
    assert lst.stdout.readline().strip() == "up"
    port = _free_port()
    exp = subprocess.Popen([PORTSCOPE, "exporter", "--listen", f"127.0.0.1:{port}", "--netns", netns.name,
                            "--bpf"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 20
        while not _attached(exp.pid):
            assert exp.poll() is None and time.monotonic() < end, exp.stderr.read()
            time.sleep(0.05)
        while True:                  # attached before it listens: wait for the server too
            try:
                m0 = _scrape(port)
                break
            except OSError:
                assert exp.poll() is None and time.monotonic() < end, exp.stderr.read()
                time.sleep(0.05)
        lab = dict(netns=netns.name, errno="EADDRNOTAVAIL", comm="ps-client", dst="127.0.0.1", dport=str(PORT))
        assert _failures(m0, "portscope_connect_failures_total", **lab) == 0
        assert m0[("portscope_failure_counter_loaded", (("netns", ""),))] == 1
        got = []
        for _ in range(2):          # two processes, both exit: the second scrape folds the first's rows
            got.append(json.loads(netns.python(CLIENT, "ps-client", "tcp-connect", "30", str(PORT), "4", "-").stdout))
            # the first client's 10 ports stay in FIN_WAIT2 after it exits: the second gets none
            m = _scrape(port)
            want = sum(g["fails"].get("EADDRNOTAVAIL", 0) for g in got)
            assert _failures(m, "portscope_connect_failures_total", **lab) == want
        assert got[0]["fails"] == {"EADDRNOTAVAIL": 20} and got[1]["fails"] == {"EADDRNOTAVAIL": 30}
        m2 = _scrape(port)          # a third scrape: the folded rows still count once
        assert _failures(m2, "portscope_connect_failures_total", **lab) == 50
        ns = _nstat(netns)
        assert m2[("portscope_tcp_timewait_recycled_total", (("netns", netns.name),))] == ns["TWRecycled"]
        assert m2[("portscope_tcp_timewait_overflow_total", (("netns", netns.name),))] == ns["TCPTimeWaitOverflow"]
        # the clients exited with connections the listener never accepted: their sockets wait
        # in FIN_WAIT2 as timewait sockets, which sockstat counts as tw and ss shows as FIN-WAIT-2
        tw = len(netns.run("ss", "-Htan", "state", "time-wait", "state", "fin-wait-2").stdout.splitlines())
        assert m2[("portscope_tcp_timewait_sockets", (("netns", netns.name),))] == tw == 10
    finally:
        exp.terminate()
        exp.wait(20)
        lst.kill()


def test_cardinality_is_bounded_and_counters_monotonic(netns):
    """top=2: the first two label sets keep their series, the rest sum into `other`; totals
    are exact and no series ever goes down."""
    from portscope.observe.metrics import ObserveCollector
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40009")
    lst = netns.popen(sys.executable, "-c", LISTENER, "4", stdout=subprocess.PIPE, text=True)
    assert lst.stdout.readline().strip() == "up"
    col = ObserveCollector([netns.name], top=2, bpf=True)
    try:
        before: dict = {}
        total = 0
        for comm in ("ps-a", "ps-b", "ps-c", "ps-d"):
            got = json.loads(netns.python(CLIENT, comm, "tcp-connect", "30", str(PORT), "4", "-").stdout)
            total += got["fails"]["EADDRNOTAVAIL"]
            fam = {f.name: f for f in col.collect()}["portscope_connect_failures"]
            now = {tuple(sorted(s.labels.items())): s.value for s in fam.samples if s.name.endswith("_total")}
            assert all(now.get(k, 0) >= v for k, v in before.items())
            before = now
        # every client has exited: their rows left the kernel map for the exporter's memory
        assert col.counter.counts.keys() == [] and sum(col.folded.values()) == total
        comms = sorted(dict(k)["comm"] for k in now)
        assert comms == ["other", "ps-a", "ps-b"]
        assert sum(now.values()) == total
        other = [v for k, v in now.items() if dict(k)["comm"] == "other"]
        assert other == [30 + 30]          # ps-c and ps-d found every port in TIME_WAIT
    finally:
        col.close()
        lst.kill()
