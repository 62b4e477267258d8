"""`portscope nat --json` at 100k conntrack entries, side by side with `conntrack -L`.

    sudo .venv/bin/python -m benchmarks.bench_nat                  # 100k entries, 5 runs each
    sudo .venv/bin/python -m benchmarks.bench_nat --entries 20000 --runs 3

A private namespace gets a veth pair (198.51.100.1/24 on d0), a MASQUERADE rule on d0
and a conntrack UDP timeout long enough for the run. A bounded loop then sends one
raw UDP datagram per flow to 198.51.100.2, over 100 destination ports x N/100 source
ports. Each datagram leaves through d0 and dies at d1, so conntrack
keeps one source-NATed entry per flow.

Measured, alternating the two commands:
* wall time of `portscope nat --json > /dev/null` and of `conntrack -L > /dev/null`,
  and their ratio (median);
* portscope's peak RSS (ru_maxrss of the child);
* one exporter collection of the namespace with the NAT series, against one without
  them (the socket-only scrape). With --sockets N (default 100k) the namespace also
  holds N sockets (benchmarks/harness.py), as a node with many connections would.

The namespace is always deleted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid

FILL = r"""
import socket, struct, sys
n, nated = int(sys.argv[1]), int(sys.argv[2])
# from 192.0.2.1 (on lo) MASQUERADE rewrites the source to d0's 198.51.100.1: a real
# translation, so the entry has SRC_NAT; from 198.51.100.1 itself the rule maps the
# flow onto itself and the entry has no SRC_NAT bit
srcs = [socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP) for _ in range(2)]
srcs[0].bind(("192.0.2.1", 0))
srcs[1].bind(("198.51.100.1", 0))
dst = ("198.51.100.2", 0)
sent = 0
for dport in range(20000, 20100):
    for sport in range(30000, 30000 + (n + 99) // 100):
        if sent == n:
            break
        srcs[sent >= nated].sendto(struct.pack("!HHHH", sport, dport, 8, 0), dst)
        sent += 1
print(sent)
"""


def sh(ns: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, check=True, **kw)


def child_peak(cmd: list[str]) -> tuple[float, float]:
    """(wall s, peak RSS MB) of one run, from wait4's rusage of exactly that child."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    if status != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {p.stderr.read().decode()[:200]}")
    return dt, ru.ru_maxrss / 1024


def fill(ns: str, entries: int, snat_share: float = 1.0) -> int:
    """One conntrack entry per raw UDP datagram, the first `snat_share` of them
    source-NATed (see the module doc)."""
    # a veth pair inside the namespace and a fixed neighbour: datagrams leave d0 (after
    # conntrack and NAT have seen them) and die at d1, which has no address
    sh(ns, "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
    sh(ns, "ip", "addr", "add", "198.51.100.1/24", "dev", "d0")
    sh(ns, "ip", "link", "set", "d0", "up")
    sh(ns, "ip", "link", "set", "d1", "up")
    sh(ns, "ip", "addr", "add", "192.0.2.1/32", "dev", "lo")
    sh(ns, "ip", "neigh", "add", "198.51.100.2", "lladdr", "02:00:00:00:00:02", "dev", "d0", "nud", "permanent")
    sh(ns, "sh", "-c", "echo 3600 > /proc/sys/net/netfilter/nf_conntrack_udp_timeout")
    sh(ns, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "d0", "-j", "MASQUERADE")
    t0 = time.perf_counter()
    nated = round(entries * snat_share)
    sent = int(sh(ns, sys.executable, "-c", FILL, str(entries), str(nated), timeout=600).stdout)
    count = int(sh(ns, "conntrack", "-C").stdout)
    snat = int(sh(ns, "sh", "-c", "conntrack -L --src-nat 2>/dev/null | wc -l").stdout)
    print(f"namespace {ns}: sent {sent} datagrams in {time.perf_counter() - t0:.1f} s; "
          f"conntrack -C = {count}, of them source-NATed (conntrack -L --src-nat) = {snat}")
    return count


def versus_conntrack(ns: str, runs: int) -> None:
    ours_cmd = [sys.executable, "-m", "portscope", "nat", "--json", "--netns", ns]
    theirs_cmd = ["ip", "netns", "exec", ns, "conntrack", "-L"]
    ours, theirs, peaks = [], [], []
    child_peak(ours_cmd)          # warm the page cache once for both
    child_peak(theirs_cmd)
    for _ in range(runs):
        dt, mb = child_peak(ours_cmd)
        ours.append(dt)
        peaks.append(mb)
        theirs.append(child_peak(theirs_cmd)[0])
    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(f"portscope nat --json : median {mo:.3f} s  (runs {', '.join(f'{x:.3f}' for x in ours)})")
    print(f"conntrack -L         : median {mt:.3f} s  (runs {', '.join(f'{x:.3f}' for x in theirs)})")
    print(f"ratio portscope / conntrack -L = {mo / mt:.2f}x median, {min(ours) / min(theirs):.2f}x best "
          f"of each   (target <= 1.0x)")
    print(f"portscope peak RSS = {max(peaks):.1f} MB   (target <= 150 MB)")


EXPORTER = r"""
import statistics, sys, time
import portscope.nat.metrics as m
from portscope.exporter import Exporter, PortscopeCollector, read_sample
ns, runs = sys.argv[1], int(sys.argv[2])
def sockets_only(n, top):
    orig = m.read_nat
    m.read_nat = lambda *a, **k: None
    try:
        return read_sample(n, top)
    finally:
        m.read_nat = orig
def timed(reader):
    e = Exporter(PortscopeCollector([ns], reader=reader))
    out = []
    for _ in range(runs):
        s = time.perf_counter(); e.render(); out.append(time.perf_counter() - s)
    return out
a, b = [], []
for _ in range(runs):          # alternate, so load from elsewhere hits both alike
    a += timed(sockets_only)[:1]
    b += timed(read_sample)[:1]
print(statistics.median(a), statistics.median(b), min(a), min(b))
"""


def exporter_cost(ns: str, runs: int) -> None:
    r = subprocess.run([sys.executable, "-c", EXPORTER, ns, str(runs)], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        print(f"exporter comparison failed: {r.stderr[-300:]}")
        return
    so, wn, so_min, wn_min = map(float, r.stdout.split())
    print(f"exporter scrape: socket-only {so:.3f} s, with NAT series {wn:.3f} s -> {wn / so:.2f}x median, "
          f"{wn_min / so_min:.2f}x best of each   (target <= 1.5x)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=100_000, help="conntrack entries to build (<= 200000)")
    ap.add_argument("--sockets", type=int, default=100_000,
                    help="sockets in the namespace for the exporter comparison (benchmarks.harness; 0: none)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs of each command")
    a = ap.parse_args(argv)
    if not 100 <= a.entries <= 200_000 or not 1 <= a.runs <= 20 or not 0 <= a.sockets <= 200_000:
        ap.error("--entries in 100..200000, --sockets in 0..200000, --runs in 1..20")
    if os.geteuid() != 0:
        print("needs root (a private network namespace)", file=sys.stderr)
        return 3
    if a.sockets:
        from benchmarks.harness import socket_namespace
        with socket_namespace(a.sockets) as sns:
            print(f"namespace {sns.name}: {a.sockets} sockets (benchmarks.harness)")
            fill(sns.name, a.entries)
            versus_conntrack(sns.name, a.runs)
            exporter_cost(sns.name, a.runs)
        return 0
    ns = f"psbench-nat-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        sh(ns, "ip", "link", "set", "lo", "up")
        fill(ns, a.entries)
        versus_conntrack(ns, a.runs)
        exporter_cost(ns, a.runs)
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
