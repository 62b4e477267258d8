"""`report --all-netns` over many namespaces beside one `report` over a namespace holding as
many sockets, both as whole processes, in one run (issue 15: within 3x).

    sudo .venv/bin/python -m benchmarks.bench_allnetns [--namespaces 50] [--sockets 2000] [--rounds 3]
                                                       [--baseline DIR] [--only-ours] [--child-ehash N]

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

--child-ehash N builds every namespace of both layouts from a private parent namespace
made here, in which net.ipv4.tcp_child_ehash_entries=N (the parent only: the host's value
is untouched), so each has its own established hash of N buckets (rounded up to 2^n; read
back from each namespace's tcp_ehash_entries before any run, or the benchmark stops), as on
a container host that set it before its containers were made. The bind and listening
hashes stay shared (the kernel makes only the established hash per namespace). The parent
lives only while the namespaces are created: deleting it leaves their hashes as they are,
and it is never read. Compare with a run without the option in the same session.
The line `one TCP walk in a small namespace` times, in the benchmark's own thread, a walk
of the established hash alone and a walk for bound-only sockets (the kernel answers those
from the bind hash, then walks the established hash too), so what stays shared shows.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager, nullcontext

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


@contextmanager
def ehash_parent(entries: int, prefix: str):
    """A namespace whose tcp_child_ehash_entries is `entries`, to create the benchmark's from;
    always removed. Its name is outside PREFIX-*, so --only-ours never reads it."""
    name = f"{prefix}parent"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw",
                        f"net.ipv4.tcp_child_ehash_entries={entries}"], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def ehash_buckets(names: list[str]) -> set[int]:
    """tcp_ehash_entries as each namespace reads it (negative: the host's shared hash)."""
    return {int(subprocess.run(["ip", "netns", "exec", n, "sysctl", "-n", "net.ipv4.tcp_ehash_entries"],
                               check=True, capture_output=True, text=True).stdout) for n in names}


def walk_split(names: list[str], repeat: int = 3) -> tuple[float, float]:
    """Median thread CPU ms of one TCP walk in each namespace named: (every state but LISTEN
    and bound-only: the established hash; bound-only alone, which the kernel answers from the
    bind hash and then still walks the established hash). Nothing is returned by either
    (the filter refuses every socket)."""
    from portscope.netns import entered
    from portscope.sockets import netlink as nl
    reject = bytes([nl.BC_JMP, 4, 8, 0])
    buf = bytearray(nl.RECV_BYTES)
    got: dict[int, list[float]] = {nl.ALL_STATES & ~(1 << 10): [], 1 << 13: []}
    for _ in range(repeat):
        for name in names:
            with entered(name):
                for states, out in got.items():
                    sock = nl.open_socket()
                    try:
                        t = time.thread_time()
                        for _ in nl.dump_chunks(sock, nl.BOTH, nl.PROTO_CODES["tcp"], states, reject, 1, buf):
                            pass
                        out.append((time.thread_time() - t) * 1000)
                    finally:
                        sock.close()
    est, bound = (statistics.median(v) for v in got.values())
    return est, bound


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
    ap.add_argument("--child-ehash", type=int, default=0, metavar="N",
                    help="Create every namespace from a private parent whose net.ipv4.tcp_child_ehash_entries "
                         "is N, so each has its own established hash (N*8 bytes); default 0: the host's "
                         "shared hash.")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (private namespaces)", file=sys.stderr)
        return 2
    if a.child_ehash < 0 or a.child_ehash > 1 << 24:
        print("--child-ehash: 0 to 2^24", file=sys.stderr)
        return 2
    # a plain `kill` unwinds the context managers as Ctrl-C does: no namespace left behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    want = 1 << (a.child_ehash - 1).bit_length() if a.child_ehash else None
    buckets: set[int] = set()

    def made(names: list[str]) -> None:
        got = ehash_buckets(names)
        if want and got != {want}:
            raise RuntimeError(f"namespaces made with tcp_child_ehash_entries={a.child_ehash} "
                               f"read tcp_ehash_entries {sorted(got)}, not {want}")
        buckets.update(got)

    def parent():
        return ehash_parent(a.child_ehash, prefix) if a.child_ehash else nullcontext(None)
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
        with parent() as p:
            smalls = [stack.enter_context(socket_namespace(a.sockets, lifetime=1800, prefix=prefix, parent=p))
                      for _ in range(a.namespaces)]
            if a.together:
                big = stack.enter_context(socket_namespace(a.namespaces * a.sockets, lifetime=1800,
                                                           prefix=f"{prefix}big", parent=p))
        made([ns.name for ns in smalls] + ([big.name] if a.together else []))
        split = walk_split([ns.name for ns in smalls[:10]])
        if a.together:
            rounds("report (one namespace)", ["--netns", big.name, "report", "--json"],
                   "kernel floor (one)", [FLOOR, big.name])
        rounds("report --all-netns", cmds["report --all-netns"], "kernel floor (all)", floors["kernel floor (all)"])
        del smalls
    if not a.together:
        # the same number of sockets on the host, in one namespace this time
        with ExitStack() as stack:
            with parent() as p:
                big = stack.enter_context(socket_namespace(a.namespaces * a.sockets, lifetime=1800,
                                                           prefix=f"{prefix}big", parent=p))
            made([big.name])
            rounds("report (one namespace)", ["--netns", big.name, "report", "--json"],
                   "kernel floor (one)", [FLOOR, big.name])
    took = time.perf_counter() - t0
    print(f"{a.namespaces} namespaces of {a.sockets} sockets vs one of {a.namespaces * a.sockets} "
          f"({'on the host together' if a.together else 'each alone on the host'}), {a.rounds} rounds, "
          f"{took:.0f} s in all, kernel {os.uname().release}, {os.cpu_count()} cores, "
          f"tcp_child_ehash_entries {open('/proc/sys/net/ipv4/tcp_child_ehash_entries').read().strip()}")
    with open("/proc/sys/net/ipv4/tcp_ehash_entries") as f:
        host = f.read().strip()
    print("  established hash: " + (f"each namespace its own, {want} buckets (made from a parent with "
                                     f"tcp_child_ehash_entries={a.child_ehash})" if want else
                                     "the host's, shared") +
          f"; tcp_ehash_entries read inside: {sorted(buckets)}, on the host: {host}")
    for c, ls in loads.items():
        print(f"  load average during {c}: {min(ls):.1f}-{max(ls):.1f}; {hosts[c]}")
    print(f"  one TCP walk in a small namespace (thread CPU, median over "
          f"{min(10, a.namespaces)} x 3): established hash "
          f"{split[0]:.2f} ms; bound-only sockets {split[1]:.2f} ms (the bind hash, which every "
          f"namespace shares, then the established hash again)")
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
