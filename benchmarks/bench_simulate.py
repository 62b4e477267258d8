"""The Linux connect() model vs the real kernel's connect(), same workload, one run.

    sudo .venv/bin/python -m benchmarks.bench_simulate [--real 200000] [--sim 1000000,10000000]

Real: inside a private network namespace (made here, always deleted), one Python
client loops socket() / connect() / close() to D loopback listeners (a helper
process accepts and closes), for --real connects or --real-seconds, whichever
comes first; the client closes first, so every connection leaves a TIME_WAIT,
and tcp_tw_reuse=2 (loopback, the default) lets the kernel take those over, as
in the simulated workload. Simulated: the `linux` model with the same range,
the same D destinations, arrivals at the measured real rate, lifetime 0,
TIME_WAIT 60 s, tcp_tw_reuse=2 on loopback. We report connects per second of
wall time for each, the ratio, and the 1M -> 10M scaling (connects/s should
stay flat: linear time). The machine is shared, so the scaling is judged on the
simulator's CPU time (process_time), which other processes do not inflate;
wall-clock figures are printed too.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid

PY = sys.executable

SERVER = r"""
import selectors, signal, socket, sys
d, base, life = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
signal.alarm(life)
sel = selectors.DefaultSelector()
for i in range(d):
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", base + i)); l.listen(4096); l.setblocking(False)
    sel.register(l, selectors.EVENT_READ)
print("READY", flush=True)
while True:
    for key, _ in sel.select(1):
        for _ in range(64):
            try:
                c, _ = key.fileobj.accept()
            except BlockingIOError:
                break
            c.close()
"""

CLIENT = r"""
import json, socket, sys, time
n, d, base, limit = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
dst = [("127.0.0.1", base + i) for i in range(d)]
ok = fail = 0
t0 = time.perf_counter()
deadline = t0 + limit
i = 0
while i < n:
    for _ in range(1000):
        s = socket.socket()
        try:
            s.connect(dst[i % d]); ok += 1
        except OSError:
            fail += 1
        s.close()
        i += 1
    if time.perf_counter() > deadline:
        break
dt = time.perf_counter() - t0
print(json.dumps({"connects": i, "ok": ok, "failed": fail, "seconds": dt}))
"""


def real(n: int, dests: int, seconds: float) -> dict:
    ns = f"pssimb-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    server = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        server = subprocess.Popen(["ip", "netns", "exec", ns, PY, "-c", SERVER, str(dests), "5000",
                                   str(int(seconds) + 60)], stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "READY"
        out = subprocess.run(["ip", "netns", "exec", ns, PY, "-c", CLIENT, str(n), str(dests), "5000",
                              str(seconds)], capture_output=True, text=True, check=True,
                             timeout=seconds + 60).stdout
        return json.loads(out)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def simulated(n: int, dests: int, rate: float) -> dict:
    from portscope.simulate import run, workload
    w = workload(range="32768-60999", algorithm="linux", connects=n, rate=rate, destinations=dests,
                 lifetime="0", tw_reuse=2, loopback=True, seed=1)
    t0, c0 = time.perf_counter(), time.process_time()
    r = run(w, record=False)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return {"connects": r.connects, "failures": r.failures, "seconds": dt, "cpu_seconds": dc,
            "per_cpu_s": round(r.connects / dc), "search_steps": r.search_steps,
            "ports_used_max": r.ports_used_max, "time_wait_reused": r.tw_reused}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=int, default=300_000, help="real connects (upper bound)")
    ap.add_argument("--real-seconds", type=float, default=30.0, help="real run time bound")
    ap.add_argument("--destinations", type=int, default=50)
    ap.add_argument("--sim", default="1000000,10000000", help="simulated connect counts")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    k = real(a.real, a.destinations, a.real_seconds)
    k_rate = k["connects"] / k["seconds"]
    rows = {"real": {**k, "per_s": round(k_rate)}}
    for n in (int(x) for x in a.sim.split(",")):
        s = simulated(n, a.destinations, k_rate)
        s["per_s"] = round(s["connects"] / s["seconds"])
        s["ratio_vs_real"] = round(s["per_s"] / k_rate, 2)
        rows[f"sim_{n}"] = s
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"workload: {a.destinations} loopback destinations, range 32768-60999, lifetime 0, "
          f"TIME_WAIT 60 s, tcp_tw_reuse=2")
    print(f"{'run':<14}{'connects':>12}{'failed':>9}{'seconds':>10}{'connects/s':>13}{'vs real':>9}"
          f"{'cpu s':>9}{'per cpu s':>11}{'steps/conn':>11}")
    print(f"{'real kernel':<14}{k['connects']:>12}{k['failed']:>9}{k['seconds']:>10.2f}{round(k_rate):>13}"
          f"{'1.00x':>9}")
    for key, s in rows.items():
        if key == "real":
            continue
        print(f"{'sim linux':<14}{s['connects']:>12}{s['failures']:>9}{s['seconds']:>10.2f}{s['per_s']:>13}"
              f"{s['ratio_vs_real']:>8.2f}x{s['cpu_seconds']:>9.2f}{s['per_cpu_s']:>11}"
              f"{s['search_steps']['mean']:>11.2f}")
    sims = [s for key, s in rows.items() if key != "real"]
    if len(sims) >= 2:
        print(f"scaling: {sims[0]['connects']} -> {sims[-1]['connects']} connects, "
              f"connects per CPU second {sims[0]['per_cpu_s']} -> {sims[-1]['per_cpu_s']} "
              f"({sims[-1]['per_cpu_s'] / sims[0]['per_cpu_s']:.2f}; 1.00 = linear); wall "
              f"{sims[-1]['per_s'] / sims[0]['per_s']:.2f}")
        # a longer run reaches the TIME_WAIT plateau, where each connect() searches longer
        # (in the kernel too): candidates examined per CPU second is the work-rate measure
        c0, c1 = (x['per_cpu_s'] * x['search_steps']['mean'] for x in (sims[0], sims[-1]))
        print(f"candidates examined per CPU second {c0:.0f} -> {c1:.0f} ({c1 / c0:.2f}; 1.00 = linear)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
