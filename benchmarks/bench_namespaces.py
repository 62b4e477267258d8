"""`portscope namespaces` beside `lsns -t net` (util-linux), both as whole processes, on a
host with many network namespaces and processes.

    sudo .venv/bin/python -m benchmarks.bench_namespaces                 # 200 namespaces, 2,000 processes
    sudo .venv/bin/python -m benchmarks.bench_namespaces --namespaces 50 --per-namespace 4 --rounds 5
    sudo .venv/bin/python -m benchmarks.bench_namespaces --report     # report --all-netns, 50 x 2,000 vs 100k

Each namespace is a new unnamed one (`unshare --net`) holding `--per-namespace` sleeping
processes; every fifth also gets an `ip netns attach` name. All of them are bounded
(`sleep --lifetime`), killed and their names removed at the end, even on error.
Reports, over `--rounds` alternating runs of `lsns -t net -J`, `lsns -t net`, `portscope
namespaces --json` and `portscope namespaces` (the venv's console script, which runs these
two without click), the median CPU time (user + sys of the process and the children it
waited for, from wait4) and its ratio to `lsns -t net` of the same round, and the median
wall time; then the same two commands through the click CLI (PORTSCOPE_NO_FAST=1), the
path every command took before the click-free front end. Children run without
PYTHONDONTWRITEBYTECODE, as an installed package does.
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


def found_pkg() -> str:
    """This checkout's portscope/__init__.py (compiled before timing)."""
    import portscope
    return portscope.__file__


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


ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PORTSCOPE_NO_FAST")}


def timed(cmd, env: dict | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env or ENV)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr}")
    return dt, r.stdout


def cpu_timed(cmd, env: dict | None = None) -> tuple[float, float, str]:
    """(CPU seconds, wall seconds, stdout) of one whole-process run."""
    import tempfile
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env or ENV)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}")
        out.seek(0)
        return ru.ru_utime + ru.ru_stime, wall, out.read().decode()


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
        slow = dict(ENV, PORTSCOPE_NO_FAST="1")
        subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.dirname(found_pkg())], env=ENV)
        cmds = {"lsns -t net": (["lsns", "-t", "net"], None),
                "lsns -t net -J": (["lsns", "-t", "net", "-J"], None),
                "portscope namespaces --json": ([PORTSCOPE, "namespaces", "--json"], None),
                "portscope namespaces": ([PORTSCOPE, "namespaces"], None),
                "  (click) namespaces --json": ([PORTSCOPE, "namespaces", "--json"], slow),
                "  (click) namespaces": ([PORTSCOPE, "namespaces"], slow)}
        times = {k: [] for k in cmds}
        cpus = {k: [] for k in cmds}
        outs = {}
        load0 = os.getloadavg()
        for r in range(a.rounds):
            order = list(cmds.items())
            k0 = r % len(order)
            for k, (c, env) in order[k0:] + order[:k0]:   # rotating: drift hits every tool alike
                cpu, dt, out = cpu_timed(c, env)
                times[k].append(dt)
                cpus[k].append(cpu)
                outs[k] = out
        ours = {n["inode"] for n in json.loads(outs["portscope namespaces --json"])["namespaces"]}
        theirs = {int(n["ns"]) for n in json.loads(outs["lsns -t net -J"])["namespaces"]}
        base = statistics.median(times["lsns -t net"])
        print(f"{a.namespaces} namespaces x {a.per_namespace} processes (+ the host's: {nprocs} processes "
              f"in /proc), setup {setup:.1f} s, {a.rounds} rounds, kernel {os.uname().release}, "
              f"load average {load0[0]:.2f} before / {os.getloadavg()[0]:.2f} after")
        print(f"namespaces found: portscope {len(ours)}, lsns {len(theirs)} "
              f"(lsns lists only namespaces with a process; in both: {len(ours & theirs)})")
        from portscope.namespaces import discover
        inproc = []
        for _ in range(a.rounds):
            t1 = time.perf_counter()
            discover()
            inproc.append(time.perf_counter() - t1)
        startup = [cpu_timed([sys.executable, "-c", "import portscope.front.views, portscope.namespaces"])[0]
                   for _ in range(a.rounds)]
        print(f"breakdown: discover() in-process median {statistics.median(inproc) * 1000:.1f} ms; "
              f"interpreter + imports median CPU {statistics.median(startup) * 1000:.1f} ms")
        print(f"{'command':30} {'CPU median':>11} {'x lsns -t net':>14} {'wall median':>12} {'x lsns':>7}")
        for k in cmds:
            ratio = statistics.median(c / b for c, b in zip(cpus[k], cpus["lsns -t net"]))
            med = statistics.median(times[k])
            print(f"{k:30} {statistics.median(cpus[k]) * 1000:9.1f}ms {ratio:14.2f} {med * 1000:10.1f}ms "
                  f"{med / base:7.2f}")
    finally:
        cleanup(procs, names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
