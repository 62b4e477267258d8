"""The page as HTML, rendered here from the web document so it shows the numbers without
JavaScript; page.js renders the same markup from the same document (the browser tests
compare the two) and refreshes it in place on the live page.

Every string from the host (addresses, process and namespace names, finding messages and
remedies, hook panels) goes through esc(); the embedded JSON is made inert for the HTML
parser (embed_json). The page's Content-Security-Policy allows only its own inline script
(by hash), its inline styles and GET requests to its own origin.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
import time
from importlib import resources

from .hooks import HOOKS

MAP_W = 1000.0
PORTS = 65536
MAX_LISTED = 20          # listener ports named in the legend
PANEL_KEYS = tuple(k for k in HOOKS if k != "nat_ranges")


def esc(s: object) -> str:
    """Text for HTML content or a quoted attribute (quotes escaped too)."""
    return html.escape("" if s is None else str(s), quote=True)


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


# --- formatting: the same arithmetic as page.js, so both renderings agree to the character


def num(n: object) -> str:
    """An int with thousands separators (as page.js writes it); anything else as escaped text."""
    return f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else esc(n)


def pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal, halves rounded up (as page.js does)."""
    if x is None:
        return "–"
    n = math.floor(x * 1000 + 0.5)
    return f"{n // 10}.{n % 10}%"


def duration(s: float | None) -> str:
    """Seconds to exhaustion as the page shows them: s, min, or h with one decimal."""
    if s is None:
        return "–"
    r = math.floor(s + 0.5)
    if r < 120:
        return f"{r} s"
    if r < 7200:
        return f"{math.floor(r / 60 + 0.5)} min"
    h = math.floor(r / 360 + 0.5)
    return f"{h // 10}.{h % 10} h"


def clock(t: float) -> str:
    """Unix time as HH:MM:SS UTC."""
    return time.strftime("%H:%M:%S", time.gmtime(math.floor(t))) + " UTC"


def span(lo: int, hi: int) -> str:
    """'LOW–HIGH', or one port."""
    return f"{lo}–{hi}" if lo != hi else f"{lo}"


def dest_label(d: dict) -> str:
    """'src → dst:dport', an IPv6 destination in brackets."""
    dst = f"[{d['dst']}]" if ":" in d["dst"] else d["dst"]
    return f"{d['src']} → {dst}:{d['dport']}"


# --- sections


def render_status(doc: dict) -> str:
    """The health badge's content."""
    st = doc["status"]
    n = len(doc["findings"])
    return (f'<span class="st-label">Health</span> <strong>{esc(st.upper())}</strong> '
            f'<span class="st-count">{n} finding{"" if n == 1 else "s"}</span>')


def render_facts(doc: dict) -> str:
    """The facts list (dl rows)."""
    g, r = doc["global"], doc["range"]
    rows = [
        ("netns", "Namespace", doc["netns"] or "(this host's own)"),
        ("range", "Ephemeral range", f"{r['low']}–{r['high']} ({num(r['size'])} ports)"),
        ("reserved", "Reserved", doc["reserved"] or "none"),
        ("privileged", "Privileged below", str(doc["unprivileged_port_start"])),
        ("tw_reuse", "tcp_tw_reuse", "n/a" if doc["tcp_tw_reuse"] is None else str(doc["tcp_tw_reuse"])),
        ("global", "Global use", f"{num(g['in_use'])} of {num(g['capacity'])} ports ({pct(g['utilization'])})"),
        ("time_wait", "TIME_WAIT", f"{num(g['time_wait'])} sockets"),
        ("updated", "Updated", clock(doc["time"])),
    ]
    return "".join(f'<div data-k="{k}"><dt>{esc(label)}</dt><dd>{esc(v)}</dd></div>' for k, label, v in rows)


def _x(p: float) -> float:
    return p / PORTS * MAP_W


def _rect(kind: str, lo: int, hi: int, y: float, h: float, label: str) -> str:
    x, w = _x(lo), max(_x(hi + 1) - _x(lo), 1.0)
    return (f'<rect class="m-{kind}" data-kind="{kind}" data-low="{lo}" data-high="{hi}" '
            f'x="{x:.2f}" y="{y}" width="{w:.2f}" height="{h}"><title>{esc(label)}</title></rect>')


def map_items(doc: dict) -> list[tuple[str, int | None, int | None, str]]:
    """(kind, low, high, text) of every map entry: the legend and the drawing both use it."""
    r, m = doc["range"], doc["map"]
    start = doc["unprivileged_port_start"]
    out: list[tuple[str, int | None, int | None, str]] = [("privileged", 0, start - 1, f"Privileged ports: {span(0, start - 1)} (binding needs root "
                                          f"or CAP_NET_BIND_SERVICE)")
           if start > 0 else ("privileged", None, None, "Privileged ports: none")]
    for c in m["iana_classes"]:
        out.append((f"iana-{c['name']}", c["low"], c["high"],
                    f"IANA {c['name']} ports: {span(c['low'], c['high'])}"))
    out.append(("ephemeral", r["low"], r["high"],
                f"Ephemeral range: {span(r['low'], r['high'])} ({num(r['size'])} ports)"))
    res = m["reserved_ranges"]
    inside = doc["global"]["reserved_in_range"]
    total = sum(x["high"] - x["low"] + 1 for x in res)
    out.append(("reserved", None, None, f"Reserved ports: {doc['reserved']} ({num(total)} ports, "
                                        f"{num(inside)} inside the range)" if res else "Reserved ports: none"))
    lp = doc["listener_ports"]
    listed = ", ".join(str(p) for p in lp[:MAX_LISTED]) + (f" and {len(lp) - MAX_LISTED} more"
                                                           if len(lp) > MAX_LISTED else "")
    out.append(("listeners", None, None, f"Listeners inside the range: {listed}" if lp
                else "Listeners inside the range: none"))
    nat = m.get("nat_ranges")
    if nat is not None:
        out.append(("nat", None, None, "NAT-held ports: " + (", ".join(span(x["low"], x["high"]) for x in nat)
                                                             or "none")))
    return out


def render_legend(doc: dict) -> str:
    """The map's legend: its text alternative, one li per map item."""
    out = []
    for kind, lo, hi, text in map_items(doc):
        attrs = f' data-low="{lo}" data-high="{hi}"' if lo is not None else ""
        out.append(f'<li data-kind="{kind}"{attrs}><span class="sw m-{kind}" aria-hidden="true"></span>{esc(text)}</li>')
    return "".join(out)


def render_map(doc: dict) -> str:
    """The SVG's children: 0-65535 to scale, then the ephemeral range zoomed in."""
    r, m = doc["range"], doc["map"]
    start = doc["unprivileged_port_start"]
    parts = ['<title id="map-title">Port map 0–65535</title>',
             f'<desc id="map-desc">{esc("; ".join(t for _, _, _, t in map_items(doc)))}</desc>']
    for c in m["iana_classes"]:
        parts.append(_rect(f"iana-{c['name']}", c["low"], c["high"], 0, 22,
                           f"IANA {c['name']} {span(c['low'], c['high'])}"))
        if c["high"] - c["low"] > 4000:
            parts.append(f'<text class="m-lbl" x="{_x(c["low"]) + 6:.2f}" y="17">{esc(c["name"])}</text>')
    parts.append('<rect class="m-track" x="0" y="30" width="1000" height="40"/>')
    if start > 0:
        parts.append(_rect("privileged", 0, start - 1, 30, 40, f"privileged {span(0, start - 1)}"))
    parts.append(_rect("ephemeral", r["low"], r["high"], 30, 40, f"ephemeral range {span(r['low'], r['high'])}"))
    for x in m["reserved_ranges"]:
        parts.append(_rect("reserved", x["low"], x["high"], 30, 40, f"reserved {span(x['low'], x['high'])}"))
    for x in m.get("nat_ranges") or ():
        parts.append(_rect("nat", x["low"], x["high"], 30, 40, f"NAT-held {span(x['low'], x['high'])}"))
    for p in doc["listener_ports"]:
        parts.append(f'<line class="m-listener" data-port="{p}" x1="{_x(p + 0.5):.2f}" x2="{_x(p + 0.5):.2f}" '
                     f'y1="25" y2="75"><title>listener {p}</title></line>')
    bx = _x(start)
    parts.append(f'<line class="m-boundary" x1="{bx:.2f}" x2="{bx:.2f}" y1="24" y2="78"/>')
    for p in (0, 16384, 32768, 49152, 65535):
        anchor = "start" if p == 0 else "end" if p == 65535 else "middle"
        parts.append(f'<text class="m-axis" x="{_x(p + (1 if p == 65535 else 0)):.2f}" y="96" '
                     f'text-anchor="{anchor}">{p}</text>')
    # zoom: the range alone, so a handful of reserved ports or listeners is visible
    lo, hi = r["low"], r["high"]
    size = max(hi - lo + 1, 1)

    def zx(p: float) -> float:
        return (p - lo) / size * MAP_W

    parts.append(f'<path class="m-zoomlink" d="M{_x(lo):.2f} 70 L0 120 M{_x(hi + 1):.2f} 70 L1000 120"/>')
    parts.append('<rect class="m-ephemeral m-zoom" x="0" y="120" width="1000" height="40"/>')
    for x in m["reserved_ranges"]:
        a, b = max(x["low"], lo), min(x["high"], hi)
        if a <= b:
            parts.append(f'<rect class="m-reserved" x="{zx(a):.2f}" y="120" width="{max(zx(b + 1) - zx(a), 1.0):.2f}" '
                         f'height="40"/>')
    for p in doc["listener_ports"]:
        parts.append(f'<line class="m-listener" x1="{zx(p + 0.5):.2f}" x2="{zx(p + 0.5):.2f}" y1="115" y2="165"/>')
    parts.append(f'<text class="m-axis" x="0" y="186" text-anchor="start">{lo}</text>')
    parts.append(f'<text class="m-axis" x="1000" y="186" text-anchor="end">{hi}</text>')
    parts.append('<text class="m-axis" x="500" y="186" text-anchor="middle">ephemeral range, zoomed</text>')
    return "".join(parts)


def _bar(in_use: int, tw: int, cap: int) -> str:
    cap = max(cap, 1)
    open_w = max(in_use - tw, 0) / cap * 100
    tw_w = min(tw / cap * 100, 100 - min(open_w, 100))
    return (f'<span class="bar" aria-hidden="true"><span class="b-open" style="width:{min(open_w, 100):.2f}%">'
            f'</span><span class="b-tw" style="width:{max(tw_w, 0):.2f}%"></span></span>')


def render_destinations(doc: dict) -> str:
    """One table row per destination, worst first, with its bar."""
    rows = []
    for d in doc["destinations"]:
        eta = duration(d.get("seconds_to_exhaustion")) if "seconds_to_exhaustion" in d else "–"
        rows.append(
            f'<tr data-proto="{esc(d["proto"])}" data-src="{esc(d["src"])}" data-dst="{esc(d["dst"])}" '
            f'data-dport="{d["dport"]}"><td>{esc(d["proto"])}</td><th scope="row">{esc(dest_label(d))}</th>'
            f'<td class="num" data-k="in_use">{num(d["in_use"])}</td>'
            f'<td class="num" data-k="time_wait">{num(d["time_wait"])}</td>'
            f'<td class="num" data-k="capacity">{num(d["capacity"])}</td>'
            f'<td class="num" data-k="utilization">{pct(d["utilization"])}</td>'
            f'<td class="num" data-k="eta">{eta}</td>'
            f'<td class="barcell">{_bar(d["in_use"], d["time_wait"], d["capacity"])}</td></tr>')
    if not rows:
        rows.append('<tr class="none"><td colspan="8">No outgoing connection uses the ephemeral range.</td></tr>')
    return "".join(rows)


def render_others(doc: dict) -> str:
    """The footer row summing the destinations beyond --top (or nothing)."""
    o = doc["others"]
    if not o["destinations"]:
        return ""
    return (f'<tr><td colspan="8">… and {num(o["destinations"])} more destination'
            f'{"" if o["destinations"] == 1 else "s"} holding {num(o["in_use"])} ports</td></tr>')


def render_dest_summary(doc: dict) -> str:
    """The line above the destinations table."""
    n, shown = doc["destinations_total"], len(doc["destinations"])
    fc = "forecast over the last read interval" if doc.get("forecast") else \
        "no forecast yet (it needs two reads)" if doc["source"] == "exporter" else "no forecast in a single snapshot"
    return f"{num(shown)} of {num(n)} destinations, worst first; {fc}."


def render_findings(doc: dict) -> str:
    """One li per finding with its remedy and a Copy button (shown by page.js)."""
    out = []
    for i, f in enumerate(doc["findings"]):
        rid = f"remedy-{i}"
        out.append(f'<li class="finding sev-{esc(f["severity"])}" data-id="{esc(f["id"])}">'
                   f'<p class="f-head"><span class="sev">{esc(f["severity"].upper())}</span> '
                   f'<code>{esc(f["id"])}</code></p><p class="f-msg">{esc(f["message"])}</p>'
                   f'<div class="remedy"><span class="r-label">Fix</span><pre><code id="{rid}">{esc(f["remedy"])}</code>'
                   f'</pre><button type="button" class="copy" data-for="{rid}" hidden>Copy</button></div></li>')
    if not out:
        out.append('<li class="none">No findings: nothing to fix.</li>')
    return "".join(out)


HX0, HX1, HY0, HY1 = 40.0, 590.0, 10.0, 130.0


def history_summary(doc: dict) -> str:
    """The history chart in words (its text alternative)."""
    pts = doc["history"]["points"]
    last = pts[-1]
    span_s = pts[-1]["time"] - pts[0]["time"]
    peak = max(p["utilization"] for p in pts)
    ws = [p["worst_utilization"] for p in pts if p["worst_utilization"] is not None]
    worst = (f"worst destination {pct(last['worst_utilization'])} now ({last['worst']}), peak {pct(max(ws))}"
             if last["worst"] is not None else "no destination now")
    return (f"{len(pts)} read{'' if len(pts) == 1 else 's'} over {duration(span_s)}: global use {pct(last['utilization'])} now, "
            f"peak {pct(peak)}; {worst}.")


def render_history(doc: dict) -> str:
    """The history chart's SVG children: global use and the worst destination, 0-100%."""
    pts = doc["history"]["points"]
    t0, t1 = pts[0]["time"], pts[-1]["time"]
    dt = (t1 - t0) or 1.0

    def xy(p, key):
        x = HX0 + (p["time"] - t0) / dt * (HX1 - HX0) if len(pts) > 1 else HX1
        return f"{x:.1f},{HY1 - p[key] * (HY1 - HY0):.1f}"

    parts = ['<title id="history-title">Utilization over time</title>',
             f'<desc id="history-desc">{esc(history_summary(doc))}</desc>']
    for v in (0, 0.5, 1):
        y = HY1 - v * (HY1 - HY0)
        parts.append(f'<line class="h-grid" x1="{HX0}" x2="{HX1}" y1="{y}" y2="{y}"/>'
                     f'<text class="m-axis" x="{HX0 - 4}" y="{y + 4}" text-anchor="end">{int(v * 100)}%</text>')
    for key, cls in (("utilization", "h-global"), ("worst_utilization", "h-worst")):
        seq = [xy(p, key) for p in pts if p[key] is not None]
        if len(seq) > 1:
            parts.append(f'<polyline class="{cls}" points="{" ".join(seq)}"/>')
        elif seq:
            x, y = seq[0].split(",")
            parts.append(f'<circle class="{cls}" cx="{x}" cy="{y}" r="3"/>')
    parts.append(f'<text class="m-axis" x="{HX1}" y="148" text-anchor="end">now</text>')
    parts.append(f'<text class="m-axis" x="{HX0}" y="148" text-anchor="start">−{esc(duration(t1 - t0))}</text>')
    return "".join(parts)


def render_panels(doc: dict) -> str:
    """The hook panels (conntrack, failures) present in the document."""
    out = []
    for key in PANEL_KEYS:
        p = doc.get(key)
        if not isinstance(p, dict):
            continue
        rows = []
        for it in p.get("items") or ():
            ratio = it.get("ratio")
            bar = (f'<span class="bar" aria-hidden="true"><span class="b-open" style="width:'
                   f'{min(max(ratio, 0), 1) * 100:.2f}%"></span></span>') if isinstance(ratio, (int, float)) else ""
            rows.append(f'<tr><th scope="row">{esc(it.get("label"))}</th><td class="num">{num(it.get("value"))}</td>'
                        f'<td class="num">{pct(ratio) if isinstance(ratio, (int, float)) else ""}</td>'
                        f'<td class="barcell">{bar}</td></tr>')
        out.append(f'<section class="panel card" id="hook-{key}" aria-labelledby="hook-{key}-h">'
                   f'<h2 id="hook-{key}-h">{esc(p.get("title") or key)}</h2>'
                   f'<p>{esc(p.get("summary") or "")}</p>'
                   f'<div class="table-wrap"><table><tbody>{"".join(rows)}</tbody></table></div></section>')
    return "".join(out)


def render_processes(doc: dict) -> str:
    """Rows of the processes table (report --html reads owners)."""
    out = []
    for p in doc.get("processes") or ():
        out.append(f'<tr><td class="num">{"?" if p["pid"] is None else p["pid"]}</td>'
                   f'<th scope="row">{esc(p["command"] if p["command"] is not None else "(no process: TIME_WAIT)")}</th>'
                   f'<td class="num">{num(p["in_use"])}</td></tr>')
    return "".join(out)


def embed_json(doc: dict) -> str:
    """JSON inside <script type="application/json">: no '<', '>' or '&' survives, so no
    host string can close the element or open a comment."""
    s = json.dumps(doc, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return (s.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _csp(script: str) -> str:
    h = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return ("default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
            f"img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{h}'; connect-src 'self'")


def render_html(doc: dict, *, api: str | None = None) -> str:
    """The whole page. api: the endpoint the live page refreshes from (relative to the
    page), None for a static file (`report --html`)."""
    script = _asset("page.js")
    title = "portscope" + (f" — netns {doc['netns']}" if doc["netns"] else "")
    fills = {
        "TITLE": esc(title),
        "CSP": esc(_csp(script)),
        "CSS": _asset("page.css"),
        "SCRIPT": script,
        "DATA": embed_json(doc),
        "API": esc(api or ""),
        "REFRESH": str(doc["refresh_seconds"] or 0) if api else "0",
        "SOURCE": esc(doc["source"]),
        "STATUS_CLASS": esc(doc["status"]),
        "STATUS": render_status(doc),
        "FACTS": render_facts(doc),
        "MAP": render_map(doc),
        "LEGEND": render_legend(doc),
        "DEST_SUMMARY": esc(render_dest_summary(doc)),
        "DESTINATIONS": render_destinations(doc),
        "OTHERS": render_others(doc),
        "FINDINGS": render_findings(doc),
        "HISTORY": render_history(doc),
        "HISTORY_SUMMARY": esc(history_summary(doc)),
        "PANELS": render_panels(doc),
        "PROCESSES": render_processes(doc),
        "PROCESSES_HIDDEN": "" if doc.get("processes") else " hidden",
        "FOOTER": ('portscope exporter · <a href="metrics">metrics</a> · <a href="api/pressure">JSON</a>' if api
                   else "portscope report --html · a snapshot: the numbers of the time shown above"),
        "LIVE": (f"live, refreshed every {doc['refresh_seconds']} s" if api and doc["refresh_seconds"]
                 else "a snapshot"),
    }
    # one pass over the template: a filled-in value (host strings included) is never scanned again
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: fills[m.group(1)], _asset("page.html"))
