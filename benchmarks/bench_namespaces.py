"""`portscope namespaces` beside `lsns -t net` (util-linux), both as whole processes, on a
host with many network namespaces and processes.

    sudo .venv/bin/python -m benchmarks.bench_namespaces                 # 200 namespaces, 2,000 processes
    sudo .venv/bin/python -m benchmarks.bench_namespaces --namespaces 50 --per-namespace 4 --rounds 5
    sudo .venv/bin/python -m benchmarks.bench_namespaces --report     # report --all-netns, 50 x 2,000 vs 100k

Each namespace is a new unnamed one (`unshare --net`) holding `--per-namespace` sleeping
processes; every fifth also gets an `ip netns attach` name. All of them are bounded
(`sleep --lifetime`), killed and their names removed at the end, even on error.
Reports the median and best wall time of `lsns -t net -J`, `portscope namespaces --json`
and `portscope namespaces` over `--rounds` alternating runs, and the ratio to lsns.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid

PORTSCOPE = os.path.join(os.path.dirname(sys.executable), "portscope")


def spawn(namespaces: int, per: int, lifetime: int):
    procs, names = [], []
    home = os.readlink("/proc/self/ns/net")
    inner = " ".join(f"sleep {lifetime} &" for _ in range(per - 1)) + f" exec sleep {lifetime}"
    for i in range(namespaces):
        p = subprocess.Popen(["unshare", "--net", "sh", "-c", inner], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
    deadline = time.monotonic() + 60
    for i, p in enumerate(procs):
        while True:
            try:
                if os.readlink(f"/proc/{p.pid}/ns/net") != home:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("namespaces did not come up in 60 s")
            time.sleep(0.005)
        if i % 5 == 0:
            name = f"psbench-{uuid.uuid4().hex[:8]}"
            subprocess.run(["ip", "netns", "attach", name, str(p.pid)], check=True, capture_output=True)
            names.append(name)
    return procs, names


def cleanup(procs, names) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in procs:
        p.wait(10)
    for n in names:
        subprocess.run(["ip", "netns", "delete", n], capture_output=True)


def timed(cmd) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr}")
    return dt, r.stdout


def report_all(namespaces: int, sockets: int, rounds: int) -> None:
    """`report --all-netns` over `namespaces` namespaces of `sockets` sockets each, beside one
    `report --netns` over a namespace holding all of them (the issue's <= 3x target)."""
    from contextlib import ExitStack

    from benchmarks.harness import socket_namespace
    with ExitStack() as stack:
        big = stack.enter_context(socket_namespace(namespaces * sockets, lifetime=900))
        for _ in range(namespaces):
            stack.enter_context(socket_namespace(sockets, lifetime=900))
        one, every = [], []
        for _ in range(rounds):
            one.append(timed([PORTSCOPE, "--netns", big.name, "report", "--json"])[0])
            dt, out = timed([PORTSCOPE, "report", "--all-netns", "--json"])
            every.append(dt)
        n = len(json.loads(out)["namespaces"])
        a, b = statistics.median(one), statistics.median(every)
        print(f"report over one namespace of {namespaces * sockets} sockets: median {a * 1000:.0f} ms")
        print(f"report --all-netns over {n} namespaces ({namespaces} of {sockets} sockets, the rest the "
              f"host's): median {b * 1000:.0f} ms = {b / a:.2f}x")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--namespaces", type=int, default=200)
    ap.add_argument("--per-namespace", type=int, default=10, help="processes in each namespace")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--lifetime", type=int, default=300, help="seconds every helper lives at most")
    ap.add_argument("--report", action="store_true",
                    help="Instead: report --all-netns over 50 namespaces of 2,000 sockets vs one of 100k.")
    ap.add_argument("--sockets", type=int, default=2000, help="with --report: sockets per namespace")
    a = ap.parse_args(argv)
    if a.report:
        if os.geteuid() != 0:
            print("needs root (private namespaces)", file=sys.stderr)
            return 2
        report_all(50 if a.namespaces == 200 else a.namespaces, a.sockets, min(a.rounds, 5))
        return 0
    if os.geteuid() != 0:
        print("needs root (unshare --net, ip netns attach)", file=sys.stderr)
        return 2
    procs, names = [], []
    try:
        t0 = time.perf_counter()
        procs, names = spawn(a.namespaces, a.per_namespace, a.lifetime)
        setup = time.perf_counter() - t0
        nprocs = sum(1 for e in os.listdir("/proc") if e.isdigit())
        cmds = {"lsns -t net -J": ["lsns", "-t", "net", "-J"],
                "portscope namespaces --json": [PORTSCOPE, "namespaces", "--json"],
                "portscope namespaces": [PORTSCOPE, "namespaces"]}
        times = {k: [] for k in cmds}
        outs = {}
        for _ in range(a.rounds):
            for k, c in cmds.items():          # alternating: drift hits every tool alike
                dt, out = timed(c)
                times[k].append(dt)
                outs[k] = out
        ours = {n["inode"] for n in json.loads(outs["portscope namespaces --json"])["namespaces"]}
        theirs = {int(n["ns"]) for n in json.loads(outs["lsns -t net -J"])["namespaces"]}
        base = statistics.median(times["lsns -t net -J"])
        print(f"{a.namespaces} namespaces x {a.per_namespace} processes (+ the host's: {nprocs} processes "
              f"in /proc), setup {setup:.1f} s, {a.rounds} rounds, kernel {os.uname().release}")
        print(f"namespaces found: portscope {len(ours)}, lsns {len(theirs)} "
              f"(lsns lists only namespaces with a process; in both: {len(ours & theirs)})")
        from portscope.namespaces import discover
        inproc = []
        for _ in range(a.rounds):
            t1 = time.perf_counter()
            discover()
            inproc.append(time.perf_counter() - t1)
        startup = [timed([sys.executable, "-c", "import portscope.cli, portscope.namespaces"])[0]
                   for _ in range(a.rounds)]
        print(f"breakdown: discover() in-process median {statistics.median(inproc) * 1000:.1f} ms; "
              f"interpreter + imports median {statistics.median(startup) * 1000:.1f} ms")
        print(f"{'command':30} {'median':>9} {'best':>9} {'x lsns':>7}")
        for k, ts in times.items():
            med = statistics.median(ts)
            print(f"{k:30} {med * 1000:8.1f}ms {min(ts) * 1000:8.1f}ms {med / base:7.2f}")
    finally:
        cleanup(procs, names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
