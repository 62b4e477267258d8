"""Basic auth of `portscope exporter`: the time a 401 takes for an unknown user and for a known
user with a wrong password (guessing user names by timing), and scrape latency under many
concurrent authenticated scrapers, beside the same load without auth.

    .venv/bin/python -m benchmarks.bench_webauth                      # this tree
    .venv/bin/python -m benchmarks.bench_webauth --tree /other/checkout   # e.g. before a change

Loopback only; the exporter runs in this machine's namespace (a few sockets), is bounded by
--seconds per phase and always stopped. The bcrypt cost is 12 (bcrypt.gensalt's default,
~0.2 s per check), as a user's `htpasswd -B -C 12` or `python -m bcrypt` would make.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, auth: str | None) -> tuple[int, float]:
    t = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request("GET", "/metrics", headers={"Authorization": auth} if auth else {})
        r = c.getresponse()
        r.read()
        return r.status, time.perf_counter() - t
    finally:
        c.close()


def basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def start(tree: str, port: int, web_config: str | None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": tree}
    args = [sys.executable, "-m", "portscope", "exporter", "--listen", f"127.0.0.1:{port}"]
    if web_config:
        args += ["--web-config", web_config]
    p = subprocess.Popen(args, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p
        except OSError:
            if p.poll() is not None:
                raise SystemExit(f"exporter did not start: {p.stderr.read().decode()}")
            time.sleep(0.1)
    p.kill()
    raise SystemExit("exporter did not start within 30 s")


def load(port: int, auth: str | None, scrapers: int, seconds: float) -> dict:
    lat: list[float] = []
    bad = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker():
        while time.monotonic() < stop:
            try:
                status, dt = _get(port, auth)
            except OSError:
                status, dt = 0, 0.0
            with lock:
                if status == 200:
                    lat.append(dt)
                else:
                    bad[0] += 1

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(scrapers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 120)
    lat.sort()
    q = (lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] if lat else float("nan"))
    return {"scrapes": len(lat), "failed": bad[0], "p50": q(0.5), "p99": q(0.99), "max": lat[-1] if lat else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tree", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    help="checkout whose portscope package runs the exporter")
    ap.add_argument("--scrapers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0, help="per load phase")
    ap.add_argument("--probes", type=int, default=15, help="401 requests timed per kind")
    ap.add_argument("--cost", type=int, default=12)
    a = ap.parse_args()
    import bcrypt

    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "web.yml")
        h = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=a.cost)).decode()
        with open(cfg, "w") as f:
            f.write(f"basic_auth_users:\n  prom: '{h}'\n")
        print(f"tree {a.tree}; bcrypt cost {a.cost}; {a.scrapers} scrapers x {a.seconds:g} s per phase")

        port = free_port()
        p = start(a.tree, port, None)
        try:
            _get(port, None)
            base = load(port, None, a.scrapers, a.seconds)
        finally:
            p.kill()
            p.wait()

        port = free_port()
        p = start(a.tree, port, cfg)
        try:
            kinds = (("unknown user", basic("eve", "x")), ("known user, wrong password", basic("prom", "x")))
            ts: dict[str, list[float]] = {k: [] for k, _ in kinds}
            for _ in range(a.probes):          # interleaved: machine load drifts alike for both
                for kind, auth in kinds:
                    status, dt = _get(port, auth)
                    assert status == 401, status
                    ts[kind].append(dt)
            timing = {k: (statistics.median(v), min(v), max(v)) for k, v in ts.items()}
            authed = load(port, basic("prom", "right"), a.scrapers, a.seconds)
        finally:
            p.kill()
            p.wait()

    for kind, (med, lo, hi) in timing.items():
        print(f"401 for {kind:<27} median {med * 1000:7.1f} ms  (min {lo * 1000:.1f}, max {hi * 1000:.1f})")
    u, k = timing["unknown user"][0], timing["known user, wrong password"][0]
    print(f"timing gap (known - unknown, medians): {(k - u) * 1000:.1f} ms, ratio {k / u:.2f}")
    for name, r in (("no auth", base), ("basic auth", authed)):
        print(f"{name:<10} {r['scrapes']:6d} scrapes, {r['failed']} failed, p50 {r['p50']:.3f} s, "
              f"p99 {r['p99']:.3f} s, max {r['max']:.3f} s")
    print(f"p99 with auth / without: {authed['p99'] / base['p99']:.2f}")


if __name__ == "__main__":
    main()
