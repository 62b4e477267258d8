"use strict";
// Renders the web document into the page: the same markup as portscope/web/render.py
// (the browser tests compare both), then, on the live page, GETs the document again every
// data-refresh seconds. Host strings only ever reach the DOM through esc(). The page sends
// GET requests to its own endpoint and nothing else.
(function () {
  const W = 1000, PORTS = 65536, MAX_LISTED = 20;
  const PANEL_KEYS = ["conntrack", "failures"];
  const HX0 = 40, HX1 = 590, HY0 = 10, HY1 = 130;

  function esc(s) {
    return String(s === null || s === undefined ? "" : s)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#x27;");
  }
  function num(n) {
    return Number.isInteger(n) ? String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",") : esc(n);
  }
  function pct(x) {
    if (x === null || x === undefined) return "–";
    const n = Math.floor(x * 1000 + 0.5);
    return Math.floor(n / 10) + "." + (((n % 10) + 10) % 10) + "%";
  }
  function duration(s) {
    if (s === null || s === undefined) return "–";
    const r = Math.floor(s + 0.5);
    if (r < 120) return r + " s";
    if (r < 7200) return Math.floor(r / 60 + 0.5) + " min";
    const h = Math.floor(r / 360 + 0.5);
    return Math.floor(h / 10) + "." + (h % 10) + " h";
  }
  function clock(t) {
    return new Date(Math.floor(t) * 1000).toISOString().slice(11, 19) + " UTC";
  }
  function span(lo, hi) { return lo !== hi ? lo + "–" + hi : String(lo); }
  function destLabel(d) {
    const dst = d.dst.indexOf(":") >= 0 ? "[" + d.dst + "]" : d.dst;
    return d.src + " → " + dst + ":" + d.dport;
  }
  const f2 = (v) => v.toFixed(2), f1 = (v) => v.toFixed(1);

  function renderStatus(doc) {
    const n = doc.findings.length;
    return '<span class="st-label">Health</span> <strong>' + esc(doc.status.toUpperCase()) +
      '</strong> <span class="st-count">' + n + " finding" + (n === 1 ? "" : "s") + "</span>";
  }
  function renderFacts(doc) {
    const g = doc.global, r = doc.range;
    const rows = [
      ["netns", "Namespace", doc.netns || "(this host's own)"],
      ["range", "Ephemeral range", r.low + "–" + r.high + " (" + num(r.size) + " ports)"],
      ["reserved", "Reserved", doc.reserved || "none"],
      ["privileged", "Privileged below", String(doc.unprivileged_port_start)],
      ["tw_reuse", "tcp_tw_reuse", doc.tcp_tw_reuse === null ? "n/a" : String(doc.tcp_tw_reuse)],
      ["global", "Global use", num(g.in_use) + " of " + num(g.capacity) + " ports (" + pct(g.utilization) + ")"],
      ["time_wait", "TIME_WAIT", num(g.time_wait) + " sockets"],
      ["updated", "Updated", clock(doc.time)],
    ];
    return rows.map(([k, l, v]) => '<div data-k="' + k + '"><dt>' + esc(l) + "</dt><dd>" + esc(v) + "</dd></div>").join("");
  }
  const X = (p) => p / PORTS * W;
  function rect(kind, lo, hi, y, h, label) {
    const x = X(lo), w = Math.max(X(hi + 1) - X(lo), 1);
    return '<rect class="m-' + kind + '" data-kind="' + kind + '" data-low="' + lo + '" data-high="' + hi +
      '" x="' + f2(x) + '" y="' + y + '" width="' + f2(w) + '" height="' + h + '"><title>' + esc(label) + "</title></rect>";
  }
  function mapItems(doc) {
    const r = doc.range, m = doc.map, start = doc.unprivileged_port_start, out = [];
    out.push(start > 0 ? ["privileged", 0, start - 1, "Privileged ports: " + span(0, start - 1) +
      " (binding needs root or CAP_NET_BIND_SERVICE)"] : ["privileged", null, null, "Privileged ports: none"]);
    for (const c of m.iana_classes) out.push(["iana-" + c.name, c.low, c.high, "IANA " + c.name + " ports: " + span(c.low, c.high)]);
    out.push(["ephemeral", r.low, r.high, "Ephemeral range: " + span(r.low, r.high) + " (" + num(r.size) + " ports)"]);
    const res = m.reserved_ranges, total = res.reduce((a, x) => a + x.high - x.low + 1, 0);
    out.push(["reserved", null, null, res.length ? "Reserved ports: " + doc.reserved + " (" + num(total) + " ports, " +
      num(doc.global.reserved_in_range) + " inside the range)" : "Reserved ports: none"]);
    const lp = doc.listener_ports;
    const listed = lp.slice(0, MAX_LISTED).join(", ") + (lp.length > MAX_LISTED ? " and " + (lp.length - MAX_LISTED) + " more" : "");
    out.push(["listeners", null, null, lp.length ? "Listeners inside the range: " + listed : "Listeners inside the range: none"]);
    if (m.nat_ranges !== undefined && m.nat_ranges !== null)
      out.push(["nat", null, null, "NAT-held ports: " + (m.nat_ranges.map((x) => span(x.low, x.high)).join(", ") || "none")]);
    return out;
  }
  function renderLegend(doc) {
    return mapItems(doc).map(([kind, lo, hi, text]) => '<li data-kind="' + kind + '"' +
      (lo !== null ? ' data-low="' + lo + '" data-high="' + hi + '"' : "") +
      '><span class="sw m-' + kind + '" aria-hidden="true"></span>' + esc(text) + "</li>").join("");
  }
  function renderMap(doc) {
    const r = doc.range, m = doc.map, start = doc.unprivileged_port_start;
    const p = ['<title id="map-title">Port map 0–65535</title>',
      '<desc id="map-desc">' + esc(mapItems(doc).map((x) => x[3]).join("; ")) + "</desc>"];
    for (const c of m.iana_classes) {
      p.push(rect("iana-" + c.name, c.low, c.high, 0, 22, "IANA " + c.name + " " + span(c.low, c.high)));
      if (c.high - c.low > 4000) p.push('<text class="m-lbl" x="' + f2(X(c.low) + 6) + '" y="17">' + esc(c.name) + "</text>");
    }
    p.push('<rect class="m-track" x="0" y="30" width="1000" height="40"/>');
    if (start > 0) p.push(rect("privileged", 0, start - 1, 30, 40, "privileged " + span(0, start - 1)));
    p.push(rect("ephemeral", r.low, r.high, 30, 40, "ephemeral range " + span(r.low, r.high)));
    for (const x of m.reserved_ranges) p.push(rect("reserved", x.low, x.high, 30, 40, "reserved " + span(x.low, x.high)));
    for (const x of (m.nat_ranges || [])) p.push(rect("nat", x.low, x.high, 30, 40, "NAT-held " + span(x.low, x.high)));
    for (const q of doc.listener_ports)
      p.push('<line class="m-listener" data-port="' + q + '" x1="' + f2(X(q + 0.5)) + '" x2="' + f2(X(q + 0.5)) +
        '" y1="25" y2="75"><title>listener ' + q + "</title></line>");
    const bx = X(start);
    p.push('<line class="m-boundary" x1="' + f2(bx) + '" x2="' + f2(bx) + '" y1="24" y2="78"/>');
    for (const q of [0, 16384, 32768, 49152, 65535]) {
      const anchor = q === 0 ? "start" : q === 65535 ? "end" : "middle";
      p.push('<text class="m-axis" x="' + f2(X(q + (q === 65535 ? 1 : 0))) + '" y="96" text-anchor="' + anchor + '">' + q + "</text>");
    }
    const lo = r.low, hi = r.high, size = Math.max(hi - lo + 1, 1);
    const zx = (q) => (q - lo) / size * W;
    p.push('<path class="m-zoomlink" d="M' + f2(X(lo)) + " 70 L0 120 M" + f2(X(hi + 1)) + ' 70 L1000 120"/>');
    p.push('<rect class="m-ephemeral m-zoom" x="0" y="120" width="1000" height="40"/>');
    for (const x of m.reserved_ranges) {
      const a = Math.max(x.low, lo), b = Math.min(x.high, hi);
      if (a <= b) p.push('<rect class="m-reserved" x="' + f2(zx(a)) + '" y="120" width="' + f2(Math.max(zx(b + 1) - zx(a), 1)) + '" height="40"/>');
    }
    for (const q of doc.listener_ports)
      p.push('<line class="m-listener" x1="' + f2(zx(q + 0.5)) + '" x2="' + f2(zx(q + 0.5)) + '" y1="115" y2="165"/>');
    p.push('<text class="m-axis" x="0" y="186" text-anchor="start">' + lo + "</text>");
    p.push('<text class="m-axis" x="1000" y="186" text-anchor="end">' + hi + "</text>");
    p.push('<text class="m-axis" x="500" y="186" text-anchor="middle">ephemeral range, zoomed</text>');
    return p.join("");
  }
  function bar(inUse, tw, cap) {
    cap = Math.max(cap, 1);
    const open = Math.max(inUse - tw, 0) / cap * 100;
    const tww = Math.min(tw / cap * 100, 100 - Math.min(open, 100));
    return '<span class="bar" aria-hidden="true"><span class="b-open" style="width:' + f2(Math.min(open, 100)) +
      '%"></span><span class="b-tw" style="width:' + f2(Math.max(tww, 0)) + '%"></span></span>';
  }
  function renderDestinations(doc) {
    const rows = doc.destinations.map((d) => {
      const eta = "seconds_to_exhaustion" in d ? duration(d.seconds_to_exhaustion) : "–";
      return '<tr data-proto="' + esc(d.proto) + '" data-src="' + esc(d.src) + '" data-dst="' + esc(d.dst) +
        '" data-dport="' + d.dport + '"><td>' + esc(d.proto) + '</td><th scope="row">' + esc(destLabel(d)) + "</th>" +
        '<td class="num" data-k="in_use">' + num(d.in_use) + "</td>" +
        '<td class="num" data-k="time_wait">' + num(d.time_wait) + "</td>" +
        '<td class="num" data-k="capacity">' + num(d.capacity) + "</td>" +
        '<td class="num" data-k="utilization">' + pct(d.utilization) + "</td>" +
        '<td class="num" data-k="eta">' + eta + "</td>" +
        '<td class="barcell">' + bar(d.in_use, d.time_wait, d.capacity) + "</td></tr>";
    });
    if (!rows.length) rows.push('<tr class="none"><td colspan="8">No outgoing connection uses the ephemeral range.</td></tr>');
    return rows.join("");
  }
  function renderOthers(doc) {
    const o = doc.others;
    if (!o.destinations) return "";
    return '<tr><td colspan="8">… and ' + num(o.destinations) + " more destination" + (o.destinations === 1 ? "" : "s") +
      " holding " + num(o.in_use) + " ports</td></tr>";
  }
  function destSummary(doc) {
    const fc = doc.forecast ? "forecast over the last read interval" :
      doc.source === "exporter" ? "no forecast yet (it needs two reads)" : "no forecast in a single snapshot";
    return num(doc.destinations.length) + " of " + num(doc.destinations_total) + " destinations, worst first; " + fc + ".";
  }
  function renderFindings(doc) {
    const out = doc.findings.map((f, i) => {
      const rid = "remedy-" + i;
      return '<li class="finding sev-' + esc(f.severity) + '" data-id="' + esc(f.id) + '">' +
        '<p class="f-head"><span class="sev">' + esc(f.severity.toUpperCase()) + "</span> <code>" + esc(f.id) + "</code></p>" +
        '<p class="f-msg">' + esc(f.message) + "</p>" +
        '<div class="remedy"><span class="r-label">Fix</span><pre><code id="' + rid + '">' + esc(f.remedy) + "</code>" +
        '</pre><button type="button" class="copy" data-for="' + rid + '" hidden>Copy</button></div></li>';
    });
    if (!out.length) out.push('<li class="none">No findings: nothing to fix.</li>');
    return out.join("");
  }
  function historySummary(doc) {
    const pts = doc.history.points, last = pts[pts.length - 1];
    const spanS = last.time - pts[0].time;
    const peak = Math.max(...pts.map((p) => p.utilization));
    const ws = pts.map((p) => p.worst_utilization).filter((v) => v !== null);
    const worst = last.worst !== null ? "worst destination " + pct(last.worst_utilization) + " now (" + last.worst +
      "), peak " + pct(Math.max(...ws)) : "no destination now";
    return pts.length + " read" + (pts.length === 1 ? "" : "s") + " over " + duration(spanS) + ": global use " + pct(last.utilization) + " now, peak " +
      pct(peak) + "; " + worst + ".";
  }
  function renderHistory(doc) {
    const pts = doc.history.points, t0 = pts[0].time, t1 = pts[pts.length - 1].time, dt = (t1 - t0) || 1;
    const xy = (p, key) => {
      const x = pts.length > 1 ? HX0 + (p.time - t0) / dt * (HX1 - HX0) : HX1;
      return f1(x) + "," + f1(HY1 - p[key] * (HY1 - HY0));
    };
    const out = ['<title id="history-title">Utilization over time</title>',
      '<desc id="history-desc">' + esc(historySummary(doc)) + "</desc>"];
    for (const v of [0, 0.5, 1]) {
      const y = HY1 - v * (HY1 - HY0);
      out.push('<line class="h-grid" x1="' + HX0 + '" x2="' + HX1 + '" y1="' + y + '" y2="' + y + '"/>' +
        '<text class="m-axis" x="' + (HX0 - 4) + '" y="' + (y + 4) + '" text-anchor="end">' + Math.trunc(v * 100) + "%</text>");
    }
    for (const [key, cls] of [["utilization", "h-global"], ["worst_utilization", "h-worst"]]) {
      const seq = pts.filter((p) => p[key] !== null).map((p) => xy(p, key));
      if (seq.length > 1) out.push('<polyline class="' + cls + '" points="' + seq.join(" ") + '"/>');
      else if (seq.length) {
        const [x, y] = seq[0].split(",");
        out.push('<circle class="' + cls + '" cx="' + x + '" cy="' + y + '" r="3"/>');
      }
    }
    out.push('<text class="m-axis" x="' + HX1 + '" y="148" text-anchor="end">now</text>');
    out.push('<text class="m-axis" x="' + HX0 + '" y="148" text-anchor="start">−' + esc(duration(t1 - t0)) + "</text>");
    return out.join("");
  }
  function renderPanels(doc) {
    const out = [];
    for (const key of PANEL_KEYS) {
      const p = doc[key];
      if (!p || typeof p !== "object" || Array.isArray(p)) continue;
      const rows = (p.items || []).map((it) => {
        const ratio = it.ratio, isNum = typeof ratio === "number";
        const b = isNum ? '<span class="bar" aria-hidden="true"><span class="b-open" style="width:' +
          f2(Math.min(Math.max(ratio, 0), 1) * 100) + '%"></span></span>' : "";
        return '<tr><th scope="row">' + esc(it.label) + '</th><td class="num">' + num(it.value) + "</td>" +
          '<td class="num">' + (isNum ? pct(ratio) : "") + '</td><td class="barcell">' + b + "</td></tr>";
      });
      out.push('<section class="panel card" id="hook-' + key + '" aria-labelledby="hook-' + key + '-h">' +
        '<h2 id="hook-' + key + '-h">' + esc(p.title || key) + "</h2><p>" + esc(p.summary || "") + "</p>" +
        '<div class="table-wrap"><table><tbody>' + rows.join("") + "</tbody></table></div></section>");
    }
    return out.join("");
  }
  function renderProcesses(doc) {
    return (doc.processes || []).map((p) => '<tr><td class="num">' + (p.pid === null ? "?" : p.pid) + "</td>" +
      '<th scope="row">' + esc(p.command !== null ? p.command : "(no process: TIME_WAIT)") + "</th>" +
      '<td class="num">' + num(p.in_use) + "</td></tr>").join("");
  }

  const $ = (id) => document.getElementById(id);
  function setHTML(id, html) { const el = $(id); if (el.innerHTML !== html) el.innerHTML = html; }

  function render(doc) {
    const t0 = performance.now();
    const st = $("status");
    st.className = "status st-" + doc.status;
    setHTML("status", renderStatus(doc));
    setHTML("facts", renderFacts(doc));
    setHTML("map", renderMap(doc));
    setHTML("map-legend", renderLegend(doc));
    $("dest-summary").textContent = destSummary(doc);
    setHTML("dest-rows", renderDestinations(doc));
    setHTML("dest-others", renderOthers(doc));
    setHTML("findings", renderFindings(doc));
    setHTML("history", renderHistory(doc));
    $("history-summary").textContent = historySummary(doc);
    setHTML("hooks", renderPanels(doc));
    setHTML("proc-rows", renderProcesses(doc));
    $("processes-section").hidden = !(doc.processes && doc.processes.length);
    for (const b of document.querySelectorAll("button.copy")) b.hidden = false;
    document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
    document.body.dataset.rendered = String((Number(document.body.dataset.rendered) || 0) + 1);
  }

  function copy(button) {
    const code = $(button.dataset.for);
    if (!code) return;
    const text = code.textContent;
    const done = (ok) => { button.textContent = ok ? "Copied" : "Select and copy"; setTimeout(() => { button.textContent = "Copy"; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(() => done(true), () => done(false));
    } else {                       // plain HTTP: select the text so Ctrl+C takes it
      const sel = window.getSelection(), range = document.createRange();
      range.selectNodeContents(code); sel.removeAllRanges(); sel.addRange(range);
      done(false);
    }
  }
  document.addEventListener("click", (e) => {
    const b = e.target.closest && e.target.closest("button.copy");
    if (b) copy(b);
  });

  let doc;
  try { doc = JSON.parse($("data").textContent); } catch (e) { return; }
  render(doc);
  const api = document.body.dataset.api, every = Number(document.body.dataset.refresh) || 0;
  if (!api || !every) return;
  let busy = false;
  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    const conn = $("conn");
    try {
      // GET only, same origin, credentials as the page itself (basic auth, TLS)
      const r = await fetch(api, { method: "GET", cache: "no-store", credentials: "same-origin" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      doc = await r.json();
      render(doc);
      conn.textContent = ""; conn.classList.remove("stale");
      document.body.dataset.refreshes = String((Number(document.body.dataset.refreshes) || 0) + 1);
    } catch (e) {
      conn.textContent = "· not updated: " + e.message; conn.classList.add("stale");
    } finally { busy = false; }
  }
  setInterval(refresh, every * 1000);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
})();
