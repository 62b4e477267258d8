"""Load check of `portscope exporter`: many concurrent scrapers against an exporter watching
a namespace full of sockets (benchmarks/harness.py), beside `ss` on the same namespace.

    sudo .venv/bin/python -m benchmarks.bench_exporter            # 100k sockets, 50 scrapers, 30 s
    sudo .venv/bin/python -m benchmarks.bench_exporter --sockets 20000 --seconds 10

Reports: failed scrapes, scrape latency (median, p99, max), scrapes/s, the exporter's RSS
over the run ("flat" = at the end within 10% of its size after 5 s of load),
and a single scrape's latency as a ratio of `ss -tuan` and `ss -s` on the same sockets.
Everything runs inside a private namespace that is always deleted; the exporter and
scraper threads are always stopped.
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
import threading
import time

from benchmarks.harness import socket_namespace

PORTSCOPE = os.path.join(os.path.dirname(sys.executable), "portscope")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def scrape(port: int, timeout: float = 60) -> tuple[int, int]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        return r.status, len(r.read())
    finally:
        c.close()


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run(sockets: int, scrapers: int, seconds: float) -> dict:
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
                        raise RuntimeError("exporter did not start: " + (exp.stderr.read() if exp.poll() is not None else ""))
                    time.sleep(0.05)
            status, size = scrape(port)                     # warm-up (imports, first read)
            assert status == 200
            single = timed(lambda: scrape(port), 5)
            ss_tuan = timed(lambda: ns.run("ss", "-tuanH"), 5)
            ss_s = timed(lambda: ns.run("ss", "-s"), 5)

            lat: list[float] = []
            failures: list[str] = []
            lock = threading.Lock()
            stop = time.monotonic() + seconds

            def worker():
                while time.monotonic() < stop:
                    t = time.perf_counter()
                    try:
                        st, n = scrape(port)
                        ok = st == 200 and n > 0
                        err = f"HTTP {st}"
                    except Exception as e:          # any failure is a failed scrape
                        ok, err = False, repr(e)
                    dt = time.perf_counter() - t
                    with lock:
                        (lat.append(dt) if ok else failures.append(err))

            mem = [rss_mb(exp.pid)]
            ts = [threading.Thread(target=worker, daemon=True) for _ in range(scrapers)]
            t0 = time.monotonic()
            for t in ts:
                t.start()
            while any(t.is_alive() for t in ts):
                time.sleep(1)
                mem.append(rss_mb(exp.pid))
            wall = time.monotonic() - t0
            for t in ts:
                t.join()
        finally:
            exp.terminate()
            try:
                exp.wait(10)
            except subprocess.TimeoutExpired:
                exp.kill()
                exp.wait()
    med_single = statistics.median(single)
    steady = mem[min(5, len(mem) - 1):]
    first, second = steady[:max(1, len(steady) // 2)], steady[len(steady) // 2:] or steady[-1:]
    return {
        "sockets": total, "scrapers": scrapers, "seconds": round(wall, 1),
        "scrapes_ok": len(lat), "scrapes_failed": len(failures), "failures": failures[:5],
        "scrapes_per_s": round(len(lat) / wall, 1),
        "latency_median_s": round(statistics.median(lat), 3) if lat else None,
        "latency_p99_s": round(pct(lat, 0.99), 3) if lat else None,
        "latency_max_s": round(max(lat), 3) if lat else None,
        "single_scrape_median_s": round(med_single, 3),
        "ss_tuan_median_s": round(statistics.median(ss_tuan), 3),
        "ss_s_median_s": round(statistics.median(ss_s), 3),
        "single_scrape_vs_ss_tuan": round(med_single / statistics.median(ss_tuan), 2),
        "single_scrape_vs_ss_s": round(med_single / statistics.median(ss_s), 2),
        "metrics_bytes": size,
        # before load, after 5 s of load (steady state: every worker thread and buffer
        # exists), peak, end. Flat = the second half of the steady state sits no higher
        # than the first (medians, +10%): one collection's buffers make brief spikes, a
        # leak moves the whole level up
        "rss_mb_before_load": round(mem[0], 1), "rss_mb_at_5s": round(mem[min(5, len(mem) - 1)], 1),
        "rss_mb_peak": round(max(mem), 1), "rss_mb_end": round(mem[-1], 1),
        "rss_mb_median_first_half": round(statistics.median(first), 1),
        "rss_mb_median_second_half": round(statistics.median(second), 1),
        "rss_flat": statistics.median(second) <= statistics.median(first) * 1.10,
        "rss_mb_series": [round(m, 1) for m in mem],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sockets", type=int, default=100_000)
    ap.add_argument("--scrapers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    a = ap.parse_args(argv)
    if not (1 <= a.scrapers <= 200 and 1 <= a.seconds <= 600 and 10 <= a.sockets <= 200_000):
        ap.error("bounds: 1..200 scrapers, 1..600 s, 10..200000 sockets")
    res = run(a.sockets, a.scrapers, a.seconds)
    print(json.dumps(res, indent=2))
    return 0 if res["scrapes_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
