"""`report --all-netns` over many namespaces beside one `report` over a namespace holding as
many sockets, both as whole processes, in one run (issue 15: within 3x).

    sudo .venv/bin/python -m benchmarks.bench_allnetns [--namespaces 50] [--sockets 2000] [--rounds 3]
                                                       [--baseline DIR]

Builds NAMESPACES namespaces of SOCKETS sockets each, runs `report --all-netns --json` over
them (and every other namespace of the host: its own and whatever else exists on the
machine), removes them, then builds one namespace of NAMESPACES x SOCKETS sockets and runs
`report --netns BIG --json`, the anchor (benchmarks/harness.py; all removed at the end).
So the host holds the same number of sockets in both layouts. --together keeps both
layouts at once (all-netns then also reads BIG).

portscope runs as `python -m portscope` with the checkout first on PYTHONPATH; --baseline
DIR (e.g. `git archive main portscope | tar -x -C DIR`) runs the same two commands from
another tree in the same rounds, so before and after are measured side by side. Wall and
CPU (user + sys, wait4) per command; ratios are of the medians. On a shared machine the wall figure includes waiting for a core: the load
average is printed with the result.

Every dump of sock_diag walks the kernel's established hash, which all namespaces share
(net.ipv4.tcp_child_ehash_entries=0): a namespace of 2,000 sockets costs about the same
kernel time per dump as one of 100k, so the all-netns figure is bounded below by
(namespaces x dumps per namespace x one walk) / cores. The `kernel floor` rows show that
bound in the same run: a process that only asks the kernel for the one TCP walk per
namespace a report cannot do without (bound-only and hashed sockets, every state, a
bytecode that returns nothing, so no reply is filled or parsed), over every namespace
and over the one. Other tenants' sockets and namespaces count too (every walk crosses
all the host's sockets; --all-netns reads every namespace): the host's TCP socket count
and namespace count are printed with the result.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack

from benchmarks.harness import socket_namespace

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


FLOOR = "--kernel-floor"      # argv[0] of a timed run: the walk-only process below, not portscope
OURS = "--only-ours"          # argv[0]: report --all-netns over our own and the benchmark's namespaces


def report_ours(prefix: str) -> None:
    """`report --all-netns --json` as the CLI makes it (portscope.allnetns.report_all), over
    our own namespace and those named PREFIX-* only: other tenants of a shared machine
    (their namespaces of 100k sockets) stay out of the figure. The walks still cross every
    socket of the host: that cost is the kernel's and stays in."""
    import json

    import portscope.allnetns as allnetns
    real = allnetns.discover

    def ours(*args, **kw):
        d = real(*args, **kw)
        d.namespaces = [n for n in d.namespaces if n.current or any(x.startswith(prefix + "-") for x in n.ip_names)]
        return d
    allnetns.discover = ours
    _, doc = allnetns.report_all(5)
    json.dumps(doc)


def kernel_floor(target: str) -> None:
    """The one TCP walk per namespace a report needs (see the module doc), nothing else:
    over every namespace (target "all"), ours and those named PREFIX-* ("prefix:PREFIX"),
    or the namespace named `target`."""
    from portscope.namespaces import discover
    from portscope.netns import entered
    from portscope.sockets import netlink as nl
    reject = bytes([nl.BC_JMP, 4, 8, 0])        # jump past the end: every socket refused
    if target == "all" or target.startswith("prefix:"):
        pre = target.partition(":")[2] + "-"
        specs = [None if n.current else n.spec for n in discover().namespaces
                 if target == "all" or n.current or any(x.startswith(pre) for x in n.ip_names)]
    else:
        specs = [target]
    buf = bytearray(nl.RECV_BYTES)
    for spec in specs:
        try:
            with entered(spec):
                sock = nl.open_socket()
                try:
                    for _ in nl.dump_chunks(sock, nl.BOTH, nl.PROTO_CODES["tcp"], nl.ALL_STATES | 1 << 13,
                                            reject, 1, buf):
                        pass
                finally:
                    sock.close()
        except Exception:        # a namespace gone since the discovery: as report skips it
            pass


def host_load() -> str:
    """The host's TCP sockets (all namespaces: sockstat's `alloc`) and network namespaces."""
    try:
        with open("/proc/net/sockstat") as f:
            alloc = next(line.split()[8] for line in f if line.startswith("TCP:"))
    except (OSError, StopIteration, IndexError):
        alloc = "?"
    from portscope.namespaces import discover
    return f"{alloc} TCP sockets and {len(discover().namespaces)} network namespaces on the host"


def run_timed(tree: str, argv: list[str]) -> tuple[float, float]:
    """(wall s, cpu s) of `python -m portscope ARGV` from `tree`, as a whole process (wait4);
    argv starting with FLOOR runs kernel_floor(argv[1]) instead."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tree, HERE])}
    # the untimed warm-up leaves .pyc files behind, or a timed run of a tree whose modules
    # changed since their last compile pays for compiling them (as bench_floor does)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if argv[0] in (FLOOR, OURS):
        fn = "kernel_floor" if argv[0] == FLOOR else "report_ours"
        cmd = [sys.executable, "-c", f"from benchmarks.bench_allnetns import {fn}; {fn}({argv[1]!r})"]
    else:
        cmd = [sys.executable, "-m", "portscope", *argv]
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd="/",
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode() if p.stderr else ""
    if p.stderr:
        p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {err[-400:]}")
    return wall, ru.ru_utime + ru.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--namespaces", type=int, default=50, help="small namespaces to build")
    ap.add_argument("--sockets", type=int, default=2000, help="sockets in each small namespace")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    ap.add_argument("--baseline", metavar="DIR", help="another tree to run the same commands from")
    ap.add_argument("--only-ours", action="store_true",
                    help="All-netns over our own and the benchmark's namespaces only (the same library call "
                         "as the CLI), not other tenants' (the floor likewise); default: the CLI, every namespace.")
    ap.add_argument("--together", action="store_true",
                    help="Keep the big namespace beside the small ones (all-netns then reads it too, and "
                         "every walk crosses twice the sockets); default: each layout alone on the host.")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (private namespaces)", file=sys.stderr)
        return 2
    trees = {"this tree": HERE}
    if a.baseline:
        trees = {"baseline": os.path.abspath(a.baseline), **trees}
    prefix = f"psall{os.getpid()}"
    cmds = {"report (one namespace)": None,
            "report --all-netns": [OURS, prefix] if a.only_ours else ["report", "--all-netns", "--json"]}
    floors = {"kernel floor (one)": None, "kernel floor (all)": [FLOOR, f"prefix:{prefix}" if a.only_ours else "all"]}
    got: dict = {(t, c): [] for t in trees for c in cmds}
    got.update({("kernel", c): [] for c in floors})
    loads: dict = {c: [] for c in cmds}
    hosts: dict = {}

    def rounds(c: str, args: list[str], floor: str, floor_args: list[str]) -> None:
        hosts[c] = host_load()
        for tree in trees.values():            # warm-up, untimed: .pyc files, page cache
            run_timed(tree, args)
        for _ in range(a.rounds):
            loads[c].append(os.getloadavg()[0])
            for t, tree in trees.items():
                got[(t, c)].append(run_timed(tree, args))
            got[("kernel", floor)].append(run_timed(HERE, floor_args))

    t0 = time.perf_counter()
    with ExitStack() as stack:
        smalls = [stack.enter_context(socket_namespace(a.sockets, lifetime=1800, prefix=prefix))
                  for _ in range(a.namespaces)]
        if a.together:
            big = stack.enter_context(socket_namespace(a.namespaces * a.sockets, lifetime=1800))
            rounds("report (one namespace)", ["--netns", big.name, "report", "--json"],
                   "kernel floor (one)", [FLOOR, big.name])
        rounds("report --all-netns", cmds["report --all-netns"], "kernel floor (all)", floors["kernel floor (all)"])
        del smalls
    if not a.together:
        # the same number of sockets on the host, in one namespace this time
        with socket_namespace(a.namespaces * a.sockets, lifetime=1800) as big:
            rounds("report (one namespace)", ["--netns", big.name, "report", "--json"],
                   "kernel floor (one)", [FLOOR, big.name])
    took = time.perf_counter() - t0
    print(f"{a.namespaces} namespaces of {a.sockets} sockets vs one of {a.namespaces * a.sockets} "
          f"({'on the host together' if a.together else 'each alone on the host'}), {a.rounds} rounds, "
          f"{took:.0f} s in all, kernel {os.uname().release}, {os.cpu_count()} cores, "
          f"tcp_child_ehash_entries {open('/proc/sys/net/ipv4/tcp_child_ehash_entries').read().strip()}")
    for c, ls in loads.items():
        print(f"  load average during {c}: {min(ls):.1f}-{max(ls):.1f}; {hosts[c]}")
    print(f"{'tree':10} {'command':24} {'wall med':>9} {'cpu med':>9} {'wall x':>7} {'cpu x':>7}")
    for t, pair in [*((t, list(cmds)) for t in trees), ("kernel", list(floors))]:
        one = got[(t, pair[0])]
        w1, c1 = statistics.median(r[0] for r in one), statistics.median(r[1] for r in one)
        for c in pair:
            rows = got[(t, c)]
            w, cp = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
            print(f"{t:10} {c:24} {w:8.2f}s {cp:8.2f}s {w / w1:7.2f} {cp / c1:7.2f}")
    print("(cpu x: of the first row of its group; `kernel` rows: the walks alone, see the module doc)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
