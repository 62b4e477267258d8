"""`report --all-netns` over many namespaces beside one `report` over a namespace holding as
many sockets, both as whole processes, in one run (issue 15: within 3x).

    sudo .venv/bin/python -m benchmarks.bench_allnetns [--namespaces 50] [--sockets 2000] [--rounds 3]
                                                       [--baseline DIR]

Builds one namespace of NAMESPACES x SOCKETS sockets and NAMESPACES namespaces of SOCKETS
each (benchmarks/harness.py; all removed at the end). Round after round, alternating:

  report --netns BIG --json         the anchor: one namespace, every socket
  report --all-netns --json         every namespace of the host (BIG, the small ones, the
                                    host's own and whatever else exists on the machine)

portscope runs as `python -m portscope` with the checkout first on PYTHONPATH; --baseline
DIR (e.g. `git archive main portscope | tar -x -C DIR`) runs the same two commands from
another tree in the same rounds, so before and after are measured side by side. Wall and
CPU (user + sys, wait4) per command; ratios are medians of per-round ratios to the anchor
of that round. On a shared machine the wall figure includes waiting for a core: the load
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
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (private namespaces)", file=sys.stderr)
        return 2
    trees = {"this tree": HERE}
    if a.baseline:
        trees = {"baseline": os.path.abspath(a.baseline), **trees}
    with ExitStack() as stack:
        t0 = time.perf_counter()
        big = stack.enter_context(socket_namespace(a.namespaces * a.sockets, lifetime=1800))
        for _ in range(a.namespaces):
            stack.enter_context(socket_namespace(a.sockets, lifetime=1800))
        setup = time.perf_counter() - t0
        cmds = {"report (one namespace)": ["--netns", big.name, "report", "--json"],
                "report --all-netns": ["report", "--all-netns", "--json"]}
        got: dict = {(t, c): [] for t in trees for c in cmds}
        loads = []
        for _ in range(a.rounds):
            loads.append(os.getloadavg()[0])
            for t, tree in trees.items():
                for c, args in cmds.items():
                    got[(t, c)].append(run_timed(tree, args))
        nsn = len(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines())
        print(f"{a.namespaces} namespaces of {a.sockets} sockets + one of {a.namespaces * a.sockets} "
              f"(setup {setup:.0f} s; {nsn} named namespaces on the host now), {a.rounds} rounds, "
              f"kernel {os.uname().release}, {os.cpu_count()} cores, load average "
              f"{min(loads):.1f}-{max(loads):.1f}")
        print(f"{'tree':10} {'command':24} {'wall med':>9} {'cpu med':>9} {'wall x':>7} {'cpu x':>7}")
        for t in trees:
            one = got[(t, "report (one namespace)")]
            for c in cmds:
                rows = got[(t, c)]
                wx = statistics.median(r[0] / o[0] for r, o in zip(rows, one))
                cx = statistics.median(r[1] / o[1] for r, o in zip(rows, one))
                print(f"{t:10} {c:24} {statistics.median(r[0] for r in rows):8.2f}s "
                      f"{statistics.median(r[1] for r in rows):8.2f}s {wx:7.2f} {cx:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
