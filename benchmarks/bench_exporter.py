"""The exporter against `ss -tuanH` in one run (issue 16): one scrape's cost, then many
concurrent scrapers (p99 latency, RSS), on a namespace full of sockets (benchmarks/harness.py).

    sudo .venv/bin/python -m benchmarks.bench_exporter                  # 100k sockets, 50 scrapers
    sudo .venv/bin/python -m benchmarks.bench_exporter --sockets 20000 --seconds 10 --rounds 5
    sudo .venv/bin/python -m benchmarks.bench_exporter --baseline DIR   # another checkout too

Each exporter runs as `python -m portscope exporter --netns NS` with its checkout first on
PYTHONPATH (so --baseline DIR, e.g. `git archive main | tar -x -C DIR`, runs the same way).

One scrape: rounds in a rotating order of `ss -tuanH` (a whole process under `ip netns
exec`, stdout to /dev/null, CPU from /usr/bin/time) and one GET /metrics per exporter. The
scrape's CPU time is the exporter process's CPU clock (clock_gettime on the process's
CPUCLOCK, every thread included) read before and after the request, with the exporter
otherwise idle; so a scrape is compared with ss as processes doing the same job: read
every socket of the namespace and write out the result. CPU is the figure to trust on a
shared 2-core machine; wall time includes waiting for a core (both are reported, as
medians of per-round ratios to that round's ss). The TIME_WAIT sockets (60 s) are topped
up before each round.

Load: `--scrapers` threads (in 5 worker processes) scrape one exporter back to back, each
exporter in turn for 5 s until each has had `--seconds` (so all meet the same neighbours). Reported: failed scrapes, latency median / p99 / max, p99 / the single
scrape's median wall time (the target: <= 1.5), scrapes/s, the exporter's CPU time over
the load, the collections it ran (distinct bodies: each carries its own duration gauge)
and so a collection's length under this load, p99 / that length (what single flight
bounds: a wait for at most one collection, plus the HTTP work of 50 threads on 2 cores),
and its RSS each second. RSS "flat": the mean and the peak of the second half of the load
no higher than those of the first half + 10% (RSS swings between two levels, with and
without one collection's buffers, so a median of each half depends on where the samples
fall; a leak moves both the mean and the peak).

Everything runs inside a private namespace that is always deleted; the exporters and the
scraper threads are always stopped.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

from benchmarks.bench_floor import run as run_in_ns
from benchmarks.harness import socket_namespace

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def cpu_clock(pid: int) -> int:
    """The process-wide CPU clock of another process (Linux: MAKE_PROCESS_CPUCLOCK(pid,
    CPUCLOCK_SCHED)); time.clock_gettime on it gives every thread's CPU time, the threads
    that already ended included, in nanoseconds."""
    return (~pid << 3) | 2


class Exporter:
    """One `portscope exporter` of a checkout, watching a namespace; stopped by close()."""

    def __init__(self, path: str, netns: str, *args: str) -> None:
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=path)
        self.proc = subprocess.Popen([sys.executable, "-m", "portscope", "exporter", "--listen",
                                      f"127.0.0.1:{self.port}", "--netns", netns, *args],
                                     cwd=path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.clock = cpu_clock(self.proc.pid)
        end = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                if time.monotonic() > end or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError("exporter did not start: " + (self.proc.stderr.read() if self.proc.stderr else ""))
                time.sleep(0.05)

    def cpu(self) -> float:
        """Seconds of CPU the exporter process has used so far."""
        return time.clock_gettime(self.clock)

    def get(self, path: str = "/metrics", timeout: float = 120, bodies: set | None = None) -> tuple[int, int]:
        """(status, body bytes) of one request; the body's hash goes to `bodies` (each
        collection's exposition differs: its duration gauge)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            if bodies is not None:
                bodies.add(hash(body))
            return r.status, len(body)
        finally:
            c.close()

    def timed(self, path: str = "/metrics") -> tuple[float, float]:
        """(wall s, exporter CPU s) of one request, which must succeed."""
        c0, t0 = self.cpu(), time.perf_counter()
        st, n = self.get(path)
        wall, cpu = time.perf_counter() - t0, self.cpu() - c0
        if st != 200 or n == 0:
            raise RuntimeError(f"GET {path}: HTTP {st}, {n} bytes")
        return wall, cpu

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def single(ns, exporters: dict, rounds: int) -> dict:
    """Rotating rounds of ss -tuanH and one scrape per exporter: per label [(wall, cpu)]."""
    jobs = [("ss -tuanH", None)] + list(exporters.items())
    out: dict = {label: [] for label, _ in jobs}
    for _, e in jobs:                        # warm-up: imports, first reads, page cache
        (e.timed() if e else run_in_ns(ns.name, ["ss", "-tuanH"]))
    for r in range(rounds):
        ns.top_up_time_wait()
        k = r % len(jobs)
        for label, e in jobs[k:] + jobs[:k]:
            if e is None:
                wall, cpu, _ = run_in_ns(ns.name, ["ss", "-tuanH"])
                out[label].append((wall, cpu))
            else:
                out[label].append(e.timed())
    return out


def scrape_loop(port: int, threads: int, seconds: float) -> tuple[list, list, set]:
    """In a worker process: `threads` threads scraping back to back for `seconds`;
    (latencies, failures, hashes of the bodies)."""
    e = Exporter.__new__(Exporter)             # only get(): no process of its own here
    e.port = port
    lat: list[float] = []
    failures: list[str] = []
    bodies: set = set()
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker():
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                st, n = e.get(bodies=bodies)
                ok, err = st == 200 and n > 0, f"HTTP {st}"
            except Exception as ex:          # any failure is a failed scrape
                ok, err = False, repr(ex)
            dt = time.perf_counter() - t
            with lock:
                (lat.append(dt) if ok else failures.append(err))

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return lat, failures, bodies


def load_chunk(e: Exporter, scrapers: int, seconds: float, lat: list, failures: list, mem: list,
               bodies: set) -> None:
    """`scrapers` scrapers on `e` back to back for `seconds`, spread over up to 5 worker
    processes (50 client threads in one interpreter would queue behind each other's lock
    and add their own delays to the latencies); latencies, failures and RSS (each second)
    appended to the lists, the bodies' hashes added to `bodies`."""
    procs = min(5, scrapers)
    shares = [scrapers // procs + (1 if i < scrapers % procs else 0) for i in range(procs)]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        pending = [pool.apply_async(scrape_loop, (e.port, n, seconds)) for n in shares]
        while not all(r.ready() for r in pending):
            time.sleep(1)
            mem.append(rss_mb(e.proc.pid))
        for r in pending:
            la, fa, bo = r.get()
            lat += la
            failures += fa
            bodies |= bo


def load(ns, exporters: dict, scrapers: int, seconds: float, chunk: float = 5.0) -> dict:
    """The load phase: each exporter in turn for `chunk` seconds until each has had
    `seconds` (so both meet the same neighbours on a shared machine)."""
    res = {tag: {"lat": [], "failures": [], "mem": [rss_mb(e.proc.pid)], "cpu": 0.0, "wall": 0.0,
                 "bodies": set()} for tag, e in exporters.items()}
    left = seconds
    while left > 0:
        ns.top_up_time_wait()
        part = min(chunk, left)
        for tag, e in exporters.items():
            r = res[tag]
            c0, t0 = e.cpu(), time.monotonic()
            load_chunk(e, scrapers, part, r["lat"], r["failures"], r["mem"], r["bodies"])
            r["cpu"] += e.cpu() - c0
            r["wall"] += time.monotonic() - t0
        left -= part
    out = {}
    for tag, r in res.items():
        lat, mem, wall = r["lat"], r["mem"], r["wall"]
        steady = mem[min(5, len(mem) - 1):]
        first, second = steady[:max(1, len(steady) // 2)], steady[len(steady) // 2:] or steady[-1:]
        out[tag] = {
            "scrapers": scrapers, "seconds": round(wall, 1), "scrapes_ok": len(lat),
            "scrapes_failed": len(r["failures"]), "failures": r["failures"][:5],
            "scrapes_per_s": round(len(lat) / wall, 1), "exporter_cpu_s": round(r["cpu"], 2),
            # distinct bodies = collections run: their mean length under this load
            "collections": len(r["bodies"]),
            "collection_under_load_s": round(wall / max(1, len(r["bodies"])), 3),
            "latency_median_s": round(statistics.median(lat), 3) if lat else None,
            "latency_p99_s": round(pct(lat, 0.99), 3) if lat else None,
            "latency_max_s": round(max(lat), 3) if lat else None,
            "rss_mb_before_load": round(mem[0], 1), "rss_mb_peak": round(max(mem), 1),
            "rss_mb_end": round(mem[-1], 1),
            "rss_mb_mean_first_half": round(statistics.mean(first), 1),
            "rss_mb_mean_second_half": round(statistics.mean(second), 1),
            "rss_mb_peak_first_half": round(max(first), 1), "rss_mb_peak_second_half": round(max(second), 1),
            "rss_flat": statistics.mean(second) <= statistics.mean(first) * 1.10
            and max(second) <= max(first) * 1.10,
            "rss_mb_series": [round(m, 1) for m in mem],
        }
    return out


def run(sockets: int, scrapers: int, seconds: float, rounds: int, checkouts: dict[str, str]) -> dict:
    with socket_namespace(sockets) as ns:
        total = len(ns.run("ss", "-tuanH").stdout.splitlines())
        load0 = os.getloadavg()
        exporters: dict[str, Exporter] = {}
        try:
            for tag, path in checkouts.items():
                exporters[tag] = Exporter(path, ns.name)
            res = single(ns, exporters, rounds)
            ss = res["ss -tuanH"]
            doc: dict = {"sockets": total, "rounds": rounds, "load_before": [round(x, 2) for x in load0]}
            for tag, e in exporters.items():
                mine = res[tag]
                med_wall = statistics.median(w for w, _ in mine)
                doc[tag] = {
                    "scrape_cpu_s": round(statistics.median(c for _, c in mine), 3),
                    "scrape_wall_s": round(med_wall, 3),
                    "ss_cpu_s": round(statistics.median(c for _, c in ss), 3),
                    "ss_wall_s": round(statistics.median(w for w, _ in ss), 3),
                    "scrape_vs_ss_cpu": round(statistics.median(a[1] / b[1] for a, b in zip(mine, ss)), 2),
                    "scrape_vs_ss_wall": round(statistics.median(a[0] / b[0] for a, b in zip(mine, ss)), 2),
                    "metrics_bytes": e.get()[1],
                }
            for tag, lo in load(ns, exporters, scrapers, seconds).items():
                lo["p99_vs_single_scrape"] = round(lo["latency_p99_s"] / doc[tag]["scrape_wall_s"], 2) \
                    if lo["latency_p99_s"] else None
                lo["p99_vs_collection_under_load"] = round(lo["latency_p99_s"] / lo["collection_under_load_s"], 2) \
                    if lo["latency_p99_s"] else None
                doc[tag]["load"] = lo
            doc["load_after"] = [round(x, 2) for x in os.getloadavg()]
        finally:
            for e in exporters.values():
                e.close()
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sockets", type=int, default=100_000, help="Sockets in the namespace (10..200000).")
    ap.add_argument("--scrapers", type=int, default=50, help="Concurrent scrapers in the load phase (1..200).")
    ap.add_argument("--seconds", type=float, default=30.0, help="Length of the load phase per exporter (1..600).")
    ap.add_argument("--rounds", type=int, default=7, help="Rounds of single scrapes beside ss (1..50).")
    ap.add_argument("--baseline", metavar="DIR", help="Another checkout, measured in the same run.")
    a = ap.parse_args(argv)
    if not (1 <= a.scrapers <= 200 and 1 <= a.seconds <= 600 and 10 <= a.sockets <= 200_000
            and 1 <= a.rounds <= 50):
        ap.error("bounds: 1..200 scrapers, 1..600 s, 10..200000 sockets, 1..50 rounds")
    checkouts = {"this": HERE}
    if a.baseline:
        checkouts["baseline"] = os.path.abspath(a.baseline)
    res = run(a.sockets, a.scrapers, a.seconds, a.rounds, checkouts)
    print(json.dumps(res, indent=2))
    return 0 if all(res[t]["load"]["scrapes_failed"] == 0 for t in checkouts) else 1


if __name__ == "__main__":
    sys.exit(main())
