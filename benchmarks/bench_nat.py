"""`portscope nat --json` at 100k conntrack entries, side by side with `conntrack -L`,
and the exporter's scrape with the NAT series against its socket-only scrape.

    sudo .venv/bin/python -m benchmarks.bench_nat                  # 100k entries, 5 rounds
    sudo .venv/bin/python -m benchmarks.bench_nat --entries 20000 --runs 3
    sudo .venv/bin/python -m benchmarks.bench_nat --old /tmp/old   # also another checkout, same run

A private namespace gets a veth pair (198.51.100.1/24 on d0, 192.0.2.1/32 on lo), a
MASQUERADE rule on d0 and a conntrack UDP timeout long enough for the run. A bounded loop
then sends one raw UDP datagram per flow to 198.51.100.2, over 100 destination ports x
N/100 source ports. Each datagram leaves through d0 and dies at d1, so conntrack keeps
one entry per flow. The first --snat-share of them (default all: the most work for the
SNAT tally) leave from 192.0.2.1 and are really translated (SRC_NAT); the rest leave from
d0's own address, which MASQUERADE maps onto itself (no SRC_NAT bit), as unrelated
tracked flows on a node would.

Measured, alternating the commands round by round so load from elsewhere hits all alike,
CPU time (user + sys of exactly that child, from wait4) and wall time:
* `portscope nat --json > /dev/null` and `conntrack -L > /dev/null`: medians, ratio;
* portscope's peak RSS (ru_maxrss of the child);
* the exporter's collection of the namespace with the NAT series against one without
  them (the socket-only scrape), two collectors rendering in turn in one process.
  With --sockets N (default 100k) the namespace also holds N sockets
  (benchmarks/harness.py), as a node with many connections would.
With --old DIR, the same measurements run the checkout in DIR (its portscope package on
PYTHONPATH) beside this one. The namespace is always deleted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid

CHUNK = 10_000          # --long-lived: flows sent between two scrapes while the table fills

FILL = r"""
import socket, struct, sys
n, nated = int(sys.argv[1]), int(sys.argv[2])
start, stop = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (0, n)
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
        if sent == stop:
            break
        if sent >= start:
            srcs[sent >= nated].sendto(struct.pack("!HHHH", sport, dport, 8, 0), dst)
        sent += 1
print(sent - start)
"""


def sh(ns: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, check=True, **kw)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env_for(tree: str | None = None) -> dict:
    """The environment of a timed child: bytecode may be written and read (a child that
    recompiled every module each run would time the compiler), the checkout on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": tree} if tree else env


def child_peak(cmd: list[str], tree: str | None = None) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of one run, from wait4's rusage of exactly that child.
    With `tree`, the child imports portscope from that checkout (its working directory
    comes first on sys.path)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=env_for(tree), cwd=tree)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    if status != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {p.stderr.read().decode()[:200]}")
    return dt, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def setup(ns: str) -> None:
    """The veth pair, addresses, neighbour, UDP timeout and MASQUERADE rule (module doc)."""
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


def fill(ns: str, entries: int, snat_share: float = 1.0, between=None) -> int:
    """One conntrack entry per raw UDP datagram, the first `snat_share` of them
    source-NATed (see the module doc). With `between`, the namespace is already set up,
    the datagrams go in chunks of CHUNK and between() runs after each (a scrape of a
    long-lived exporter)."""
    if between is None:
        setup(ns)
    t0 = time.perf_counter()
    nated = round(entries * snat_share)
    if between is None:
        sent = int(sh(ns, sys.executable, "-c", FILL, str(entries), str(nated), timeout=600).stdout)
    else:
        sent = 0
        for start in range(0, entries, CHUNK):
            stop = min(entries, start + CHUNK)
            sent += int(sh(ns, sys.executable, "-c", FILL, str(entries), str(nated), str(start), str(stop),
                           timeout=600).stdout)
            between()
    count = int(sh(ns, "conntrack", "-C").stdout)
    snat = int(sh(ns, "sh", "-c", "conntrack -L --src-nat 2>/dev/null | wc -l").stdout)
    print(f"namespace {ns}: sent {sent} datagrams in {time.perf_counter() - t0:.1f} s; "
          f"conntrack -C = {count}, of them source-NATed (conntrack -L --src-nat) = {snat}")
    return count


def _runs(xs: list[float]) -> str:
    return ", ".join(f"{x:.3f}" for x in xs)


def versus_conntrack(ns: str, runs: int, trees: dict[str, str]) -> None:
    theirs_cmd = ["ip", "netns", "exec", ns, "conntrack", "-L"]
    ours_cmd = [sys.executable, "-m", "portscope", "nat", "--json", "--netns", ns]
    for tree in trees.values():   # warm the page cache once for each
        child_peak(ours_cmd, tree)
    child_peak(theirs_cmd)
    wall: dict[str, list[float]] = {k: [] for k in [*trees, "conntrack -L"]}
    cpu: dict[str, list[float]] = {k: [] for k in wall}
    peak: dict[str, list[float]] = {k: [] for k in trees}
    for _ in range(runs):
        for label, tree in trees.items():
            w, c, mb = child_peak(ours_cmd, tree)
            wall[label].append(w)
            cpu[label].append(c)
            peak[label].append(mb)
        w, c, _ = child_peak(theirs_cmd)
        wall["conntrack -L"].append(w)
        cpu["conntrack -L"].append(c)
    ct_w, ct_c = statistics.median(wall["conntrack -L"]), statistics.median(cpu["conntrack -L"])
    print(f"conntrack -L > /dev/null        : CPU median {ct_c:.3f} s (runs {_runs(cpu['conntrack -L'])}); "
          f"wall median {ct_w:.3f} s")
    for label in trees:
        mc, mw = statistics.median(cpu[label]), statistics.median(wall[label])
        print(f"portscope nat --json [{label:>4}]     : CPU median {mc:.3f} s (runs {_runs(cpu[label])}); "
              f"wall median {mw:.3f} s")
        print(f"  ratio to conntrack -L = {mc / ct_c:.2f}x CPU, {mw / ct_w:.2f}x wall (medians; target <= 1.0x); "
              f"peak RSS {max(peak[label]):.1f} MB (target <= 150 MB)")


# both timed child scripts: the namespace ns (argv[1]), and two collectors over it, one
# without the NAT series (`plain`) and one with them (`nat`)
COLLECTORS = r"""
import json, resource, statistics, sys, time
import portscope.exporter as ex
import portscope.nat.metrics as nm
from portscope.exporter import Exporter, PortscopeCollector, read_sample
ns = sys.argv[1]
def sockets_only(n, top):
    # read_sample calls the exporter module's own read_nat: without NAT it is None there
    orig = ex.read_nat
    ex.read_nat = lambda *a, **k: None
    try:
        return read_sample(n, top)
    finally:
        ex.read_nat = orig
plain = Exporter(PortscopeCollector([ns], reader=sockets_only))
nat = Exporter(PortscopeCollector([ns], reader=read_sample))
"""

EXPORTER = COLLECTORS + r"""
runs = int(sys.argv[2])
nm.watch(ns).refresh = 0.0     # every entry predates the exporter: each scrape dumps (as before events)
assert b"portscope_snat_destination_ports_in_use{" not in plain.render()
assert b"portscope_snat_destination_ports_in_use{" in nat.render()    # warm: imports, NAT rules cache
import socket, struct
from portscope.netns import entered
def kernel_only():
    # the kernel's share: the SRC_NAT-filtered dump read and dropped (its sys time)
    body = struct.pack("=BBH", 0, 0, 0) + struct.pack("=HH", 8, 3) + struct.pack(">I", 0x10) \
        + struct.pack("=HH", 8, 26) + struct.pack(">I", 0x10)
    with entered(ns):
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
    buf = bytearray(1 << 20)
    s.send(struct.pack("=IHHII", 16 + len(body), (1 << 8) | 1, 0x301, 1, 0) + body)
    done = False
    while not done:
        n, off = s.recv_into(buf), 0
        while off + 16 <= n:
            ln, kind = struct.unpack_from("=IH", buf, off)
            done = done or kind in (2, 3)
            off += (ln + 3) & ~3
    s.close()
out = {"plain": ([], []), "nat": ([], []), "kernel": ([], [])}
for _ in range(runs):
    for label, fn in (("plain", plain.render), ("nat", nat.render), ("kernel", kernel_only)):
        c, w = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        fn()
        c2 = resource.getrusage(resource.RUSAGE_SELF)
        out[label][0].append(c2.ru_stime - c.ru_stime if label == "kernel" else
                             c2.ru_utime + c2.ru_stime - c.ru_utime - c.ru_stime)
        out[label][1].append(time.perf_counter() - w)
print(" ".join(" ".join(map(str, out[k][i])) for k in ("plain", "nat", "kernel") for i in (0, 1)))
"""


def exporter_cost(ns: str, runs: int, trees: dict[str, str]) -> None:
    for label, tree in trees.items():
        r = subprocess.run([sys.executable, "-c", EXPORTER, ns, str(runs)], capture_output=True, text=True,
                           timeout=1800, env=env_for(tree), cwd=tree)
        if r.returncode != 0:
            print(f"exporter comparison [{label}] failed: {r.stderr[-300:]}")
            continue
        v = list(map(float, r.stdout.split()))
        pc, pw, nc, nw, kc, _ = (v[i * runs:(i + 1) * runs] for i in range(6))
        mpc, mnc, mpw, mnw = map(statistics.median, (pc, nc, pw, nw))
        print(f"exporter scrape [{label:>4}]: socket-only CPU median {mpc:.3f} s (runs {_runs(pc)}), "
              f"with NAT series {mnc:.3f} s (runs {_runs(nc)})")
        print(f"  -> {mnc / mpc:.2f}x CPU, {mnw / mpw:.2f}x wall ({mpw:.3f} s vs {mnw:.3f} s) "
              f"(medians; target <= 1.5x)")
        print(f"  the kernel's share: the filtered conntrack dump read and dropped costs "
              f"{statistics.median(kc):.3f} s sys (median), {statistics.median(kc) / mpc:.2f}x of the socket-only scrape")
        print("  (an exporter started after the table was filled: no entry sends events, each scrape dumps; "
              "--long-lived measures the exporter that was running while the flows came)")


LIVE = COLLECTORS + r"""
plain.render()
assert b"portscope_conntrack_events_tracking{" in nat.render()     # subscribed, seeded
def timed(fn):
    c, w = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fn()
    c2 = resource.getrusage(resource.RUSAGE_SELF)
    return c2.ru_utime + c2.ru_stime - c.ru_utime - c.ru_stime, time.perf_counter() - w
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "scrape":
        nat.render()
        print("ok", flush=True)
        continue
    if cmd[0] == "check":          # the book after the last scrape against a fresh dump now
        from portscope.nat import count_snat
        from portscope.netns import entered
        with entered(ns):
            book = nm.watch(ns).tally()
            fresh = count_snat()
        key = lambda ds: sorted((d.proto, d.nat_ip, d.dst, d.dport, d.in_use, d.time_wait, d.capacity) for d in ds)
        print(json.dumps({"equal": key(book.destinations()) == key(fresh.destinations()),
                          "book": book.rows, "dump": fresh.rows}), flush=True)
        continue
    n, pause = int(cmd[1]), float(cmd[2])
    out = []
    for _ in range(n):
        w = nm.watch(ns)
        ev0 = w.book.events if w.book else 0
        # between scrapes the exporter's follower thread applies the events as they come:
        # its CPU is the process's during the pause (nothing else runs then)
        fc, _ = timed(lambda: time.sleep(pause))
        dumps0 = sum(w.resyncs.values())
        pc, pw = timed(plain.render)
        t0 = time.thread_time()
        nc, nw = timed(nat.render)
        nt = time.thread_time() - t0              # the scrape's own thread, without the follower's
        out.append([pc, nc, pw, nw, (w.book.events if w.book else 0) - ev0, sum(w.resyncs.values()) - dumps0, fc,
                    nt])
    w = nm.watch(ns)
    print(json.dumps({"rounds": out, "resyncs": dict(w.resyncs), "rows": w.book.rows if w.book else None}),
          flush=True)
"""

# raw TCP SYNs from 192.0.2.1 (source-NATed by the MASQUERADE rule) that nobody answers:
# each makes one entry in SYN_SENT, which expires after the namespace's short
# nf_conntrack_tcp_timeout_syn_sent: a NEW and a DESTROY event per flow
CHURN = r"""
import socket, struct, sys, time
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
s.bind(("192.0.2.1", 0))
end, sport, sent = time.monotonic() + seconds, 1024, 0
print("ready", flush=True)
while time.monotonic() < end:
    t = time.monotonic()
    for _ in range(rate // 10):
        sport = 1024 + (sport - 1023) % 60000
        s.sendto(struct.pack("!HHIIBBHHH", sport, 7000 + sport % 4, 1, 0, 5 << 4, 2, 65535, 0, 0),
                 ("198.51.100.2", 0))
        sent += 1
    time.sleep(max(0.0, 0.1 - (time.monotonic() - t)))
print(sent, flush=True)
"""


def _ratio_line(label: str, rounds: list) -> None:
    pc, nc, pw, nw, ev, dumps, follow, own = (list(x) for x in zip(*rounds))
    mpc, mnc = statistics.median(pc), statistics.median(nc)
    print(f"  {label}: socket-only CPU median {mpc:.3f} s (runs {_runs(pc)}), with NAT series {mnc:.3f} s "
          f"(runs {_runs(nc)})")
    print(f"    -> {mnc / mpc:.2f}x CPU, {statistics.median(nw) / statistics.median(pw):.2f}x wall "
          f"(medians; target <= 1.5x); events per scrape median {statistics.median(ev):.0f}; "
          f"dumps during the rounds {sum(dumps)}")
    per = sum(follow) / sum(ev) * 1e6 if sum(ev) else 0.0
    print(f"    follower thread between scrapes: CPU median {statistics.median(follow):.3f} s a scrape "
          f"interval ({per:.1f} us per event over all rounds; not part of a scrape); the scrape's own "
          f"thread {statistics.median(own):.3f} s of its {mnc:.3f} s ({statistics.median(own) / mpc:.2f}x)")


def long_lived(ns: str, entries: int, snat_share: float, runs: int, churn: int, pause: float) -> None:
    """The exporter runs while the table fills (a scrape after each chunk), then scrapes a
    static table, then one that churns (`churn` new flows a second, each expiring)."""
    p = subprocess.Popen([sys.executable, "-c", LIVE, ns], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env=env_for(ROOT), cwd=ROOT)
    try:
        assert p.stdout.readline().strip() == "ready"

        def scrape() -> None:
            p.stdin.write("scrape\n")
            p.stdin.flush()
            assert p.stdout.readline().strip() == "ok"

        fill(ns, entries, snat_share, between=scrape)

        def rounds(pause: float) -> dict:
            p.stdin.write(f"rounds {runs} {pause}\n")
            p.stdin.flush()
            return json.loads(p.stdout.readline())

        print(f"long-lived exporter (subscribed before the {entries} flows came, a scrape every {CHUNK} flows):")
        r = rounds(0.0)
        print(f"  static table: {r['rows']} source-NATed entries held, resyncs so far {r['resyncs']}")
        _ratio_line("static table", r["rounds"])
        if churn:
            sh(ns, "sh", "-c", "echo 2 > /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_syn_sent")
            seconds = runs * (pause + 15) + 10          # outlasts the rounds even on a loaded machine
            c = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", CHURN, str(churn), str(seconds)],
                                 stdout=subprocess.PIPE, text=True)
            try:
                assert c.stdout.readline().strip() == "ready"
                time.sleep(3)                       # the first churned flows expire: a steady state
                r = rounds(pause)
            finally:
                c.kill()
                c.wait()
            time.sleep(3)                           # the last churned flows expire
            p.stdin.write("check\n")
            p.stdin.flush()
            chk = json.loads(p.stdout.readline())
            print(f"  churning table ({churn} new flows/s, each expiring after 2 s; a scrape every {pause:g} s): "
                  f"{r['rows']} held, resyncs so far {r['resyncs']}")
            _ratio_line("churning table", r["rounds"])
            print(f"  after the churn, the event-kept SNAT use equals a fresh dump's: {chk['equal']} "
                  f"({chk['book']} entries held, {chk['dump']} dumped)")
    finally:
        p.kill()
        p.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=100_000, help="conntrack entries to build (<= 200000)")
    ap.add_argument("--sockets", type=int, default=100_000,
                    help="sockets in the namespace for the exporter comparison (benchmarks.harness; 0: none)")
    ap.add_argument("--runs", type=int, default=5, help="timed rounds of each command")
    ap.add_argument("--snat-share", type=float, default=1.0,
                    help="share of the entries that are source-NATed (0..1; default 1: all)")
    ap.add_argument("--long-lived", action="store_true",
                    help="measure an exporter that runs while the table fills (event-kept SNAT use) "
                         "instead of nat --json and a freshly started exporter")
    ap.add_argument("--churn", type=int, default=500, help="--long-lived: new (expiring) flows a second (0: none)")
    ap.add_argument("--pause", type=float, default=2.0, help="--long-lived: seconds between churn-phase scrapes")
    ap.add_argument("--old", metavar="DIR", help="another checkout to measure beside this one, in the same run")
    a = ap.parse_args(argv)
    if not 100 <= a.entries <= 200_000 or not 1 <= a.runs <= 20 or not 0 <= a.sockets <= 200_000 \
            or not 0 <= a.snat_share <= 1:
        ap.error("--entries in 100..200000, --sockets in 0..200000, --runs in 1..20, --snat-share in 0..1")
    trees = {"this": ROOT}
    if a.old:
        if not os.path.isfile(os.path.join(a.old, "portscope", "__init__.py")):
            ap.error(f"--old {a.old}: no portscope package there")
        trees["old"] = os.path.abspath(a.old)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if os.geteuid() != 0:
        print("needs root (a private network namespace)", file=sys.stderr)
        return 3
    if a.sockets:
        from benchmarks.harness import socket_namespace
        with socket_namespace(a.sockets) as sns:
            print(f"namespace {sns.name}: {a.sockets} sockets (benchmarks.harness)")
            if a.long_lived:
                setup(sns.name)
                long_lived(sns.name, a.entries, a.snat_share, a.runs, a.churn, a.pause)
            else:
                fill(sns.name, a.entries, a.snat_share)
                versus_conntrack(sns.name, a.runs, trees)
                exporter_cost(sns.name, a.runs, trees)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0
    ns = f"psbench-nat-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        sh(ns, "ip", "link", "set", "lo", "up")
        if a.long_lived:
            setup(ns)
            long_lived(ns, a.entries, a.snat_share, a.runs, a.churn, a.pause)
        else:
            fill(ns, a.entries, a.snat_share)
            versus_conntrack(ns, a.runs, trees)
            exporter_cost(ns, a.runs, trees)
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
