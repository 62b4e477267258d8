"""The exporter's collector, textfile mode, CLI and a real Prometheus scraping it.

Sockets are built in a private namespace (the `netns` fixture) with a narrow ephemeral
range; every value is compared with `ss`, sysctl, or portscope.pressure on the same
namespace (the library the exporter must agree with).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import PORTSCOPE, free_port, remove_netns, stop_process, wait_http
from portscope.exporter import Exporter, PortscopeCollector, run_textfile


# A: connections to 8080, B: to 9090, C: bind(0)-then-connect to 9090, one listener
# inside the range (40010), one connected UDP socket, one TCP socket bound to 40020 and
# never used (a bound-only socket: invisible to this ss, yet it holds its port).
A, B, C = 30, 12, 5
HOLDER = r"""
import socket, sys
keep = []
def listen(port):
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", port)); l.listen(512); keep.append(l); return l
la, lb, lr = listen(8080), listen(9090), listen(40010)
b = socket.socket(); b.bind(("127.0.0.1", 40020)); keep.append(b)
for i in range(%d):
    keep.append(socket.create_connection(("127.0.0.1", 8080))); keep.append(la.accept()[0])
for i in range(%d):
    keep.append(socket.create_connection(("127.0.0.1", 9090))); keep.append(lb.accept()[0])
for i in range(%d):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.connect(("127.0.0.1", 9090))
    keep.append(s); keep.append(lb.accept()[0])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect(("127.0.0.1", 5353)); keep.append(u)
print("READY", flush=True)
sys.stdin.read()
""" % (A, B, C)


def _samples(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _value(samples, name, **labels):
    hits = [v for lab, v in samples.get(name, []) if all(lab.get(k) == str(x) for k, x in labels.items())]
    assert len(hits) == 1, (name, labels, samples.get(name))
    return hits[0]


@pytest.fixture
def loaded(netns):
    """The namespace with HOLDER's sockets; the holder is always stopped."""
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "40090-40094,8000")
    p = netns.start(HOLDER, ready="READY", stdin=subprocess.PIPE)
    try:
        yield netns
    finally:
        p.stdin.close()                  # the holder's cue to close its sockets and end
        stop_process(p)


def _ss_count(ns, *args) -> int:
    return len(ns.ss(*args))


def _library(ns_name, top=None):
    from portscope.host import facts
    from portscope.pressure import analyze, read_sockets
    f = facts(ns_name)
    return f, analyze(f, read_sockets(f, ns_name), top=top)


def test_collector_agrees_with_ss_sysctl_and_pressure(loaded):
    text = Exporter(PortscopeCollector([loaded.name], top=20)).render().decode()
    s = _samples(text)
    ns = loaded.name
    # settings, from sysctl in the namespace
    lo, hi = map(int, loaded.sysctl("net.ipv4.ip_local_port_range").split())
    assert (lo, hi) == (40000, 40099)
    assert _value(s, "portscope_ephemeral_range_ports", netns=ns) == hi - lo + 1
    assert _value(s, "portscope_ephemeral_range_low_port", netns=ns) == lo
    assert _value(s, "portscope_reserved_ports", netns=ns) == 6
    assert _value(s, "portscope_reserved_ephemeral_ports", netns=ns) == 5
    assert _value(s, "portscope_ephemeral_usable_ports", netns=ns) == 95
    # socket counts, from ss (iproute2 6.1 cannot list bound-only sockets: the +1)
    tcp = sum(v for lab, v in s["portscope_sockets"] if lab["netns"] == ns and lab["proto"] == "tcp") - 1
    udp = sum(v for lab, v in s["portscope_sockets"] if lab["netns"] == ns and lab["proto"] == "udp")
    assert tcp == _ss_count(loaded, "-tan") == 3 + 2 * (A + B + C)
    assert udp == _ss_count(loaded, "-uan") == 1
    assert _value(s, "portscope_sockets", netns=ns, proto="tcp", state="ESTABLISHED") == \
        _ss_count(loaded, "-tn", "state", "established")
    assert _value(s, "portscope_sockets", netns=ns, proto="tcp", state="LISTEN") == 3
    # per destination: ss for in_use, the library for capacity and utilization
    for dport, n in ((8080, A), (9090, B + C)):
        assert _value(s, "portscope_destination_ports_in_use", netns=ns, dst="127.0.0.1", dport=dport) == n == \
            _ss_count(loaded, "-tn", "state", "established", "dst", f"127.0.0.1:{dport}")
    _, res = _library(ns)
    assert res.destinations
    for d in res.destinations:
        lab = dict(netns=ns, proto=d.proto, src=d.src, dst=d.dst, dport=d.dport)
        assert _value(s, "portscope_destination_ports_in_use", **lab) == d.in_use
        assert _value(s, "portscope_destination_ports_capacity", **lab) == d.capacity
        assert _value(s, "portscope_destination_utilization_ratio", **lab) == pytest.approx(d.utilization)
        assert _value(s, "portscope_destination_time_wait_sockets", **lab) == d.time_wait
    # the C bind-before-connect sockets and the listener hold their ports for everyone
    d8080 = res.destination("127.0.0.1", 8080)
    assert d8080.capacity == 95 - C - 1 - 1   # bind-held: the 5 bind(0) ports, listener 40010, bound 40020
    assert _value(s, "portscope_listeners_in_ephemeral_range", netns=ns) == 1 == len(res.listener_ports)
    assert _value(s, "portscope_ephemeral_utilization_ratio", netns=ns, scope="global") == \
        pytest.approx(res.global_.utilization)
    # distinct ports in the usable pool per protocol, from ss's local ports
    ports = set()
    for line in loaded.run("ss", "-tanH").stdout.splitlines():
        p = int(line.split()[3].rsplit(":", 1)[1])
        if 40000 <= p <= 40099 and not 40090 <= p <= 40094:
            ports.add(p)
    ports.add(40020)
    assert _value(s, "portscope_ephemeral_ports_in_use", netns=ns, proto="tcp", scope="global") == len(ports)
    assert _value(s, "portscope_sockets", netns=ns, proto="tcp", state="CLOSE") == 1   # sock_diag reports bound-only TCP as CLOSE
    assert _value(s, "portscope_ephemeral_ports_in_use", netns=ns, proto="udp", scope="global") == 1
    assert _value(s, "portscope_scrape_errors_total", netns=ns) == 0
    assert _value(s, "portscope_scrape_success", netns=ns) == 1
    assert _value(s, "portscope_scrape_duration_seconds", netns=ns) > 0
    # every family has HELP text
    for fam in text_string_to_metric_families(text):
        assert fam.documentation, fam.name


def test_top_n_keeps_the_worst_and_sums_the_rest(loaded):
    s = _samples(Exporter(PortscopeCollector([loaded.name], top=1)).render().decode())
    rows = [(lab, v) for lab, v in s["portscope_destination_ports_in_use"] if lab["netns"] == loaded.name]
    _, full = _library(loaded.name)
    worst, rest = full.destinations[0], full.destinations[1:]
    assert len(rows) == 2
    assert _value(s, "portscope_destination_ports_in_use", netns=loaded.name, dst=worst.dst,
                  dport=worst.dport) == worst.in_use
    assert _value(s, "portscope_destination_ports_in_use", netns=loaded.name, dst="other") == \
        sum(d.in_use for d in rest) > 0
    assert _value(s, "portscope_destinations", netns=loaded.name) == len(full.destinations) == 3
    assert len(s["portscope_destination_ports_capacity"]) == 1


def test_vanished_namespace_counts_an_error_and_others_still_served(netns_factory, netns, caplog):
    gone = netns_factory()
    exp = Exporter(PortscopeCollector([netns.name, gone.name]))
    s = _samples(exp.render().decode())
    assert _value(s, "portscope_scrape_success", netns=gone.name) == 1
    remove_netns(gone)
    for n in (1, 2):
        s = _samples(exp.render().decode())
        assert _value(s, "portscope_scrape_errors_total", netns=gone.name) == n
        assert _value(s, "portscope_scrape_success", netns=gone.name) == 0
        assert _value(s, "portscope_scrape_errors_total", netns=netns.name) == 0
        assert _value(s, "portscope_ephemeral_range_ports", netns=netns.name) > 0
        assert not [lab for lab, _ in s["portscope_ephemeral_range_ports"] if lab["netns"] == gone.name]
    assert any(gone.name in r.getMessage() and "read failed" in r.getMessage() for r in caplog.records)


def test_all_netns_lists_namespaces_at_each_scrape(netns_factory):
    a = netns_factory()
    col = PortscopeCollector([None], all_netns=True)
    assert a.name in col.namespaces() and col.namespaces()[0] is None
    s = _samples(Exporter(col).render().decode())
    assert _value(s, "portscope_ephemeral_range_ports", netns=a.name) > 0
    assert _value(s, "portscope_ephemeral_range_ports", netns="") > 0
    remove_netns(a)
    assert a.name not in col.namespaces()


def test_concurrent_scrapes_share_one_collection():
    calls = []

    def slow_reader(ns, top):
        calls.append(ns)
        time.sleep(0.3)
        raise OSError("no sockets today")          # an error path: must be shared too

    exp = Exporter(PortscopeCollector([None], reader=slow_reader))
    out = []
    ts = [threading.Thread(target=lambda: out.append(exp.render())) for _ in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert len(out) == 20 and len(set(out)) <= 2
    assert 1 <= len(calls) <= 2
    assert b'portscope_scrape_errors_total{netns=""}' in out[0]


def test_waiting_scrapes_get_whole_responses_written_by_the_collection(monkeypatch):
    """Scrapes that wait for a collection get their responses written by the collecting
    thread before they wake (httpserver.waiting_response): each response whole and exactly
    once, also when the client's small receive buffer takes only part of it at once (the
    request's own thread writes the rest), on a kept-alive connection that then serves a
    second request, next to a HEAD, which its own thread answers."""
    import http.client
    import socket

    from prometheus_client import exposition

    from portscope import httpserver

    big = b"# filler line of an exposition\n" * 100_000      # 3.1 MB
    started = threading.Event()

    def slow_latest(registry):
        started.set()
        time.sleep(0.6)
        return big
    monkeypatch.setattr(exposition, "generate_latest", slow_latest)
    handed = []
    real = httpserver.waiting_response

    def counted():
        d = real()
        handed.append(d is not None)
        return d
    monkeypatch.setattr("portscope.exporter.waiting_response", counted)
    exp = Exporter(PortscopeCollector([None], reader=lambda ns, top: None))
    srv = httpserver.serve("127.0.0.1:0", exp.routes())
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    got: dict = {}

    def scrape(key, method="GET", rcvbuf=None, again=False):
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(30)
        s.connect(("127.0.0.1", port))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.sock = s
        out = []
        for _ in range(2 if again else 1):
            c.request(method, "/metrics")
            r = c.getresponse()
            out.append((r.status, r.getheader("Content-Type"), int(r.getheader("Content-Length")), r.read(),
                        r.getheaders()))
        c.close()
        got[key] = out

    try:
        first = threading.Thread(target=scrape, args=("first",))
        first.start()
        assert started.wait(10)
        waiting = [threading.Thread(target=scrape, args=(i,)) for i in range(8)]
        waiting += [threading.Thread(target=scrape, args=("small", "GET", 4096)),
                    threading.Thread(target=scrape, args=("kept", "GET", None, True)),
                    threading.Thread(target=scrape, args=("head", "HEAD"))]
        for t in waiting:
            t.start()
        for t in [first, *waiting]:
            t.join(30)
        assert len(got) == 12, sorted(got, key=str)
        # the collecting thread's head is the one send_response() writes, Date aside
        normal = [(k, v) for k, v in got["first"][0][4] if k != "Date"]
        assert [k for k, _ in normal] == ["Server", "Content-Type", "Content-Length"]
        for key in range(8):
            assert [(k, v) for k, v in got[key][0][4] if k != "Date"] == normal
            assert [k for k, _ in got[key][0][4]].count("Date") == 1
        for key, responses in got.items():
            for status, ctype, length, body, _ in responses:
                assert status == 200 and ctype.startswith("text/plain") and length == len(big), key
                assert body == (b"" if key == "head" else big), key
        assert len(got["kept"]) == 2          # the connection stayed usable after it
        # the 10 waiting GETs were handed to the collection (the HEAD and the first not)
        assert sum(handed) >= 10
    finally:
        srv.shutdown()
        srv.server_close()


def test_textfile_once_is_atomic_and_parses(loaded, cli, tmp_path):
    path = tmp_path / "portscope.prom"
    path.write_text("old\n")
    code, out, err = cli("exporter", "--netns", loaded.name, "--textfile", str(path), "--once")
    assert code == 0, err
    s = _samples(path.read_text())
    assert _value(s, "portscope_ephemeral_range_ports", netns=loaded.name) == 100
    assert os.listdir(tmp_path) == ["portscope.prom"]          # no temp file left behind
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_textfile_interval_rewrites(netns, tmp_path):
    path = tmp_path / "p.prom"
    seen = []
    exp = Exporter(PortscopeCollector([netns.name]))
    orig = exp.render

    def render():
        b = orig()
        seen.append(b)
        return b
    exp.render = render
    t0 = time.monotonic()
    assert run_textfile(exp, str(path), 0.3, count=3) == 3
    assert time.monotonic() - t0 >= 0.55
    assert path.read_bytes() == seen[-1]


def test_textfile_unwritable_directory_is_logged_not_fatal(netns, tmp_path, caplog):
    exp = Exporter(PortscopeCollector([netns.name]))
    assert run_textfile(exp, str(tmp_path / "missing" / "p.prom"), 0.1, count=2) == 0
    assert any("cannot write" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("args, msg", [
    (["--top", "-1"], "--top must be"),
    (["--interval", "0"], "--interval must be"),
    (["--once"], "--once needs --textfile"),
    (["--netns", "pstest-does-not-exist"], "does not exist"),
    (["--listen", "localhost:9917"], "is not an IP address"),
    (["--listen", "127.0.0.1:70000"], "--listen port"),
    (["--listen", "127.0.0.1"], "expected ADDR:PORT"),
    (["--textfile", "/nonexistent-dir/x.prom"], "does not exist"),
    (["--web-config", "/etc/hostname", "--json"], "--web-config applies to the HTTP server only"),
    (["--web-config", "/etc/hostname", "--textfile", "/tmp/x.prom"], "--web-config applies"),
])
def test_bad_input_is_one_line_exit_2(cli, args, msg):
    code, out, err = cli("exporter", *args)
    assert code == 2
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_all_netns_refuses_netns(cli, netns_factory):
    a, b = netns_factory(), netns_factory()
    # both existing namespaces: refused for the combination, not for a typo
    for args in (("exporter", "--all-netns", "--netns", a.name, "--json"),
                 ("--netns", a.name, "exporter", "--all-netns", "--json")):
        code, out, err = cli(*args)
        assert code == 2 and out == "", args
        assert "--all-netns cannot be combined with --netns" in err and err.count("\n") == 1, args
    # the global --netns and the exporter's own must not silently disagree either
    code, out, err = cli("--netns", a.name, "exporter", "--netns", b.name, "--json")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"--netns {a.name} before the command and --netns {b.name} after it" in err
    # the same namespace twice is one namespace
    code, out, err = cli("--netns", a.name, "exporter", "--netns", a.name, "--json")
    assert code == 0, err
    assert [x["labels"] for x in json.loads(out)["portscope_ephemeral_range_ports"]] == [{"netns": a.name}]


def test_json_is_one_collection(loaded, cli):
    code, out, err = cli("exporter", "--netns", loaded.name, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["portscope_ephemeral_range_ports"] == [{"labels": {"netns": loaded.name}, "value": 100.0}]
    assert any(x["labels"].get("dport") == "8080" and x["value"] == A
               for x in d["portscope_destination_ports_in_use"])


# --- a real Prometheus ---------------------------------------------------------------

def promql(base: str, q: str) -> list:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    with urllib.request.urlopen(url, timeout=5) as r:
        d = json.load(r)
    assert d["status"] == "success", d
    return d["data"]["result"]


def promql_wait(base: str, q: str, ok=bool, timeout: float = 30) -> list:
    """Query until `ok(rows)` holds: on a busy machine Prometheus stores a scrape's samples
    a while after the first series of it became queryable. Bounded; a clear failure."""
    end = time.monotonic() + timeout
    rows: list = []
    while True:
        rows = promql(base, q)
        if ok(rows) or time.monotonic() > end:
            break
        time.sleep(0.3)
    assert ok(rows), f"after {timeout:g} s Prometheus still answers {q!r} with {rows!r}"
    return rows


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("prometheus"), reason="Prometheus not installed (scripts/test.sh installs it)")
def test_real_prometheus_scrapes_library_values(loaded, netns_factory, tmp_path):
    ns = loaded.name
    gone = netns_factory()                    # deleted mid-run: counted, logged, rest served
    eport, pport = free_port(), free_port()
    exporter = subprocess.Popen([PORTSCOPE, "exporter", "--listen", f"127.0.0.1:{eport}",
                                 "--netns", ns, "--netns", gone.name],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    prom = None
    try:
        wait_http(f"http://127.0.0.1:{eport}/", proc=exporter)
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: portscope\n    static_configs: [{{targets: ['127.0.0.1:{eport}']}}]\n")
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{pport}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
        base = f"http://127.0.0.1:{pport}"
        wait_http(f"{base}/-/ready", 30, proc=prom)
        _, res = _library(ns)
        want = {(d.proto, d.dst, str(d.dport)): float(d.in_use) for d in res.destinations}

        def as_map(rows):
            return {(r["metric"]["proto"], r["metric"]["dst"], r["metric"]["dport"]): float(r["value"][1])
                    for r in rows}

        promql_wait(base, f'portscope_destination_ports_in_use{{netns="{ns}"}}', lambda rows: as_map(rows) == want)
        cap = promql_wait(base, f'portscope_destination_ports_capacity{{netns="{ns}",dport="8080"}}')
        assert float(cap[0]["value"][1]) == res.destination("127.0.0.1", 8080).capacity
        util = promql_wait(base, f'portscope_ephemeral_utilization_ratio{{netns="{ns}"}}')
        assert float(util[0]["value"][1]) == pytest.approx(res.global_.utilization)
        assert promql_wait(base, 'up{job="portscope"}')[0]["value"][1] == "1"
        assert promql_wait(base, f'portscope_scrape_errors_total{{netns="{ns}"}}')[0]["value"][1] == "0"
        assert promql_wait(base, f'portscope_scrape_success{{netns="{gone.name}"}}')[0]["value"][1] == "1"
        remove_netns(gone)
        promql_wait(base, f'portscope_scrape_errors_total{{netns="{gone.name}"}} > 0', timeout=20)
        time.sleep(1.5)                       # a later scrape: still up, still serving ns
        assert promql_wait(base, 'up{job="portscope"}')[0]["value"][1] == "1"
        promql_wait(base, f'portscope_scrape_success{{netns="{gone.name}"}} == 0')
        assert promql_wait(base, f'portscope_destination_ports_in_use{{netns="{ns}",dport="8080"}}'
                           )[0]["value"][1] == str(A)
    finally:
        if prom is not None:
            stop_process(prom)
        stop_process(exporter)
    err = exporter.stderr.read()
    assert "Traceback" not in err
    assert f"netns {gone.name}: read failed" in err


def test_web_view_is_served_from_the_scrapes_collections(loaded, monkeypatch):
    """While a page is open, the page and /api/pressure read the sample of the last (or
    in-flight) collection: no socket read of their own while it is younger than
    WEB_MAX_AGE; after that, a read of the range of their own. The document equals
    `pressure --json` of the namespace (the in-range read of the CLI, the exporter's full
    read). No page open: the collector keeps no table."""
    import portscope.exporter as exporter_mod
    from portscope.exporter import read_sample
    calls, own = [], []

    def reader(ns, top):
        calls.append(ns)
        return read_sample(ns, top)

    real_read_now = exporter_mod.read_now
    monkeypatch.setattr(exporter_mod, "read_now", lambda ns: own.append(ns) or real_read_now(ns))
    exp = Exporter(PortscopeCollector([loaded.name], top=20, reader=reader))
    routes = exp.routes()
    exp.render()
    assert exp.collector.kept is None                        # no page open: nothing held

    def page_read(path="/api/pressure", wait=True):
        if wait:
            time.sleep(1.1)                                  # past the page's own 1 s reuse
        st, _, body = routes[path]()
        assert st == 200
        return body

    page_read()                                              # the page opens: a read of its own
    assert len(own) == 1 and len(calls) == 1
    # past the page's own reuse (and the forecast's 0.05 s between reads) before the scrape,
    # so that both page reads below come well inside the sample's WEB_MAX_AGE (2.5 s): with
    # the wait after the scrape instead, the second came 2.2 s + the first's time after it
    time.sleep(1.1)
    exp.render()                                             # a scrape: its sample is kept
    assert exp.collector.kept is not None
    page_read("/", wait=False)
    doc = json.loads(page_read())
    assert len(own) == 1 and len(calls) == 2                 # served from the scrape's read
    _, lib = _library(loaded.name, top=20)
    want = lib.to_json()
    assert doc["global"] == want["global"] and len(doc["destinations"]) == len(want["destinations"])
    assert [{k: d[k] for k in w} for d, w in zip(doc["destinations"], want["destinations"])] == \
        want["destinations"]                                 # plus the forecast's keys
    assert doc["listener_ports"] == want["listener_ports"]
    assert doc["forecast"]["samples"] == 2 and doc["forecast"]["new_connections"] == 0
    assert len(doc["history"]["points"]) == 2                # two readings, however often asked

    # once the sample is too old, the page reads the range for itself (no collection)
    at, sample = exp.collector.kept
    exp.collector.kept = (at - 60, sample)
    doc = json.loads(page_read())
    assert len(own) == 2 and len(calls) == 2
    assert len(doc["history"]["points"]) == 3
    assert {d["dport"]: d["in_use"] for d in doc["destinations"]} == \
        {d["dport"]: d["in_use"] for d in want["destinations"]}
    # pages and scrapes together: every request answered, scrapes single-flight
    out: list = []
    fns = [routes["/api/pressure"], routes["/metrics"]] * 10
    # all arrive together (a thread started late would come after a fast collection ended
    # and rightly start another: that is timing, not single flight)
    gate = threading.Barrier(len(fns))
    ts = [threading.Thread(target=lambda f=f: (gate.wait(10), out.append(f()))) for f in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert len(out) == 20 and {o[0] for o in out} == {200}
    assert 3 <= len(calls) <= 4


def test_web_view_shows_a_failed_read_as_503(netns_factory):
    gone = netns_factory()
    exp = Exporter(PortscopeCollector([gone.name]))
    routes = exp.routes()
    remove_netns(gone)
    st, _, body = routes["/api/pressure"]()
    assert st == 503 and body.startswith(b"portscope: cannot read: ")
    assert b'portscope_scrape_success{netns="%s"} 0.0' % gone.name.encode() in exp.render()


def test_socket_counts_and_ports_in_use_match_a_row_by_row_count():
    from collections import Counter

    from test_pressure_model import EST, LISTEN, TW, T, facts

    from portscope.exporter import ports_in_use, socket_counts
    from portscope.pressure import usable_ports
    from portscope.sockets.table import PROTO_CODES, PROTO_NAMES, STATE_NAMES
    tcp, udp, udplite = PROTO_CODES["tcp"], PROTO_CODES["udp"], PROTO_CODES["udplite"]
    f = facts(40000, 40019, reserved="40005")
    t = T()
    t.connect(range(40000, 40012), state=EST)
    t.connect(range(40000, 40004), state=TW, dport=81)       # ports shared by two destinations
    t.add(tcp, LISTEN, 40015)
    t.add(tcp, EST, 8080, rport=50000)                       # outside the range
    t.add(udp, 7, 40001)
    t.add(udp, 1, 40002, rport=53)
    t.add(udplite, 7, 40019)
    tab = t.t
    want = Counter((PROTO_NAMES[p], STATE_NAMES[s]) for p, s in zip(tab.proto, tab.state))
    assert socket_counts(tab) == dict(want)
    u = usable_ports(f.ephemeral, f.reserved)
    assert ports_in_use(tab, u) == {"tcp": 11 + 1, "udp": 2, "udplite": 1}   # 40005 reserved
    # protocols interleaved (no longer one run each), a request socket's state 12 beside
    # SYN_RECV's 3 (one name), and codes no table names: the same counts row by row
    t.add(tcp, 12, 40016, rport=50001)
    t.add(tcp, 3, 40017, rport=50002)
    t.add(udp, 1, 40003, rport=54)
    t.add(tcp, 99, 40018, rport=50003)
    t.add(250, 7, 40004)
    tab = t.t
    pb = tab.proto.tobytes()
    assert pb.rfind(tcp) - pb.find(tcp) + 1 > pb.count(tcp)            # TCP rows are not one run
    want = Counter((PROTO_NAMES.get(p, str(p)), STATE_NAMES.get(s, str(s))) for p, s in zip(tab.proto, tab.state))
    assert want[("tcp", "SYN_RECV")] == 2 and want[("tcp", "99")] == 1 and want[("250", "CLOSE")] == 1
    assert socket_counts(tab) == dict(want)
    assert ports_in_use(tab, u) == {"tcp": 11 + 1 + 3, "udp": 3, "udplite": 1}


def test_a_request_that_arrived_during_a_collection_gets_it_even_if_parsed_late():
    """Under load a request may reach render() only after the collection that was running
    when it arrived has ended: it gets that collection, not a wait for a whole new one; a
    request that arrives after the end gets a new collection."""
    calls = []

    def slow_reader(ns, top):
        calls.append(time.monotonic())
        time.sleep(0.3)
        raise OSError("no sockets today")

    exp = Exporter(PortscopeCollector([None], reader=slow_reader))
    got: list = []
    first = threading.Thread(target=lambda: got.append(exp.render()))
    first.start()
    time.sleep(0.1)
    arrived = time.monotonic()                   # came in while the collection ran ...
    first.join(10)
    t = time.monotonic()
    out = exp.render(arrived=arrived)            # ... and is served only now
    assert time.monotonic() - t < 0.1 and len(calls) == 1 and out == got[0]
    exp.render(arrived=time.monotonic())         # arrived after it ended: a new collection
    assert len(calls) == 2
