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
(namespaces x dumps per namespace x one walk) / cores.
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


def run_timed(tree: str, argv: list[str]) -> tuple[float, float]:
    """(wall s, cpu s) of `python -m portscope ARGV` from `tree`, as a whole process (wait4)."""
    env = {**os.environ, "PYTHONPATH": tree}
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "portscope", *argv], env=env, cwd="/",
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
    cmds = {"report (one namespace)": None, "report --all-netns": ["report", "--all-netns", "--json"]}
    got: dict = {(t, c): [] for t in trees for c in cmds}
    loads: dict = {c: [] for c in cmds}

    def rounds(c: str, args: list[str]) -> None:
        for _ in range(a.rounds):
            loads[c].append(os.getloadavg()[0])
            for t, tree in trees.items():
                got[(t, c)].append(run_timed(tree, args))

    t0 = time.perf_counter()
    with ExitStack() as stack:
        smalls = [stack.enter_context(socket_namespace(a.sockets, lifetime=1800)) for _ in range(a.namespaces)]
        if a.together:
            big = stack.enter_context(socket_namespace(a.namespaces * a.sockets, lifetime=1800))
            rounds("report (one namespace)", ["--netns", big.name, "report", "--json"])
        rounds("report --all-netns", cmds["report --all-netns"])
        del smalls
    if not a.together:
        # the same number of sockets on the host, in one namespace this time
        with socket_namespace(a.namespaces * a.sockets, lifetime=1800) as big:
            rounds("report (one namespace)", ["--netns", big.name, "report", "--json"])
    took = time.perf_counter() - t0
    print(f"{a.namespaces} namespaces of {a.sockets} sockets vs one of {a.namespaces * a.sockets} "
          f"({'on the host together' if a.together else 'each alone on the host'}), {a.rounds} rounds, "
          f"{took:.0f} s in all, kernel {os.uname().release}, {os.cpu_count()} cores, "
          f"tcp_child_ehash_entries {open('/proc/sys/net/ipv4/tcp_child_ehash_entries').read().strip()}")
    for c, ls in loads.items():
        print(f"  load average during {c}: {min(ls):.1f}-{max(ls):.1f}")
    print(f"{'tree':10} {'command':24} {'wall med':>9} {'cpu med':>9} {'wall x':>7} {'cpu x':>7}")
    for t in trees:
        one = got[(t, "report (one namespace)")]
        w1, c1 = statistics.median(r[0] for r in one), statistics.median(r[1] for r in one)
        for c in cmds:
            rows = got[(t, c)]
            w, cp = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
            print(f"{t:10} {c:24} {w:8.2f}s {cp:8.2f}s {w / w1:7.2f} {cp / c1:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
