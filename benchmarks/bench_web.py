"""What the web view costs next to a scrape (issue 17, "serving the page and its data costs
no more than one scrape"), on one namespace full of sockets (benchmarks/harness.py).

    sudo .venv/bin/python -m benchmarks.bench_web                   # 100k sockets, 5 rounds
    sudo .venv/bin/python -m benchmarks.bench_web --sockets 20000 --rounds 3
    sudo .venv/bin/python -m benchmarks.bench_web --baseline DIR    # another checkout too

Each exporter runs as in benchmarks/bench_exporter.py (`python -m portscope exporter
--netns NS`, its checkout first on PYTHONPATH). Every request's cost is the exporter
process's CPU time over the request (its process CPU clock: every thread) and its wall
time. One round, per exporter, each step after the exporter has been idle for longer than
the age a collection may serve the page (web.data.MAX_SAMPLE_AGE, 2.5 s; the old web view
reused its own read for 1 s):

  scrape        GET /metrics                                   the anchor
  page cold     GET /            (the page: its own collection; forecast since the last)
  api cold      GET /api/pressure (what the open page asks every 5 s, idem)
  together      GET /metrics, GET /, GET /api/pressure back to back: what a browser and
                Prometheus cost when they meet; `page after scrape` and `api after
                scrape` are its parts

Ratios are medians of per-round ratios to that round's scrape, CPU first (the figure to
trust on a shared machine). The bar: page and api cost no more than a scrape (<= 1, with
noise), and `together` close to one scrape (one read serves all three).
The TIME_WAIT sockets (60 s) are topped up before each round.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from benchmarks.bench_exporter import HERE, Exporter
from benchmarks.harness import socket_namespace

IDLE = 2.6          # > MAX_SAMPLE_AGE: the next request finds no sample young enough


def round_of(exporters: dict) -> dict:
    """One round: {tag: {step: (wall, cpu)}}; every exporter does each step, then all idle."""
    out: dict = {tag: {} for tag in exporters}
    steps = [("scrape", ["/metrics"]), ("page cold", ["/"]), ("api cold", ["/api/pressure"]),
             ("together", ["/metrics", "/", "/api/pressure"])]
    for name, paths in steps:
        for tag, e in exporters.items():
            parts = [e.timed(p) for p in paths]
            out[tag][name] = (sum(w for w, _ in parts), sum(c for _, c in parts))
            if len(paths) > 1:
                out[tag]["page after scrape"] = parts[1]
                out[tag]["api after scrape"] = parts[2]
        time.sleep(IDLE)
    return out


def run(sockets: int, rounds: int, checkouts: dict[str, str]) -> dict:
    # the exporters this starts (bench_exporter.Exporter copies os.environ) must write .pyc
    # files as an installed package does: with PYTHONDONTWRITEBYTECODE set, a checkout
    # whose modules changed since its last compile compiles them again at every start
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    with socket_namespace(sockets) as ns:
        total = len(ns.run("ss", "-tuanH").stdout.splitlines())
        load0 = os.getloadavg()
        exporters: dict[str, Exporter] = {}
        try:
            for tag, path in checkouts.items():
                exporters[tag] = Exporter(path, ns.name)
            for e in exporters.values():         # warm-up: imports, first reads
                for p in ("/metrics", "/", "/api/pressure"):
                    e.timed(p)
            time.sleep(IDLE)
            res = []
            for _ in range(rounds):
                ns.top_up_time_wait()
                res.append(round_of(exporters))
            sizes = {tag: {p: e.get(p)[1] for p in ("/metrics", "/", "/api/pressure")} for tag, e in exporters.items()}
        finally:
            for e in exporters.values():
                e.close()
        parts = breakdown(ns.name, rounds)
    doc: dict = {"sockets": total, "rounds": rounds, "load_before": [round(x, 2) for x in load0],
                 "load_after": [round(x, 2) for x in os.getloadavg()]}
    for tag in checkouts:
        rows = [r[tag] for r in res]
        d: dict = {"bytes": sizes[tag]}
        for step in rows[0]:
            d[step] = {
                "cpu_s": round(statistics.median(r[step][1] for r in rows), 4),
                "wall_s": round(statistics.median(r[step][0] for r in rows), 4),
                "cpu_vs_scrape": round(statistics.median(r[step][1] / r["scrape"][1] for r in rows), 2),
                "wall_vs_scrape": round(statistics.median(r[step][0] / r["scrape"][0] for r in rows), 2),
            }
        doc[tag] = d
    doc["this_in_process"] = parts
    return doc


def breakdown(netns: str, rounds: int) -> dict:
    """In this process, no HTTP (this checkout): CPU medians of a collection's read
    (exporter.read_sample), the web view's step on it (client tuples and the forecast), and
    the document and page built from it."""
    from portscope.exporter import read_sample
    from portscope.web.data import Reading, build_document, dumps, step
    from portscope.web.render import render_html

    def reading():
        s = read_sample(netns, 20)
        return Reading(s.at, s.wall, s.facts, s.table, s.full)

    def med(fn):
        ts = []
        for _ in range(rounds):
            a = time.process_time()
            fn()
            ts.append(time.process_time() - a)
        return round(statistics.median(ts), 4)

    _, prev = step(reading(), None, 20)
    time.sleep(0.1)
    r = reading()
    res, _ = step(r, prev, 20)
    doc = build_document(res, source="exporter")
    return {"read_sample_s": med(reading), "step_with_forecast_s": med(lambda: step(r, prev, 20)),
            "document_page_and_json_s": med(lambda: (render_html(build_document(res, source="exporter")),
                                                     dumps(doc)))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sockets", type=int, default=100_000, help="Sockets in the namespace (10..200000).")
    ap.add_argument("--rounds", type=int, default=5, help="Rounds of every step (1..50).")
    ap.add_argument("--baseline", metavar="DIR", help="Another checkout, measured in the same rounds.")
    a = ap.parse_args(argv)
    if not (10 <= a.sockets <= 200_000 and 1 <= a.rounds <= 50):
        ap.error("bounds: 10..200000 sockets, 1..50 rounds")
    checkouts = {"this": HERE}
    if a.baseline:
        checkouts["baseline"] = os.path.abspath(a.baseline)
    print(json.dumps(run(a.sockets, a.rounds, checkouts), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
