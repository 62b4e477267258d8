"""What the web view costs next to a scrape: GET /metrics, GET / (the page, numbers rendered
in it) and GET /api/pressure (what the open page asks every 5 s, with the forecast) against
one exporter watching a namespace full of sockets (benchmarks/harness.py), beside `ss -tuan`.

    sudo .venv/bin/python -m benchmarks.bench_web                  # 100k sockets
    sudo .venv/bin/python -m benchmarks.bench_web --sockets 20000 --rounds 5

Each request is a fresh read (the page reuses a read for 1 s, so requests are spaced
1.1 s apart). Reports medians and the ratios page/scrape and api/scrape: the issue's bar
is "serving the page and its data costs no more than one scrape" (ratio <= 1, with noise).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time

from benchmarks.harness import socket_namespace

PORTSCOPE = os.path.join(os.path.dirname(sys.executable), "portscope")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> tuple[float, int]:
    t = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        assert r.status == 200, (path, r.status)
    finally:
        c.close()
    return time.perf_counter() - t, len(body)


def run(sockets: int, rounds: int) -> dict:
    with socket_namespace(sockets) as ns:
        total = len(ns.run("ss", "-tuanH").stdout.splitlines())
        port = free_port()
        exp = subprocess.Popen([PORTSCOPE, "exporter", "--listen", f"127.0.0.1:{port}", "--netns", ns.name],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            end = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                except OSError:
                    if time.monotonic() > end or exp.poll() is not None:
                        raise RuntimeError("exporter did not start")
                    time.sleep(0.05)
            for path in ("/metrics", "/", "/api/pressure"):       # warm-up: imports, first reads
                get(port, path)
                time.sleep(1.1)
            t: dict[str, list[float]] = {"/metrics": [], "/": [], "/api/pressure": []}
            size: dict[str, int] = {}
            for _ in range(rounds):
                for path in t:
                    dt, n = get(port, path)
                    t[path].append(dt)
                    size[path] = n
                    time.sleep(1.1)
            ss = []
            for _ in range(rounds):
                a = time.perf_counter()
                ns.run("ss", "-tuanH")
                ss.append(time.perf_counter() - a)
            parts = breakdown(ns.name, rounds)
        finally:
            exp.terminate()
            try:
                exp.wait(10)
            except subprocess.TimeoutExpired:
                exp.kill()
                exp.wait()
    med = {k: statistics.median(v) for k, v in t.items()}
    return {
        "sockets": total, "rounds": rounds,
        "scrape_median_s": round(med["/metrics"], 4),
        "page_median_s": round(med["/"], 4),
        "api_median_s": round(med["/api/pressure"], 4),
        "ss_tuan_median_s": round(statistics.median(ss), 4),
        "page_vs_scrape": round(med["/"] / med["/metrics"], 2),
        "api_vs_scrape": round(med["/api/pressure"] / med["/metrics"], 2),
        "scrape_vs_ss_tuan": round(med["/metrics"] / statistics.median(ss), 2),
        "bytes": size,
        # in this process, no HTTP: where a page read's time goes
        "inproc_scrape_read_s": parts["scrape"],
        "inproc_page_read_without_forecast_s": parts["page"],
        "inproc_page_read_with_forecast_s": parts["forecast"],
    }


def breakdown(netns: str, rounds: int) -> dict:
    """Median seconds of the exporter's scrape read (read_sample) and of the page's read
    without and with the forecast (read_pressure), called directly."""
    from portscope.exporter import read_sample
    from portscope.web.data import read_pressure

    def med(fn):
        ts = []
        for _ in range(rounds):
            a = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - a)
        return round(statistics.median(ts), 4)

    _, prev = read_pressure(netns, None, 20)
    time.sleep(0.1)
    return {"scrape": med(lambda: read_sample(netns, 20)),
            "page": med(lambda: read_pressure(netns, None, 20)),
            "forecast": med(lambda: read_pressure(netns, prev, 20))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sockets", type=int, default=100_000, help="Sockets in the namespace (10..200000).")
    ap.add_argument("--rounds", type=int, default=7, help="Requests of each kind (1..50).")
    a = ap.parse_args(argv)
    if not (10 <= a.sockets <= 200_000 and 1 <= a.rounds <= 50):
        ap.error("bounds: 10..200000 sockets, 1..50 rounds")
    print(json.dumps(run(a.sockets, a.rounds), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
