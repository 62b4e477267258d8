"""The web document and the server-side page without a browser: the history bound, single
flight, hooks, escaping of host strings, and `report --html`'s file and error lines.
(The browser side: test_web_live.py.)"""
from __future__ import annotations

import json
import threading
import time
from html.parser import HTMLParser

import pytest

from portscope.web import HOOKS, WebView, build_document, register, render_html
from portscope.web import data as webdata
from portscope.web import hooks as webhooks

EVIL = '</script><script>alert(1)</script><!-- & "quoted" \'single\' \u2028'


@pytest.fixture(scope="module")
def result():
    """A real PressureResult of this test process's own namespace (read only)."""
    from portscope.datapath import measure as gather
    return gather(None, top=5)


class Scan(HTMLParser):
    """Element names, the text of every element, and the embedded JSON."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []
        self.data = None
        self._in_data = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_data = tag == "script" and ("type", "application/json") in attrs

    def handle_data(self, d):
        if self._in_data:
            self.data = d
        self.text.append(d)

    def handle_endtag(self, tag):
        self._in_data = False


def scan(page: str) -> Scan:
    s = Scan()
    s.feed(page)
    return s


def test_document_is_pressure_json_plus_the_page_keys(result):
    doc = build_document(result, source="report", t=1000.0)
    base = result.to_json()
    assert {k: doc[k] for k in base} == base
    assert doc["status"] in ("ok", "warning", "critical")
    assert [c["name"] for c in doc["map"]["iana_classes"]] == ["system", "user", "dynamic"]
    assert doc["map"]["reserved_ranges"] == [{"low": r.low, "high": r.high} for r in result.reserved.ranges]
    assert doc["history"]["points"][0]["in_use"] == result.global_.in_use
    json.dumps(doc, allow_nan=False)


def test_history_is_bounded_and_reads_are_shared(result):
    reads = []

    def reader(netns, prev, top):
        reads.append(time.monotonic())
        time.sleep(0.05)                 # long enough for the threads below to pile up
        return result, None

    v = WebView(None, history=10, min_age=0.0, reader=reader)
    for _ in range(50):
        v.document()
    d = v.document()
    assert len(reads) == 51 and len(d["history"]["points"]) == 10 == d["history"]["max_points"]
    assert len(v.history) == 10
    # 20 concurrent requests inside the reuse window: one read between them
    v = WebView(None, min_age=5.0, reader=reader)
    reads.clear()
    ts = [threading.Thread(target=v.document) for _ in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(reads) == 1 and len(v.history) == 1


def test_read_failure_is_a_503_line_not_a_crash():
    def reader(netns, prev, top):
        raise OSError("namespace gone")
    routes = WebView("nope", reader=reader).routes()
    for path in ("/", "/api/pressure"):
        st, ctype, body = routes[path]()
        assert st == 503 and body == b"portscope: cannot read: namespace gone\n"


def test_hooks_render_when_present_and_fail_softly(result, monkeypatch):
    monkeypatch.setattr(webhooks, "PROVIDERS", {})
    with pytest.raises(ValueError):
        register("bogus", lambda ns, res: None)
    register("conntrack", lambda ns, res: {"title": "conntrack " + EVIL, "summary": "s",
                                           "items": [{"label": EVIL, "value": 7, "ratio": 0.5}]})
    register("failures", lambda ns, res: 1 / 0)
    register("nat_ranges", lambda ns, res: [{"low": 61000, "high": 65535}])
    assert set(webhooks.PROVIDERS) == set(HOOKS)
    doc = build_document(result, source="report")
    assert "failures" not in doc and doc["map"]["nat_ranges"] == [{"low": 61000, "high": 65535}]
    page = render_html(doc)
    s = scan(page)
    assert 'id="hook-conntrack"' in page and 'id="hook-failures"' not in page
    assert EVIL in "".join(s.text) and s.tags.count("script") == 2
    assert 'data-kind="nat" data-low="61000" data-high="65535"' in page
    assert "NAT-held ports: 61000–65535" in page


def test_host_strings_are_text_and_the_data_round_trips(result):
    doc = build_document(result, source="exporter", refresh=5)
    doc["netns"] = EVIL
    doc["destinations"] = [{"proto": "tcp", "src": EVIL, "dst": "2001:db8::1", "dport": 443, "in_use": 3,
                            "time_wait": 1, "capacity": 100, "utilization": 0.03, "bind_held": 0}]
    doc["findings"] = [{"id": "process-dominant", "severity": "warning", "message": EVIL, "remedy": EVIL,
                        "evidence": {}}]
    doc["processes"] = [{"pid": 1, "command": EVIL, "in_use": 3}]
    page = render_html(doc, api="api/pressure")
    s = scan(page)
    # only the page's own two scripts; the data block parses back to the very document
    assert s.tags.count("script") == 2 and "<!--" not in page.split("<body", 1)[1]
    assert json.loads(s.data) == doc
    assert "".join(s.text).count(EVIL) >= 4                      # netns, source, message, remedy, process
    assert "[2001:db8::1]:443" in page


def test_formatting_rounds_halves_up_as_the_script_does():
    from portscope.web.render import duration, pct
    assert [pct(x) for x in (0, 0.0625, 0.00049, 0.9995, 1)] == ["0.0%", "6.3%", "0.0%", "100.0%", "100.0%"]
    assert [duration(x) for x in (None, 0.4, 59.5, 119.4, 600, 7200, 9000)] == \
        ["–", "0 s", "60 s", "119 s", "10 min", "2.0 h", "2.5 h"]


def test_report_html_writes_the_page(cli, tmp_path):
    f = tmp_path / "r.html"
    code, out, err = cli("report", "--html", str(f), "--json")
    assert code == 0, err
    rep = json.loads(out)
    page = f.read_text()
    s = scan(page)
    doc = json.loads(s.data)
    assert doc["source"] == "report" and doc["range"] == {k: rep["range"][k] for k in ("low", "high", "size")}
    assert f'Ephemeral range: {rep["range"]["low"]}–{rep["range"]["high"]}' in page
    assert "http://" not in page and "https://" not in page       # nothing fetched from anywhere


@pytest.mark.parametrize("target, code, msg", [
    ("nodir/r.html", 2, "directory"),
    (".", 2, "is a directory"),
])
def test_report_html_bad_target_is_one_line(cli, tmp_path, monkeypatch, target, code, msg):
    monkeypatch.chdir(tmp_path)
    c, out, err = cli("report", "--html", target)
    assert c == code and out == "" and err.startswith("portscope: error: ") and "--html" in err and msg in err
    assert len(err.strip().splitlines()) == 1
