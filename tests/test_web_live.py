"""The web view in a real browser: headless Chromium (Debian's package) loads the page from a
real `portscope exporter` running inside a private namespace with a known population, and
the rendered DOM is held to `portscope pressure --json` run in the same namespace.

Also: the page without JavaScript (server-side numbers), phone width and dark scheme, the
JavaScript and server renderings agreeing, 1,000 destinations, host strings that look like
markup, and the same basic auth / TLS as /metrics. Screenshots land in the test's tmp_path.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import pytest

from browser import CHROMIUM, Browser
from conftest import HAVE_IP, NEED_ROOT, ROOT, Netns, make_netns, remove_netns

PORTSCOPE = os.path.join(os.path.dirname(sys.executable), "portscope")
PORT = 9917
needs_browser = pytest.mark.skipif(not (ROOT and HAVE_IP and CHROMIUM),
                                   reason=NEED_ROOT + " and Debian's chromium (scripts/test.sh installs it)")
# every test here drives Chromium against a page served inside a private namespace
pytestmark = [needs_browser, pytest.mark.root, pytest.mark.netns, pytest.mark.live]

# A client with a process name that is markup (prctl PR_SET_NAME), 30 connections to one
# destination (the worst), a listener inside the range, 5 connections left in TIME_WAIT.
POPULATION = r"""
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, b"<script>", 0, 0, 0)          # PR_SET_NAME: /proc/PID/comm
keep = []
def listen(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(128); keep.append(s); return s
listen(5432); web = listen(8080); listen(40050)
for _ in range(30):
    keep.append(socket.create_connection(("127.0.0.1", 5432)))
for _ in range(5):
    c = socket.create_connection(("127.0.0.1", 8080)); a, _ = web.accept(); c.close(); a.close()
print("ready", flush=True)
sys.stdin.read()
"""


def populate(ns: Netns) -> subprocess.Popen:
    ns.sysctl("net.ipv4.ip_unprivileged_port_start", "1500")
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
    ns.sysctl("net.ipv4.ip_local_reserved_ports", "40090-40094")
    ns.sysctl("net.ipv4.tcp_tw_reuse", "0")
    p = ns.popen(sys.executable, "-c", POPULATION, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([p.stdout], [], [], 30)
    assert ready and p.stdout.readline().strip() == "ready", p.stderr.read()
    return p


def wait_port(port: int, proc: subprocess.Popen, ns: Netns | None = None) -> None:
    probe = ("import socket,sys\ntry: socket.create_connection(('127.0.0.1', %d), 1).close()\n"
             "except OSError: sys.exit(1)" % port)
    end = time.monotonic() + 20
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stderr.read()
        ok = (ns.python(probe, check=False).returncode == 0) if ns else _connects(port)
        if ok:
            return
        time.sleep(0.1)
    raise AssertionError("exporter did not start")


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def stop(p: subprocess.Popen) -> str:
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)
    return p.stderr.read() if p.stderr else ""


class Scene:
    def __init__(self, ns, url):
        self.ns, self.url = ns, url
        self.prefix = ["ip", "netns", "exec", ns.name]

    def pressure(self) -> dict:
        # inside the namespace, as the exporter runs: the same remedies (no `ip netns exec`)
        return json.loads(self.ns.run(PORTSCOPE, "pressure", "--json").stdout)


@pytest.fixture(scope="module")
def scene():
    ns = make_netns("psweb")
    procs = []
    try:
        procs.append(populate(ns))
        exp = ns.popen(PORTSCOPE, "exporter", "--listen", f"127.0.0.1:{PORT}",
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(exp)
        wait_port(PORT, exp, ns)
        yield Scene(ns, f"http://127.0.0.1:{PORT}/")
        assert "Traceback" not in stop(exp)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        remove_netns(ns)


def fmt_pct(x: float) -> str:
    import math
    n = math.floor(x * 1000 + 0.5)
    return f"{n // 10}.{n % 10}%"


ROW_OF = """(() => { const r = document.querySelector('#dest-rows tr%s'); const o = {};
  for (const td of r.querySelectorAll('[data-k]')) o[td.dataset.k] = td.textContent;
  o.dst = r.dataset.dst; o.dport = r.dataset.dport; o.proto = r.dataset.proto; o.src = r.dataset.src; return o; })()"""


def row_of(w: dict) -> str:
    """The page's row of destination `w`: after a second read the page sorts by forecast (the
    browser's own requests to the exporter may head the list), so look the row up by port."""
    return ROW_OF % f'[data-dport="{w["dport"]}"][data-dst="{w["dst"]}"]'

LEGEND = """[...document.querySelectorAll('#map-legend li')].map(li => [li.dataset.kind,
  li.dataset.low === undefined ? null : +li.dataset.low, li.dataset.high === undefined ? null : +li.dataset.high,
  li.textContent])"""
REMEDIES = """Object.fromEntries([...document.querySelectorAll('#findings li.finding')].map(li =>
  [li.dataset.id, li.querySelector('pre code').textContent]))"""


def expected_row(w: dict) -> dict:
    return {"in_use": f"{w['in_use']:,}", "time_wait": f"{w['time_wait']:,}", "capacity": f"{w['capacity']:,}",
            "utilization": fmt_pct(w["utilization"]), "dst": w["dst"], "dport": str(w["dport"]),
            "proto": w["proto"], "src": w["src"]}


def test_live_page_matches_pressure_json(scene, tmp_path):
    truth = scene.pressure()
    w = truth["destinations"][0]
    assert (w["dst"], w["dport"], w["in_use"]) == ("127.0.0.1", 5432, 30)      # the population's worst
    with Browser(prefix=scene.prefix) as b:
        page = b.page(width=1280, height=900)
        page.goto(scene.url)
        assert page.eval("document.body.dataset.rendered") == "1"
        row = page.eval(row_of(w))
        assert {k: row[k] for k in expected_row(w)} == expected_row(w)
        # the map: privileged boundary, IANA classes, the range, reservations, the listener
        legend = {k: (lo, hi, text) for k, lo, hi, text in page.eval(LEGEND)}
        assert legend["privileged"][:2] == (0, 1499)
        assert legend["iana-system"][:2] == (0, 1023) and legend["iana-dynamic"][:2] == (49152, 65535)
        assert legend["ephemeral"] == (40000, 40099, "Ephemeral range: 40000–40099 (100 ports)")
        assert legend["reserved"][2].startswith("Reserved ports: 40090-40094 (5 ports, 5 inside")
        assert legend["listeners"][2] == "Listeners inside the range: 40050"
        drawn = page.eval("[...document.querySelectorAll('#map rect[data-kind]')].map(r => "
                          "[r.dataset.kind, +r.dataset.low, +r.dataset.high])")
        assert ["ephemeral", 40000, 40099] in drawn and ["reserved", 40090, 40094] in drawn
        assert ["privileged", 0, 1499] in drawn
        assert page.eval("[...document.querySelectorAll('#map line.m-listener[data-port]')]"
                         ".map(l => +l.dataset.port)") == [40050]
        assert page.eval("document.querySelector('#map').getAttribute('role')") == "img"
        assert "40000–40099" in page.eval("document.querySelector('#map desc').textContent")
        # findings and their remedies, exactly as pressure prints them
        shown = page.eval(REMEDIES)
        want = {f["id"]: f["remedy"] for f in truth["findings"]}
        assert "listener-in-range" in shown and shown["listener-in-range"] == want["listener-in-range"]
        status = page.eval("document.querySelector('#status strong').textContent")
        sev = {f["severity"] for f in truth["findings"]}
        assert status == ("CRITICAL" if "critical" in sev else "WARNING" if "warning" in sev else "OK")
        page.screenshot(str(tmp_path / "web.png"))
        assert (tmp_path / "web.png").stat().st_size > 10_000
        # refreshed in place from /api/pressure (every 5 s), now with a forecast
        end = time.monotonic() + 30
        while page.eval("document.body.dataset.refreshes || '0'") == "0":
            assert time.monotonic() < end, "the page never refreshed"
            time.sleep(0.5)
        assert "forecast over the last read interval" in page.eval("document.querySelector('#dest-summary').textContent")
        assert page.eval("document.querySelector('#dest-rows tr [data-k=eta]').textContent")
        # every request: a GET to the page's own origin
        reqs = page.requests()
        assert reqs and {r["method"] for r in reqs} == {"GET"}
        assert {urlsplit(r["url"]).netloc for r in reqs} == {f"127.0.0.1:{PORT}"}
        assert {urlsplit(r["url"]).path for r in reqs} <= {"/", "/api/pressure"}


def test_keyboard_reaches_and_uses_the_copy_button(scene):
    with Browser(prefix=scene.prefix) as b:
        page = b.page()
        page.goto(scene.url)
        for _ in range(60):           # Tab through the page until a Copy button has the focus
            page.call("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Tab", "code": "Tab",
                                                 "windowsVirtualKeyCode": 9})
            page.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": "Tab", "code": "Tab",
                                                 "windowsVirtualKeyCode": 9})
            if page.eval("document.activeElement.classList.contains('copy')"):
                break
        else:
            raise AssertionError("no Copy button reachable with Tab")
        for t in ("keyDown", "keyUp"):
            page.call("Input.dispatchKeyEvent", {"type": t, "key": "Enter", "code": "Enter",
                                                 "windowsVirtualKeyCode": 13, **({"text": "\r"} if t == "keyDown" else {})})
        time.sleep(0.3)
        assert page.eval("document.activeElement.textContent") in ("Copied", "Select and copy")


def test_without_javascript_the_numbers_are_there(scene):
    truth = scene.pressure()
    with Browser(prefix=scene.prefix) as b:
        page = b.page(javascript=False)
        page.goto(scene.url)
        assert page.eval("document.body.dataset.rendered === undefined")      # page.js never ran
        w = truth["destinations"][0]
        row = page.eval(row_of(w))
        assert {k: row[k] for k in expected_row(w)} == expected_row(w)
        assert page.eval(REMEDIES)["listener-in-range"] == {f["id"]: f["remedy"] for f in truth["findings"]}[
            "listener-in-range"]
        assert page.eval("document.querySelectorAll('button.copy:not([hidden])').length") == 0


def test_phone_width_and_dark_scheme(scene, tmp_path):
    def luminance(css: str) -> float:
        r, g, b_ = (int(x) for x in css[css.index("(") + 1:css.index(")")].split(",")[:3])
        return (0.2126 * r + 0.7152 * g + 0.0722 * b_) / 255

    with Browser(prefix=scene.prefix) as b:
        phone = b.page(width=390, height=844, mobile=True, scheme="dark")
        phone.goto(scene.url)
        # nothing wider than the screen: wide tables scroll inside their own box
        assert phone.eval("document.documentElement.scrollWidth") <= 390
        assert luminance(phone.eval("getComputedStyle(document.body).backgroundColor")) < 0.2
        assert luminance(phone.eval("getComputedStyle(document.body).color")) > 0.7
        phone.screenshot(str(tmp_path / "phone-dark.png"))
        light = b.page(width=1280, height=900, scheme="light")
        light.goto(scene.url)
        assert luminance(light.eval("getComputedStyle(document.body).backgroundColor")) > 0.8


def report_file(args: list[str], path) -> str:
    p = subprocess.run([PORTSCOPE, "report", "--html", str(path), *args], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    return path.read_text()


TEXTS = ["#status", "#facts", "#map-legend", "#dest-summary", "#dest-rows", "#dest-others", "#findings",
         "#history-summary", "#proc-rows", "#map desc", "#history desc"]
TEXT_JS = "(%s).map(s => document.querySelector(s).textContent)" % json.dumps(TEXTS)


def test_javascript_and_server_render_the_same(scene, tmp_path):
    f = tmp_path / "report.html"
    report_file(["--netns", scene.ns.name], f)
    with Browser() as b:
        off = b.page(javascript=False)
        off.goto(f.as_uri())
        on = b.page()
        on.goto(f.as_uri())
        assert on.eval("document.body.dataset.rendered") == "1"
        assert on.eval(TEXT_JS) == off.eval(TEXT_JS)
        # a static file asks for nothing after it loaded
        assert [r["url"] for r in on.requests()] == [f.as_uri()]


def test_thousand_destinations_render_quickly(tmp_path):
    from portscope.web import render_html
    doc = _thousand()
    f = tmp_path / "big.html"
    f.write_text(render_html(doc))
    with Browser() as b:
        page = b.page()
        t = time.monotonic()
        page.goto(f.as_uri())
        load_s = time.monotonic() - t
        assert page.eval("document.querySelectorAll('#dest-rows tr').length") == 1000
        ms = float(page.eval("document.body.dataset.renderMs"))
        # the browser's own clock: parsing + the script's full re-render of 1,000 rows
        nav = page.eval("performance.getEntriesByType('navigation')[0].loadEventEnd")
        assert ms < 500, f"page.js rendered 1,000 destinations in {ms} ms"
        assert nav < 5000 and load_s < 10, (nav, load_s)


def _thousand() -> dict:
    """A real document (this host) with 1,000 synthetic destinations in it."""
    from portscope.datapath import measure as gather
    from portscope.web import build_document
    doc = build_document(gather(None, top=5), source="report")
    doc["destinations"] = [
        {"proto": "tcp", "src": "192.0.2.1", "dst": f"198.51.100.{i % 250}", "dport": 1000 + i,
         "in_use": 1000 - i, "time_wait": (1000 - i) // 2, "capacity": 28232,
         "utilization": (1000 - i) / 28232, "bind_held": 0}
        for i in range(1000)]
    doc["destinations_total"] = 1000
    return doc


# --- host strings that look like markup

EVIL_NS = "ps<script><img src=x onerror=pwned=1>"


@pytest.fixture
def evil_ns():
    ns = Netns(f"{EVIL_NS}-{uuid.uuid4().hex[:6]}")
    subprocess.run(["ip", "netns", "add", ns.name], check=True)
    subprocess.run(["ip", "-n", ns.name, "link", "set", "lo", "up"], check=True)
    p = None
    try:
        p = populate(ns)
        yield ns
    finally:
        if p is not None:
            p.kill()
            p.wait(10)
        remove_netns(ns)


SAFE = """({scripts: document.scripts.length, imgs: document.images.length, pwned: typeof window.pwned,
  netns: document.querySelector('#facts [data-k=netns] dd').textContent,
  procs: [...document.querySelectorAll('#proc-rows th')].map(t => t.textContent),
  findings: document.querySelector('#findings').textContent})"""


def test_markup_in_process_and_namespace_names_renders_as_text(evil_ns, tmp_path):
    f = tmp_path / "evil.html"
    html = report_file(["--netns", evil_ns.name], f)
    assert html.count("<script") == 2 and "<img" not in html      # the page's own two, nothing else
    port = _free_port()
    exp = subprocess.Popen([PORTSCOPE, "exporter", "--listen", f"127.0.0.1:{port}", "--netns", evil_ns.name],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port, exp)
        with Browser() as b:
            for url, procs in ((f.as_uri(), True), (f"http://127.0.0.1:{port}/", False)):
                page = b.page()
                page.goto(url)
                time.sleep(0.2)
                got = page.eval(SAFE)
                assert got["scripts"] == 2 and got["imgs"] == 0 and got["pwned"] == "undefined", (url, got)
                assert got["netns"] == evil_ns.name, url                 # the name, as text
                if procs:        # report --html attributes sockets to processes
                    assert "<script>" in got["procs"]
                    assert "(<script>)" in got["findings"]           # process-dominant names it
    finally:
        assert "Traceback" not in stop(exp)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the same authentication as /metrics

@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl to make a test certificate")
def test_page_and_endpoint_need_the_same_auth_as_metrics(netns, tmp_path):
    import bcrypt
    from test_exporter_web import get
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(tmp_path / "c.pem")], check=True, capture_output=True, timeout=60)
    h = bcrypt.hashpw(b"pw-17", bcrypt.gensalt(rounds=6)).decode()
    cfg = tmp_path / "web.yml"
    cfg.write_text(f"tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\nbasic_auth_users:\n  ann: '{h}'\n")
    port = _free_port()
    exp = subprocess.Popen([PORTSCOPE, "exporter", "--listen", f"127.0.0.1:{port}", "--web-config", str(cfg),
                            "--netns", netns.name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port, exp)
        ca = tmp_path / "c.pem"
        for path in ("/metrics", "/", "/api/pressure"):
            for user, pw in ((None, None), ("ann", "wrong"), ("bob", "pw-17")):
                st, hdr, body = get(port, path, user=user, pw=pw, tls_ca=ca)
                assert st == 401 and b"portscope_" not in body and b"<html" not in body, (path, user)
            st, hdr, body = get(port, path, user="ann", pw="pw-17", tls_ca=ca)
            assert st == 200, path
        st, hdr, body = get(port, "/api/pressure", user="ann", pw="pw-17", tls_ca=ca)
        assert hdr["Content-Type"] == "application/json" and json.loads(body)["netns"] == netns.name
        st, hdr, body = get(port, "/", user="ann", pw="pw-17", tls_ca=ca)
        assert hdr["Content-Type"].startswith("text/html") and b'id="destinations"' in body
    finally:
        assert "Traceback" not in stop(exp)
